"""SavedModels that take raw features: the tf.Transform graph is embedded in each one.

The towers and the ranker, with the signatures `recs.contract.signatures` lists.
"""

import os
from typing import Any

import numpy as np
import tensorflow as tf

from recs import features as F
from recs.contract.models import ASSETS_EXTRA, WARMUP_FILE, write_batching_params
from recs.contract.protos import signature_defs, string_tensor_proto
from recs.contract.signatures import (CANDIDATE_EMBEDDING, EMBEDDING, EXAMPLES, PROBABILITY,
                                      QUERY_EMBEDDING, SERVING_DEFAULT, SERVING_TF_EXAMPLE)


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
        return {EMBEDDING: self.query_tower(self._transform(features))}

    def _candidate(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {EMBEDDING: self.candidate_tower(self._transform(features))}

    def save(self, path: str) -> None:
        query = self.query_embedding.get_concrete_function()
        tf.saved_model.save(self, path, signatures={
            SERVING_DEFAULT: query, QUERY_EMBEDDING: query,
            CANDIDATE_EMBEDDING: self.candidate_embedding.get_concrete_function()})
        write_warmup_requests(path)
        write_batching_params(path)  # Every signature is row-aligned.


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
            input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES)])

    def _probability(self, transformed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {PROBABILITY: tf.reshape(self.ranker(transformed, training=False), [-1])}

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
        write_warmup_requests(path)
        write_batching_params(path)  # Every signature is row-aligned.


def load_saved_model(path: str) -> Any:
    """`tf.saved_model.load`, registering TF-DF's ops first when the model holds trees (a
    ranker blended with gradient-boosted trees: `recs.ensemble`)."""
    try:
        return tf.saved_model.load(path)
    except (RuntimeError, tf.errors.NotFoundError) as error:  # "Op type not registered"
        if "SimpleML" not in str(error):
            raise
    import tensorflow_decision_forests  # noqa: F401  (registers the trees' inference ops)
    return tf.saved_model.load(path)


def serving_model_dir(model_root: str) -> str:
    """TFX's layout: a Trainer's model artifact holds the SavedModel in `Format-Serving`."""
    return os.path.join(model_root, "Format-Serving")


def _placeholder_example() -> bytes:
    """A tf.Example holding every raw feature with an empty or zero value."""
    features = {}
    for key, dtype in F.RAW_FEATURE_DTYPES.items():
        if dtype == tf.string:
            features[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""]))
        elif dtype.is_integer:
            features[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))
        else:
            features[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[0.0]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_warmup_requests(path: str, batch_sizes: tuple[int, ...] = (1, 8)) -> str:
    """Writes TF Serving's warmup file for every signature of the SavedModel at `path`.

    Each signature gets one PredictRequest per batch size, with empty strings and zeros (every
    id is then out of vocabulary, which the transform graph maps to its OOV bucket); replaying
    them traces the signatures and initializes the vocabulary tables, so the first real
    request of a new version pays none of that.

    Returns:
        The path of `assets.extra/tf_serving_warmup_requests`.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    signatures = signature_defs(path)
    extra = os.path.join(path, ASSETS_EXTRA)
    tf.io.gfile.makedirs(extra)
    target = os.path.join(extra, WARMUP_FILE)
    example = _placeholder_example()
    with tf.io.TFRecordWriter(target) as writer:
        for name, signature in sorted(signatures.items()):
            for batch in batch_sizes:
                request = predict_pb2.PredictRequest()
                request.model_spec.signature_name = name
                for key, info in signature.inputs.items():
                    dtype = tf.dtypes.as_dtype(info.dtype)
                    shape = [batch if d.size < 0 else d.size for d in info.tensor_shape.dim]
                    if dtype == tf.string:
                        request.inputs[key].CopyFrom(string_tensor_proto(
                            [example if key == EXAMPLES else b""] * int(np.prod(shape)),
                            shape))
                    else:
                        request.inputs[key].CopyFrom(tf.make_tensor_proto(
                            np.zeros(shape, dtype=dtype.as_numpy_dtype), dtype=dtype))
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
    return target
