"""Beam ingestion, tf.Transform preprocessing and experiment outcomes: raw logs -> model-ready
features, and served lists + the days after -> per-user A/B test outcomes."""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "IngestionConfig": "transforms.ingestion", "IngestionReport": "transforms.ingestion",
    "run_ingestion": "transforms.ingestion", "preprocessing_fn": "transforms.preprocessing",
    "OutcomesConfig": "transforms.outcomes", "OutcomesReport": "transforms.outcomes",
    "run_outcomes": "transforms.outcomes",
})
