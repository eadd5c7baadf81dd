"""The recommender SavedModel: retrieval, exclusion and ranking in one model call.

    recommend(query features [1], excluded_title_ids [E])
      -> retrieval (query tower -> ScaNN or brute-force top C)
      -> drop excluded and padding ids
      -> rank_candidates(query, the C' titles left)
      -> title_ids, probability, retrieval_score [C'], best probability first; query_embedding

    rank_candidates(query features [1], title_ids [N]) -> probability [N], found [N]
      the tf.Transform graph runs once, on the query; each title's transformed features come
      from a table frozen at export (the catalogue snapshot, already transformed), and the
      (user, title) cross features are computed per candidate (`recs.features.genre_match`)

So a request carries one query and ids, and the transform graph runs once per request instead
of once per candidate row. Titles the table does not hold (published after export) come back
with `found` False and probability 0: score those from their features with the ranker's
`serving_default`.

The exact variant (a brute-force index) loads in stock TF Serving; the ScaNN variant needs
ScaNN's ops. Neither may be batched across requests (their inputs do not share a batch
dimension; `recs.contract.signatures`).
"""

from typing import Any

import numpy as np
import tensorflow as tf

from recs import features as F
from recs.contract.signatures import (CANDIDATE_TITLE_IDS, EXCLUDED_TITLE_IDS, FOUND,
                                      PROBABILITY, QUERY_EMBEDDING_OUTPUT, RANK_CANDIDATES,
                                      RECOMMEND, RETRIEVAL_SCORE, SCORES, TITLE_IDS)
from recs.export import to_transform_inputs, write_warmup_requests
from recs.types import ArrayDict

TITLE_TRANSFORMED = F.CANDIDATE_TRANSFORMED + (F.SAMPLING_PROBABILITY,)
"""What the catalogue table holds per title."""
_OUTCOMES = (F.transformed_name(F.LABEL), F.WATCH_TIME_Z)
"""Transformed outcomes: not model inputs (the label is dropped; the weight is a zero)."""


def _placeholder(key: str, count: int) -> np.ndarray:
    dtype = F.RAW_FEATURE_DTYPES[key]
    if dtype == tf.string:
        return np.full(count, b"", dtype=object)
    return np.zeros(count, dtype=dtype.as_numpy_dtype)


class RecommenderExport(tf.Module):
    """The recommender model (see the module docstring).

    Args:
        transform_output: the `tft.TFTransformOutput` the ranker was trained on.
        retrieval: a loaded retrieval SavedModel (`recs.index.IndexedRetrieval`).
        ranker: the ranker's Keras model, or the `ranker` of a loaded `RankerExport`; it maps
            every transformed feature but the label to `[batch, 1]` probabilities.
        catalogue: raw candidate features of every indexed title (`title_id` unique).
    """

    def __init__(self, transform_output: Any, retrieval: tf.Module, ranker: Any,
                 catalogue: ArrayDict) -> None:
        super().__init__()
        self.transform_layer = transform_output.transform_features_layer()
        self.retrieval = retrieval
        self.ranker = ranker
        self._raw_shapes = {key: list(spec.shape)
                            for key, spec in transform_output.raw_feature_spec().items()}
        self._raw_keys = tuple(transform_output.raw_feature_spec())
        ids = np.asarray(catalogue[F.TITLE_ID]).astype(object)
        if len(set(ids.tolist())) != len(ids):
            raise ValueError("catalogue title_id values must be unique; deduplicate the "
                             "catalogue.")
        table = self._transform({**{key: _placeholder(key, len(ids))
                                    for key in self._raw_keys},
                                 **{key: np.asarray(catalogue[key]) for key in catalogue}})
        self.title_features = {key: tf.Variable(table[key], trainable=False, name=key)
                               for key in TITLE_TRANSFORMED}
        self.title_genres = tf.Variable(np.asarray(catalogue[F.GENRE]).astype(object),
                                        trainable=False, name="genre")
        self.rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant([str(i).encode() for i in ids]),
                                                tf.range(len(ids), dtype=tf.int64)),
            default_value=-1)
        query = F.serving_input_signature(F.QUERY_FEATURES)
        self.rank_candidates = tf.function(self._rank_candidates, input_signature=[
            query, tf.TensorSpec([None], tf.string, name=CANDIDATE_TITLE_IDS)])
        self.recommend = tf.function(self._recommend, input_signature=[
            query, tf.TensorSpec([None], tf.string, name=EXCLUDED_TITLE_IDS)])

    def _transform(self, raw: dict[str, Any]) -> dict[str, tf.Tensor]:
        return self.transform_layer(to_transform_inputs(
            {key: tf.constant(value) if not isinstance(value, tf.Tensor) else value
             for key, value in raw.items()}, self._raw_shapes))

    def _rank_candidates(self, query: dict[str, tf.Tensor], title_ids: tf.Tensor
                         ) -> dict[str, tf.Tensor]:
        count = tf.shape(title_ids)[0]
        raw = {key: (query[key][:1] if key in query else tf.constant(_placeholder(key, 1)))
               for key in self._raw_keys}
        transformed = self.transform_layer(to_transform_inputs(raw, self._raw_shapes))
        rows = self.rows.lookup(title_ids)
        found = rows >= 0
        safe = tf.maximum(rows, 0)
        features = {}
        for key, value in transformed.items():
            if key in _OUTCOMES or key in TITLE_TRANSFORMED or key in F.CROSS_TRANSFORMED:
                continue
            multiples = tf.concat([[count], tf.ones([tf.rank(value) - 1], tf.int32)], 0)
            features[key] = tf.tile(value, multiples)
        for key, table in self.title_features.items():
            features[key] = tf.gather(table, safe)
        features[F.transformed_name(F.GENRE_MATCH)] = F.genre_match(
            tf.repeat(query[F.PREFERRED_GENRES][:1], count), tf.gather(self.title_genres, safe))
        features[F.WATCH_TIME_Z] = tf.zeros([count], tf.float32)
        probability = tf.reshape(self.ranker(features, training=False), [-1])
        return {PROBABILITY: tf.where(found, probability, 0.0), FOUND: found}

    def _recommend(self, query: dict[str, tf.Tensor], excluded: tf.Tensor
                   ) -> dict[str, tf.Tensor]:
        retrieved = self.retrieval.recommend({key: value[:1] for key, value in query.items()})
        # Restored functions drop static shapes: one query's results are `[C]`.
        ids = tf.reshape(retrieved[TITLE_IDS][0], [-1])
        scores = tf.reshape(retrieved[SCORES][0], [-1])
        # ScaNN pads a short result with empty ids and NaN scores.
        keep = tf.logical_and(tf.strings.length(ids) > 0, tf.logical_not(tf.math.is_nan(scores)))
        keep = tf.logical_and(keep, tf.logical_not(
            tf.reduce_any(tf.equal(ids[:, tf.newaxis], excluded[tf.newaxis, :]), axis=1)))
        ids, scores = tf.boolean_mask(ids, keep), tf.boolean_mask(scores, keep)
        ranked = self._rank_candidates(query, ids)
        order = tf.argsort(ranked[PROBABILITY], direction="DESCENDING", stable=True)
        return {TITLE_IDS: tf.gather(ids, order),
                PROBABILITY: tf.gather(ranked[PROBABILITY], order),
                RETRIEVAL_SCORE: tf.gather(scores, order),
                QUERY_EMBEDDING_OUTPUT: retrieved[QUERY_EMBEDDING_OUTPUT][:1]}

    def save(self, path: str, scann: bool) -> None:
        """Writes the SavedModel (ScaNN's op namespace allowed when the index is ScaNN's)."""
        from recs.index import SCANN_SAVE_OPTIONS

        tf.saved_model.save(self, path, signatures={
            RECOMMEND: self.recommend.get_concrete_function(),
            RANK_CANDIDATES: self.rank_candidates.get_concrete_function()},
            options=SCANN_SAVE_OPTIONS if scann else None)
        write_warmup_requests(path)
