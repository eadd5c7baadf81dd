"""Beam ingestion and tf.Transform preprocessing: raw logs -> model-ready features."""

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
