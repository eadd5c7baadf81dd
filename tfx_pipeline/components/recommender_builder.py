"""RecommenderBuilder: the one-call recommender models, from a blessed index and ranker.

Inputs: the Transform graph, the RankerTrainer's model, the IndexBuilder's ScaNN and exact
retrieval models, and both blessings (the Evaluator's and the IndexBuilder's). Outputs: the
ScaNN and the exact recommender SavedModels (`recs.recommend`) and a ModelBlessing that is
blessed only when both inputs are, so the Pushers never push a recommender built on a refused
ranker or index.
"""

import os

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs.assembly import export_recommenders
from recs.data.catalogue import read_jsonl
from recs.export import load_saved_model, serving_model_dir

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

BLESSED = "blessed"


def _blessed(blessing: tfx.types.standard_artifacts.ModelBlessing) -> bool:
    return bool(blessing.get_int_custom_property(BLESSED))


@tfx.dsl.components.component
def RecommenderBuilder(  # noqa: N802  (TFX names components like classes)
    transform_graph: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.TransformGraph],
    ranker_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    ranker_blessing: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ModelBlessing],
    scann_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    exact_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    index_blessing: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ModelBlessing],
    recommender_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    recommender_exact_model: tfx.dsl.components.OutputArtifact[
        tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    catalogue_uri: tfx.dsl.components.Parameter[str],
) -> None:
    """Builds the recommenders when the ranker and the index are both blessed."""
    blessed = _blessed(ranker_blessing) and _blessed(index_blessing)
    blessing.set_int_custom_property(BLESSED, int(blessed))
    blessing.set_string_custom_property("current_model", recommender_model.uri)
    if not blessed:
        tf.io.gfile.makedirs(blessing.uri)
        with tf.io.gfile.GFile(os.path.join(blessing.uri, "NOT_BLESSED"), "w") as handle:
            handle.write("the ranker or the index was not blessed\n")
        return
    ranker = load_saved_model(serving_model_dir(ranker_model.uri))
    export_recommenders(tft.TFTransformOutput(transform_graph.uri),
                        serving_model_dir(scann_model.uri), serving_model_dir(exact_model.uri),
                        ranker.ranker, read_jsonl(catalogue_uri),
                        serving_model_dir(recommender_model.uri),
                        serving_model_dir(recommender_exact_model.uri))
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED"), "w") as handle:
        handle.write("")
