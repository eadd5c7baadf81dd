"""Synthetic streaming logs and catalogue/profile readers."""

from recs.data.catalogue import read_jsonl, to_columns
from recs.data.synthetic import GeneratedData, GeneratorConfig, generate

__all__ = ["GeneratedData", "GeneratorConfig", "generate", "read_jsonl", "to_columns"]
