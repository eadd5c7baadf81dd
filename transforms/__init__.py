"""Beam ingestion and tf.Transform preprocessing: raw logs -> model-ready features."""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "IngestionConfig": "transforms.ingestion", "IngestionReport": "transforms.ingestion",
    "run_ingestion": "transforms.ingestion", "preprocessing_fn": "transforms.preprocessing",
})
