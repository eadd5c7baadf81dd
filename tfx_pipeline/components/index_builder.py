"""IndexBuilder: the ScaNN index over every catalogue title, validated before it is pushed.

Inputs: the retrieval Trainer's model (raw-feature towers) and ExampleGen's examples (the
`eval` split supplies held-out queries). Outputs: the ScaNN retrieval SavedModel, the exact
(brute-force) retrieval SavedModel, the towers re-exported for serving, and a ModelBlessing
that Pushers check. The measured recall and latencies are recorded as custom properties of the
blessing, so they live in ML-Metadata beside the artifacts.
"""

import json
import os

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.assembly import export_indexes
from recs.config import IndexConfig
from recs.contract.components import INDEX_REPORT_FILE
from recs.data.catalogue import read_jsonl
from recs.export import serving_model_dir
from recs.plots import plot_index_tuning

import numpy as np
import scann  # noqa: F401  (registers ScaNN's TF ops for saving and loading the index)
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

TUNING_PLOT = "index_tuning.png"


def _held_out_queries(examples: tfx.types.standard_artifacts.Examples, limit: int
                      ) -> dict[str, np.ndarray]:
    split_dir = artifact_utils.get_split_uri([examples], "eval")
    files = tf.io.gfile.glob(os.path.join(split_dir, "*"))
    spec = {key: tf.io.FixedLenFeature([], F.RAW_FEATURE_DTYPES[key])
            for key in F.QUERY_FEATURES}
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP")
               .take(limit).batch(limit).map(lambda x: tf.io.parse_example(x, spec)))
    batch = next(iter(dataset))
    return {key: value.numpy() for key, value in batch.items()}


@tfx.dsl.components.component
def IndexBuilder(  # noqa: N802  (TFX names components like classes)
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    scann_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    exact_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    towers_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    catalogue_uri: tfx.dsl.components.Parameter[str],
    index_config: tfx.dsl.components.Parameter[str],
) -> None:
    """Builds and validates the indexes; see the module docstring."""
    config = IndexConfig.from_json(index_config)
    towers_dir = serving_model_dir(model.uri)
    report = export_indexes(towers_dir, read_jsonl(catalogue_uri),
                            _held_out_queries(examples, config.eval_queries), config,
                            serving_model_dir(scann_model.uri),
                            serving_model_dir(exact_model.uri))
    io_utils.copy_dir(towers_dir, serving_model_dir(towers_model.uri))

    with tf.io.gfile.GFile(os.path.join(blessing.uri, INDEX_REPORT_FILE), "w") as handle:
        json.dump(report.to_dict(), handle, indent=2)
    if report.tuning:
        plot_index_tuning(report.tuning, config.tuning_target,
                          os.path.join(blessing.uri, TUNING_PLOT))
    blessing.set_int_custom_property("blessed", int(report.blessed))
    blessing.set_float_custom_property("recall_at_k", report.recall_at_k)
    blessing.set_float_custom_property("scann_ms_per_query", report.scann_ms_per_query)
    blessing.set_float_custom_property("exact_ms_per_query", report.exact_ms_per_query)
    blessing.set_int_custom_property("num_candidates", report.num_candidates)
    blessing.set_int_custom_property("k", report.k)
    blessing.set_int_custom_property("validation_attempts", len(report.rejected) + 1)
    for setting in ("num_leaves", "num_leaves_to_search", "num_reordering_candidates"):
        blessing.set_int_custom_property(setting, report.config[setting])
    blessing.set_string_custom_property("current_model", model.uri)
    # LatestBlessedModelStrategy pairs a blessing with its model by this id (as the
    # Evaluator's blessings do), so the next run can warm-start from these towers.
    blessing.set_int_custom_property("current_model_id", model.id)

