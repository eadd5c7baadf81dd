"""Synthetic streaming logs, MovieLens, and catalogue/profile readers."""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "GeneratedData": "recs.data.synthetic", "GeneratorConfig": "recs.data.synthetic",
    "generate": "recs.data.synthetic", "read_jsonl": "recs.data.catalogue",
    "to_columns": "recs.data.catalogue",
})
