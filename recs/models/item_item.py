"""Co-watching item-to-item scores, fitted in closed form and served inside the two towers.

EASE (Steck, "Embarrassingly Shallow Autoencoders", 2019) learns title-to-title weights from
the users x titles matrix X of training interactions: with G = X'X + l2 I and P = G^-1,
B = I - P / diag(P), whose diagonal is zero (a title never recommends itself). A user's score
for title j is the sum of B[i, j] over the titles i they watched. On MovieLens this one
matrix inverse beats most trained models (BASELINES.md).

To keep retrieval a single dot product (one ScaNN index, stock TF Serving), B is truncated
to rank r by SVD, B ~= (U S^1/2)(V S^1/2)': the query side sums, over the watched titles
(`recs.features.WATCHED`: up to 300 of the raw history, where the towers read 30), the rows of
U S^1/2 (`ItemItemQuery`), the candidate side looks up the title's row of V S^1/2
(`ItemItemCandidate`). Appended to the towers' embeddings, with the query side scaled by a
blend weight, the retrieval score becomes

    score(query, title) = tower score + weight * item-to-item score.

The factors are constants fitted after the towers train (never trained by gradient); they
live in the SavedModel as non-trainable variables.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from recs import features as F
from recs.config import ItemItemConfig, require

_USERS_PER_CHUNK = 4096


def cooccurrence(users: np.ndarray, titles: np.ndarray, num_titles: int) -> np.ndarray:
    """X'X of the binary users x titles matrix: how many users watched both titles.

    Args:
        users: `[n]` user ids (any integers) of the interactions.
        titles: `[n]` title indices in [0, num_titles).
        num_titles: number of title indices.

    Returns:
        `[num_titles, num_titles]` float64 counts; repeated (user, title) pairs count once.
    """
    users = np.asarray(users).ravel()
    titles = np.asarray(titles, dtype=np.int64).ravel()
    _, user_rows = np.unique(users, return_inverse=True)
    gram = np.zeros((num_titles, num_titles), dtype=np.float64)
    for start in range(0, int(user_rows.max(initial=-1)) + 1, _USERS_PER_CHUNK):
        inside = (user_rows >= start) & (user_rows < start + _USERS_PER_CHUNK)
        chunk = np.zeros((_USERS_PER_CHUNK, num_titles), dtype=np.float32)
        chunk[user_rows[inside] - start, titles[inside]] = 1.0
        gram += chunk.T @ chunk
    return gram


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's closed form: B = I - P / diag(P) with P = (gram + l2 I)^-1, diagonal zero.

    Args:
        gram: `[titles, titles]` co-occurrence counts X'X.
        l2: the L2 penalty (> 0).

    Returns:
        `[titles, titles]` float64 weights; row i, column j is what watching i adds to j.
    """
    require(l2 > 0, "l2", "> 0", l2)
    regularized = np.array(gram, dtype=np.float64, copy=True)
    regularized[np.diag_indices_from(regularized)] += l2
    inverse = np.linalg.inv(regularized)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


@dataclasses.dataclass(frozen=True)
class ItemItemFactors:
    """Low-rank factors of the item-to-item weights, rows indexed by title index.

    Attributes:
        history: `[titles, rank]`; a query sums the rows of the titles it watched.
        titles: `[titles, rank]`; a candidate is its own row.
    """

    history: np.ndarray
    titles: np.ndarray

    def scores(self, watched: np.ndarray) -> np.ndarray:
        """`[users, titles]` multi-hot (or counts) of watched titles -> `[users, titles]`."""
        return (watched @ self.history) @ self.titles.T


def fit_item_item(users: np.ndarray, titles: np.ndarray, num_titles: int,
                  config: ItemItemConfig) -> ItemItemFactors:
    """Fits EASE on the (user, title) interactions and factorizes it to `config.rank`.

    Args:
        users: `[n]` user ids of the engaged training pairs.
        titles: `[n]` title indices in [0, num_titles).
        num_titles: the title vocabulary size (out-of-vocabulary slot included).
        config: penalty and rank.

    Returns:
        The factors; their product is the rank-`config.rank` approximation of B.

    Raises:
        ValueError: no interactions, or a title index outside [0, num_titles).
    """
    titles = np.asarray(titles, dtype=np.int64).ravel()
    if not len(titles):
        raise ValueError("fit_item_item needs at least one (user, title) interaction; "
                         "received none. Check that the training split has engaged rows.")
    if titles.min() < 0 or titles.max() >= num_titles:
        raise ValueError(f"title indices must lie in [0, {num_titles}); received "
                         f"[{titles.min()}, {titles.max()}].")
    weights = ease_weights(cooccurrence(users, titles, num_titles), config.l2)
    left, singular, right = np.linalg.svd(weights)
    rank = min(config.rank, num_titles)
    root = np.sqrt(singular[:rank])
    history = np.zeros((num_titles, config.rank), dtype=np.float32)
    candidate = np.zeros((num_titles, config.rank), dtype=np.float32)
    history[:, :rank] = left[:, :rank] * root
    candidate[:, :rank] = right[:rank].T * root
    return ItemItemFactors(history=history, titles=candidate)


class _FactorTable(tf.keras.layers.Layer):
    """A constant `[rows, rank]` table, initialized from `values` when given."""

    def __init__(self, rows: int, rank: int, values: np.ndarray | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if values is not None and values.shape != (rows, rank):
            raise ValueError(f"values must have shape {(rows, rank)}; received "
                             f"{values.shape}.")
        self.rows, self.rank = rows, rank
        initializer = (tf.keras.initializers.Zeros() if values is None
                       else tf.keras.initializers.Constant(values))
        self.table = self.add_weight(name="factors", shape=(rows, rank),
                                     initializer=initializer, trainable=False)

    def get_config(self) -> dict:
        return {**super().get_config(), "rows": self.rows, "rank": self.rank}


class ItemItemQuery(_FactorTable):
    """Sums the history factors of a query's watched titles, times the blend weight.

    Args:
        rows: the watched ids' range (title vocabulary + 1; 0 = padding).
        rank: factor width.
        values: `[rows, rank]` initial table (row 0, the padding id, must be zeros).
        weight: initial blend weight (a non-trainable variable, set by `set_weight`).

    Call args:
        features: transformed features with `[batch_size, MAX_WATCHED]` ids of the watched
            titles (`recs.features.WATCHED`: the whole raw history, not the towers' first 30).

    Returns:
        `[batch_size, rank]` float32.
    """

    def __init__(self, rows: int, rank: int, values: np.ndarray | None = None,
                 weight: float = 1.0, **kwargs) -> None:
        super().__init__(rows, rank, values, **kwargs)
        self.weight = self.add_weight(name="weight", shape=(), trainable=False,
                                      initializer=tf.keras.initializers.Constant(weight))

    def set_weight(self, weight: float) -> None:
        require(weight >= 0, "weight", ">= 0", weight)
        self.weight.assign(weight)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        ids = features[F.WATCHED]
        return self.weight * tf.reduce_sum(tf.gather(self.table, ids), axis=1)


class ItemItemCandidate(_FactorTable):
    """Looks up a title's factors.

    Call args:
        features: transformed features with `[batch_size]` or `[batch_size, 1]` title ids.

    Returns:
        `[batch_size, rank]` float32.
    """

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        ids = tf.reshape(features[F.transformed_name(F.TITLE_ID)], [-1])
        return tf.gather(self.table, ids)


def item_item_layers(factors: ItemItemFactors, weight: float = 1.0
                     ) -> tuple[ItemItemQuery, ItemItemCandidate]:
    """The query and candidate layers of fitted factors.

    Watched id h is title index h - 1 (tf.Transform's padded ids; 0 is padding), so the query
    table is the history factors shifted down one row under a zero padding row; the last
    title index (out of vocabulary) never appears in a history.
    """
    rows, rank = factors.history.shape
    shifted = np.concatenate([np.zeros((1, rank), np.float32), factors.history[:-1]])
    return (ItemItemQuery(rows, rank, shifted, weight, name="item_item"),
            ItemItemCandidate(rows, rank, factors.titles, name="item_item"))
