"""Beam ingestion and tf.Transform preprocessing: raw logs -> model-ready features."""

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)

from transforms.ingestion import IngestionConfig, IngestionReport, run_ingestion
from transforms.preprocessing import preprocessing_fn

__all__ = ["IngestionConfig", "IngestionReport", "preprocessing_fn", "run_ingestion"]
