"""recs: two-tower retrieval and deep ranking for a video-streaming service.

The library half of the project: the contract (`recs.contract`: feature keys, the event schema,
signature and model names; no TensorFlow), model and training code, the ScaNN index and
SavedModel export. Pure TensorFlow / TFRS / Keras; it never imports TFX or Beam.

Importing `recs` loads nothing: the names below are imported on first use, so a service that
needs only the contract never loads TensorFlow Recommenders or ScaNN. The one thing it does is
the Keras selection TFRS forces (see `recs._keras`): it sets an environment variable, and
must run before TensorFlow resolves `tf.keras`, which is why it happens here, where every
`import recs.<anything>` passes first.
"""

from recs import _keras
from recs._lazy import lazy_exports

_keras.use_keras_2()

__getattr__, __all__ = lazy_exports(__name__, {
    "contract": "recs.contract", "features": "recs.features",
    **{name: "recs.config" for name in ("Config", "IndexConfig", "ItemItemConfig",
                                        "RankerConfig", "RetrievalConfig", "TrainingConfig")},
    "RankerExport": "recs.export", "RetrievalExport": "recs.export",
    "IndexedRetrieval": "recs.index", "IndexReport": "recs.index",
    "build_indexes": "recs.index",
    **{name: "recs.models" for name in ("DeepRanker", "FeatureEncoder", "FeatureSizes", "Tower",
                                        "TwoTowerModel")},
    "TrainingResult": "recs.training", "train_ranker": "recs.training",
    "train_retrieval": "recs.training",
})
