"""recs: two-tower retrieval and deep ranking for a video-streaming service.

The library half of the project: the feature contract, model and training code, the ScaNN
index and SavedModel export. Pure TensorFlow / TFRS / Keras; it never imports TFX or Beam.
"""

from recs import _keras

_keras.select_legacy_keras()

from recs import features  # noqa: E402  (after the Keras selection above)
from recs.config import (Config, IndexConfig, ItemItemConfig, RankerConfig,  # noqa: E402
                         RetrievalConfig, TrainingConfig)
from recs.export import RankerExport, RetrievalExport  # noqa: E402
from recs.index import IndexedRetrieval, IndexReport, build_indexes  # noqa: E402
from recs.models import DeepRanker, FeatureEncoder, FeatureSizes, Tower, TwoTowerModel  # noqa: E402
from recs.training import TrainingResult, train_ranker, train_retrieval  # noqa: E402

__all__ = [
    "Config", "DeepRanker", "FeatureEncoder", "FeatureSizes", "IndexConfig", "IndexReport",
    "IndexedRetrieval", "ItemItemConfig", "RankerConfig", "RankerExport", "RetrievalConfig", "RetrievalExport",
    "Tower", "TrainingConfig", "TrainingResult", "TwoTowerModel", "build_indexes", "features",
    "train_ranker", "train_retrieval",
]
