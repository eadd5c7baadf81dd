"""SavedModels that take raw features: the tf.Transform graph is embedded in each one.

Signatures (all inputs `[batch_size]`, keyed by the raw feature names of `recs.features`):

| model      | signature            | inputs                         | outputs                     |
|------------|----------------------|--------------------------------|-----------------------------|
| retrieval  | serving_default,     | QUERY_FEATURES                 | embedding [batch, dim]      |
| (towers)   | query_embedding      |                                |                             |
|            | candidate_embedding  | CANDIDATE_FEATURES             | embedding [batch, dim]      |
| ranker     | serving_default      | RANKER_FEATURES                | probability [batch]         |
|            | serving_tf_example   | examples: serialized tf.Example| probability [batch]         |
"""

import os

import tensorflow as tf

from recs import features as F

SERVING_DEFAULT = "serving_default"
QUERY_EMBEDDING = "query_embedding"
CANDIDATE_EMBEDDING = "candidate_embedding"
SERVING_TF_EXAMPLE = "serving_tf_example"
EXAMPLES_INPUT = "examples"


def to_transform_inputs(features: dict[str, tf.Tensor], raw_shapes: dict[str, list[int]]
                        ) -> dict[str, tf.Tensor]:
    """Reshapes `[batch_size]` raw features to the shapes the transform graph was built for.

    SchemaGen infers single-valued features as shape `[1]`, so the transform graph may expect
    `[batch_size, 1]`; served models always take `[batch_size]`.
    """
    return {key: tf.expand_dims(value, -1) if raw_shapes.get(key) == [1] else value
            for key, value in features.items()}


class RetrievalExport(tf.Module):
    """The trained towers behind the transform graph: raw features in, embeddings out.

    Args:
        transform_layer: `tft.TFTransformOutput.transform_features_layer()`.
        raw_feature_spec: the transform graph's raw feature spec (for input shapes).
        query_tower: maps transformed features to query embeddings.
        candidate_tower: maps transformed features to candidate embeddings.
    """

    def __init__(self, transform_layer: tf.keras.layers.Layer,
                 raw_feature_spec: dict[str, tf.io.FixedLenFeature],
                 query_tower: tf.keras.Model, candidate_tower: tf.keras.Model) -> None:
        super().__init__()
        self.transform_layer = transform_layer
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self._raw_shapes = {key: list(spec.shape) for key, spec in raw_feature_spec.items()}
        self.query_embedding = tf.function(
            self._query, input_signature=[F.serving_input_signature(F.QUERY_FEATURES)])
        self.candidate_embedding = tf.function(
            self._candidate, input_signature=[F.serving_input_signature(F.CANDIDATE_FEATURES)])

    def _transform(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return self.transform_layer(to_transform_inputs(features, self._raw_shapes))

    def _query(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"embedding": self.query_tower(self._transform(features))}

    def _candidate(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"embedding": self.candidate_tower(self._transform(features))}

    def save(self, path: str) -> None:
        query = self.query_embedding.get_concrete_function()
        tf.saved_model.save(self, path, signatures={
            SERVING_DEFAULT: query, QUERY_EMBEDDING: query,
            CANDIDATE_EMBEDDING: self.candidate_embedding.get_concrete_function()})


class RankerExport(tf.Module):
    """The ranker behind the transform graph, for raw features and for tf.Examples.

    Args:
        transform_layer: `tft.TFTransformOutput.transform_features_layer()`.
        raw_feature_spec: the transform graph's raw feature spec (parses tf.Examples).
        ranker: maps transformed features to `[batch_size, 1]` probabilities.
    """

    def __init__(self, transform_layer: tf.keras.layers.Layer,
                 raw_feature_spec: dict[str, tf.io.FixedLenFeature], ranker: tf.keras.Model
                 ) -> None:
        super().__init__()
        self.transform_layer = transform_layer
        self.ranker = ranker
        self._raw_shapes = {key: list(spec.shape) for key, spec in raw_feature_spec.items()}
        self._example_spec = {key: spec for key, spec in raw_feature_spec.items()
                              if key in F.RANKER_FEATURES}
        self.score = tf.function(
            self._score, input_signature=[F.serving_input_signature(F.RANKER_FEATURES)])
        self.score_examples = tf.function(
            self._score_examples,
            input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])

    def _probability(self, transformed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"probability": tf.reshape(self.ranker(transformed, training=False), [-1])}

    def _score(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return self._probability(
            self.transform_layer(to_transform_inputs(features, self._raw_shapes)))

    def _score_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, self._example_spec)
        return self._probability(self.transform_layer(parsed))

    def save(self, path: str) -> None:
        tf.saved_model.save(self, path, signatures={
            SERVING_DEFAULT: self.score.get_concrete_function(),
            SERVING_TF_EXAMPLE: self.score_examples.get_concrete_function()})


def serving_model_dir(model_root: str) -> str:
    """TFX's layout: a Trainer's model artifact holds the SavedModel in `Format-Serving`."""
    return os.path.join(model_root, "Format-Serving")
