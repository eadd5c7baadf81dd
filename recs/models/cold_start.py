"""Cold start: a popularity prior within the user's segment, weighted by what is known.

A user who just signed up has an unknown id and an empty history: the query tower sees only
the profile and the context, and the towers' scores are weak (log-Q correction also takes the
popularity bias out of them on purpose). Such a user is better served by what people like
them watch, and less so with every play. The prior adds that back inside the retrieval
score:

    score(user, title) = towers [+ item-to-item] + w(user) * log p(title | segment(user))

    p(title | s) = (c_s(title) + m * p(title)) / (N_s + m),
    p(title)     = (c(title) + 1) / (N + titles)

with c the engaged training plays, the segment the user's age bucket, m a smoothing count
(one far above any segment's plays gives the whole audience's popularity) and
w(user) a weight per (id known or not, plays in the history: 0, 1, 2, 3, 4-5, 6-10, 11-20,
21+), all fitted on held-out users (`recs.training`), never hand-set. Titles unseen in
training (and new titles published later) get the average log-probability, as they get the
average id embedding.

As the item-to-item part, it keeps retrieval one dot product: the candidate side appends the
title's `[AGE_BUCKETS]` log-probabilities (`PriorCandidate`), the query side appends w(user)
times its age bucket's one-hot (`PriorQuery`); both are non-trainable constants in the
SavedModel, so the ScaNN index, TF Serving and the fresh-title side index see the prior with
no code of their own.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from recs import features as F
from recs.config import require

HISTORY_BOUNDARIES = (1, 2, 3, 4, 6, 11, 21)
"""Plays in a query's history where its prior weight changes: buckets 0, 1, 2, 3, 4-5, 6-10,
11-20 and 21 or more."""

HISTORY_BUCKETS = len(HISTORY_BOUNDARIES) + 1

NEW, KNOWN = 0, 1
"""Rows of the weight table: users whose id is out of the vocabulary, and users it has."""


def history_bucket(plays: np.ndarray) -> np.ndarray:
    """The weight bucket of each count of plays (`HISTORY_BOUNDARIES`).

    Example:
        >>> history_bucket(np.array([0, 1, 5, 30])).tolist()
        [0, 1, 4, 7]
    """
    return np.searchsorted(np.asarray(HISTORY_BOUNDARIES), plays, side="right")


def segment_log_popularity(segments: np.ndarray, titles: np.ndarray, num_titles: int,
                           smoothing: float) -> np.ndarray:
    """Smoothed log p(title | segment) from engaged plays.

    Args:
        segments: `[plays]` age bucket of each play, in [0, AGE_BUCKETS).
        titles: `[plays]` title index, in [0, num_titles); the last index is the
            out-of-vocabulary title.
        num_titles: title vocabulary size, out-of-vocabulary row included.
        smoothing: pseudo-count m pulling each segment towards the whole audience.

    Returns:
        `[num_titles, AGE_BUCKETS]` float32; the out-of-vocabulary row holds each segment's
        mean over the known titles.

    Raises:
        ValueError: `smoothing` is not positive, or a segment or title index is out of range.
    """
    require(smoothing > 0, "smoothing", "> 0", smoothing)
    segments, titles = np.asarray(segments, np.int64), np.asarray(titles, np.int64)
    if len(segments) and (segments.min() < 0 or segments.max() >= F.AGE_BUCKETS):
        raise ValueError(f"segments must be in [0, {F.AGE_BUCKETS}); received values from "
                         f"{segments.min()} to {segments.max()}.")
    if len(titles) and (titles.min() < 0 or titles.max() >= num_titles):
        raise ValueError(f"titles must be in [0, {num_titles}); received values from "
                         f"{titles.min()} to {titles.max()}.")
    counts = np.zeros((num_titles, F.AGE_BUCKETS), np.float64)
    np.add.at(counts, (titles, segments), 1.0)
    overall = (counts.sum(axis=1) + 1.0) / (counts.sum() + num_titles)
    within = (counts + smoothing * overall[:, None]) / (counts.sum(axis=0) + smoothing)
    log_p = np.log(within)
    log_p[-1] = log_p[:-1].mean(axis=0) if num_titles > 1 else log_p[-1]
    return log_p.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ColdStartPrior:
    """A fitted prior: the candidate table, the query weights and how they were chosen.

    Attributes:
        log_popularity: `[titles, AGE_BUCKETS]` log p(title | segment).
        weights: `[2, HISTORY_BUCKETS]` weight of new (row `NEW`) and known (`KNOWN`) users
            by history bucket.
        smoothing: the smoothing count m of `log_popularity`.
    """

    log_popularity: np.ndarray
    weights: np.ndarray
    smoothing: float

    def __post_init__(self) -> None:
        require(self.log_popularity.ndim == 2
                and self.log_popularity.shape[1] == F.AGE_BUCKETS, "log_popularity",
                f"a [titles, {F.AGE_BUCKETS}] array", self.log_popularity.shape)
        require(self.weights.shape == (2, HISTORY_BUCKETS), "weights",
                f"a [2, {HISTORY_BUCKETS}] array", self.weights.shape)

    @property
    def active(self) -> bool:
        """Whether any weight is above 0 (otherwise the prior is not attached)."""
        return bool(np.any(self.weights > 0))


def _ids(features: dict[str, tf.Tensor], key: str) -> tf.Tensor:
    return tf.reshape(features[F.transformed_name(key)], [-1])


class PriorQuery(tf.keras.layers.Layer):
    """w(user) times the one-hot of the user's age bucket.

    Args:
        users: user vocabulary size (the last id is the out-of-vocabulary user).
        weights: `[2, HISTORY_BUCKETS]` initial weights (non-trainable).

    Call args:
        features: transformed features: `[batch_size]` user and age-bucket ids and the
            `[batch_size, MAX_HISTORY]` history ids (0 = padding).

    Returns:
        `[batch_size, AGE_BUCKETS]` float32.
    """

    def __init__(self, users: int, weights: np.ndarray | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.users = users
        initial = np.zeros((2, HISTORY_BUCKETS), np.float32) if weights is None else weights
        self.table = self.add_weight(
            name="weights", shape=(2, HISTORY_BUCKETS), trainable=False,
            initializer=tf.keras.initializers.Constant(np.asarray(initial, np.float32)))
        self.boundaries = tf.constant(HISTORY_BOUNDARIES, tf.int64)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        known = tf.cast(_ids(features, F.USER_ID) < self.users - 1, tf.int64)
        history = features[F.transformed_name(F.HISTORY)]
        plays = tf.reduce_sum(tf.cast(tf.not_equal(history, 0), tf.int64), axis=1)
        bucket = tf.searchsorted(self.boundaries, plays, side="right", out_type=tf.int64)
        weight = tf.gather_nd(self.table, tf.stack([known, bucket], axis=1))
        age = tf.one_hot(_ids(features, F.AGE), F.AGE_BUCKETS, dtype=tf.float32)
        return weight[:, tf.newaxis] * age

    def get_config(self) -> dict:
        return {**super().get_config(), "users": self.users}


class PriorCandidate(tf.keras.layers.Layer):
    """Looks up a title's log-popularity in each age segment.

    Args:
        titles: title vocabulary size.
        values: `[titles, AGE_BUCKETS]` initial table (non-trainable).

    Call args:
        features: transformed features with `[batch_size]` or `[batch_size, 1]` title ids.

    Returns:
        `[batch_size, AGE_BUCKETS]` float32.
    """

    def __init__(self, titles: int, values: np.ndarray | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.titles = titles
        initializer = (tf.keras.initializers.Zeros() if values is None
                       else tf.keras.initializers.Constant(np.asarray(values, np.float32)))
        self.table = self.add_weight(name="log_popularity", shape=(titles, F.AGE_BUCKETS),
                                     initializer=initializer, trainable=False)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.gather(self.table, _ids(features, F.TITLE_ID))

    def get_config(self) -> dict:
        return {**super().get_config(), "titles": self.titles}


def prior_layers(prior: ColdStartPrior, users: int) -> tuple[PriorQuery, PriorCandidate]:
    """The query and candidate layers of a fitted prior."""
    return (PriorQuery(users, prior.weights, name="cold_start"),
            PriorCandidate(len(prior.log_popularity), prior.log_popularity,
                           name="cold_start"))


def average_start(tower: tf.keras.Model, key: str, counts: np.ndarray) -> np.ndarray:
    """Sets the out-of-vocabulary row of `tower`'s `key` embedding to the play-weighted mean
    of the known rows: a new user (or title) starts where the average one is.

    Args:
        tower: a `recs.models.retrieval.Tower` whose encoder embeds `key` (an id feature
            whose last row is out of vocabulary).
        key: `F.USER_ID` or `F.TITLE_ID`.
        counts: `[vocabulary size]` training plays of each id.

    Returns:
        The row it replaced (to put back with `restore_row` when the mean does worse).
    """
    table = tower.encoder.embeddings[key].embeddings
    rows = table.numpy()
    known = np.asarray(counts[:-1], np.float64)
    weights = known / known.sum() if known.sum() > 0 else np.full(len(known), 1 / len(known))
    old = rows[-1].copy()
    table[-1].assign((weights @ rows[:-1]).astype(rows.dtype))
    return old


def restore_row(tower: tf.keras.Model, key: str, row: np.ndarray) -> None:
    """Puts back an out-of-vocabulary row `average_start` replaced."""
    tower.encoder.embeddings[key].embeddings[-1].assign(row)
