"""recs: two-tower retrieval and deep ranking for a video-streaming service."""

from recs import _keras

_keras.select_legacy_keras()
