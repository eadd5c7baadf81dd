"""Co-watching item-to-item scores, fitted in closed form and served inside the two towers.

EASE (Steck, "Embarrassingly Shallow Autoencoders", 2019) learns title-to-title weights from
the users x titles matrix X of training interactions: with G = X'X + l2 I and P = G^-1,
B = I - P / diag(P), whose diagonal is zero (a title never recommends itself). A user's score
for title j is the sum of B[i, j] over the titles i they watched. On MovieLens this one
matrix inverse beats most trained models (BASELINES.md).

To keep retrieval a single dot product (one ScaNN index, stock TF Serving), B is truncated
to rank r, B ~= (U S^1/2)(V S^1/2)' (`fit_item_item` says how, for small and large
catalogues): the query side sums, over the watched titles
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
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
import tensorflow as tf
from sklearn.utils.extmath import randomized_svd

from recs import features as F
from recs.config import ItemItemConfig, require

# Columns of the titles x titles co-occurrence built per sparse product: bounds the
# temporaries to titles x this many floats.
_TITLES_PER_BLOCK = 2048


def interaction_matrix(users: np.ndarray, titles: np.ndarray, num_titles: int
                       ) -> scipy.sparse.csr_matrix:
    """The binary users x titles matrix X of the interactions.

    Args:
        users: `[n]` user ids (any integers) of the interactions.
        titles: `[n]` title indices in [0, num_titles).
        num_titles: number of title indices.

    Returns:
        `[distinct users, num_titles]` float32 CSR; repeated (user, title) pairs count once.
    """
    _, user_rows = np.unique(np.asarray(users).ravel(), return_inverse=True)
    titles = np.asarray(titles, dtype=np.int64).ravel()
    matrix = scipy.sparse.csr_matrix(
        (np.ones(len(titles), np.float32), (user_rows, titles)),
        shape=(int(user_rows.max(initial=-1)) + 1, num_titles))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def cooccurrence(users: np.ndarray, titles: np.ndarray, num_titles: int) -> np.ndarray:
    """X'X of the binary users x titles matrix: how many users watched both titles.

    Args:
        users: `[n]` user ids (any integers) of the interactions.
        titles: `[n]` title indices in [0, num_titles).
        num_titles: number of title indices.

    Returns:
        `[num_titles, num_titles]` float32 counts (exact below 2^24 users); repeated
        (user, title) pairs count once.
    """
    matrix = interaction_matrix(users, titles, num_titles)
    by_title = matrix.T.tocsr()
    gram = np.empty((num_titles, num_titles), dtype=np.float32)
    for start in range(0, num_titles, _TITLES_PER_BLOCK):
        stop = min(start + _TITLES_PER_BLOCK, num_titles)
        gram[:, start:stop] = (by_title @ matrix[:, start:stop]).toarray()
    return gram


def ease_weights(gram: np.ndarray, l2: float, overwrite: bool = False) -> np.ndarray:
    """EASE's closed form: B = I - P / diag(P) with P = (gram + l2 I)^-1, diagonal zero.

    Args:
        gram: `[titles, titles]` co-occurrence counts X'X (symmetric).
        l2: the L2 penalty (> 0).
        overwrite: compute in `gram`'s memory (float32, when it is float32): one titles x
            titles matrix in all instead of three.

    Returns:
        `[titles, titles]` weights in `gram`'s float dtype; row i, column j is what watching
        i adds to j.
    """
    require(l2 > 0, "l2", "> 0", l2)
    dtype = gram.dtype if gram.dtype in (np.float32, np.float64) else np.float64
    regularized = gram if overwrite and gram.dtype == dtype else np.array(gram, dtype=dtype)
    regularized[np.diag_indices_from(regularized)] += l2
    # Symmetric, so its transpose is the Fortran-ordered matrix LAPACK inverts in place.
    inverse = scipy.linalg.inv(regularized.T, overwrite_a=True, check_finite=False).T
    diagonal = np.diag(inverse).copy()
    inverse /= -diagonal
    inverse[np.diag_indices_from(inverse)] = 0.0
    return inverse


@dataclasses.dataclass(frozen=True)
class ItemItemFactors:
    """Low-rank factors of the item-to-item weights, rows indexed by title index.

    Attributes:
        history: `[titles, rank]`; a query sums the rows of the titles it watched.
        titles: `[titles, rank]`; a candidate is its own row.
        method: the fit that produced them (`ItemItemConfig.method`, "auto" resolved).
    """

    history: np.ndarray
    titles: np.ndarray
    method: str = "dense"

    def scores(self, watched: np.ndarray) -> np.ndarray:
        """`[users, titles]` multi-hot (or counts) of watched titles -> `[users, titles]`."""
        return (watched @ self.history) @ self.titles.T


def resolve_method(config: ItemItemConfig, num_titles: int) -> str:
    """The fit `config.method` names for a catalogue of `num_titles`: "auto" is the dense
    closed form up to `config.dense_max_titles` titles (one titles x titles float32 matrix),
    the low-rank one above."""
    if config.method != "auto":
        return config.method
    return "dense" if num_titles <= config.dense_max_titles else "low_rank"


def fit_item_item(users: np.ndarray, titles: np.ndarray, num_titles: int,
                  config: ItemItemConfig) -> ItemItemFactors:
    """Fits EASE on the (user, title) interactions as rank-`config.rank` factors.

    Two fits (`config.method`; "auto" picks by catalogue size, `resolve_method`):

    - "dense": the exact closed form on one titles x titles float32 matrix, then its
      rank-`config.rank` truncation by randomized SVD (Halko, Martinsson and Tropp, 2011).
    - "low_rank": never forms titles x titles. X'X is approximated by its top
      `config.components` eigenpairs (a randomized SVD of the sparse X) plus the residual's
      diagonal, so that (X'X + l2 I)^-1 is a diagonal minus a rank-`components` term
      (Woodbury) and B's off-diagonal part is a product of two `[titles, components]`
      factors; that product, diagonal excluded, is truncated to `config.rank` by Lanczos
      (ARPACK) without forming it. Memory is linear in titles.

    Args:
        users: `[n]` user ids of the engaged training pairs.
        titles: `[n]` title indices in [0, num_titles).
        num_titles: the title vocabulary size (out-of-vocabulary slot included).
        config: method, penalty and rank.

    Returns:
        The factors; their product approximates B to rank `config.rank`.

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
    method = resolve_method(config, num_titles)
    if method == "dense":
        weights = ease_weights(cooccurrence(users, titles, num_titles), config.l2,
                               overwrite=True)
        history, candidate = _truncate(weights, config.rank, config.seed)
    else:
        history, candidate = _low_rank_ease(interaction_matrix(users, titles, num_titles),
                                            config)
    rank = history.shape[1]
    padded = [np.zeros((num_titles, config.rank), dtype=np.float32) for _ in range(2)]
    padded[0][:, :rank], padded[1][:, :rank] = history, candidate
    return ItemItemFactors(history=padded[0], titles=padded[1], method=method)


def _truncate(weights: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-`rank` factors L, R of `weights` ~= L R' (singular values split evenly)."""
    rank = min(rank, weights.shape[0])
    if rank >= weights.shape[0] // 2:
        left, singular, right = np.linalg.svd(weights)
    else:
        left, singular, right = randomized_svd(weights, rank, n_oversamples=2 * rank,
                                               n_iter=6, random_state=seed)
    root = np.sqrt(singular[:rank])
    return left[:, :rank] * root, right[:rank].T * root


def _low_rank_ease(matrix: scipy.sparse.csr_matrix, config: ItemItemConfig
                   ) -> tuple[np.ndarray, np.ndarray]:
    """EASE's B off the diagonal from X'X ~= V S^2 V' + diag(residual), as two factors.

    With E = diag(1 / (residual + l2)) and C = (S^-2 + V'EV)^-1, Woodbury gives
    P = (X'X + l2 I)^-1 ~= E - (EV) C (EV)', so for i != j, B[i, j] = -P[i, j] / P[j, j] =
    [(EV) C (EV)'][i, j] / P[j, j]: history factors EV L and title factors EV L / diag(P),
    with C = L L'.
    """
    components = min(config.components, *matrix.shape)
    if components >= min(matrix.shape) // 2:
        _, singular, right = np.linalg.svd(matrix.toarray(), full_matrices=False)
    else:
        _, singular, right = randomized_svd(matrix, components, n_oversamples=components // 4,
                                            n_iter=4, random_state=config.seed)
    singular, right = singular[:components], right[:components].T.astype(np.float64)
    keep = singular > 1e-6 * max(singular[0], 1e-30)
    singular, right = singular[keep], right[:, keep]
    counts = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()  # diag(X'X)
    residual = np.maximum(counts - (right ** 2) @ singular ** 2, 0.0)
    scaled = right / (residual + config.l2)[:, None]  # E V
    core = np.linalg.inv(np.diag(singular ** -2.0) + right.T @ scaled)
    lower = np.linalg.cholesky((core + core.T) / 2)
    history = scaled @ lower
    diagonal = 1.0 / (residual + config.l2) - np.einsum("ij,ij->i", history, history)
    candidate = history / diagonal[:, None]
    if history.shape[1] <= config.rank:
        return history.astype(np.float32), candidate.astype(np.float32)
    return _truncate_off_diagonal(history, candidate, config.rank, config.seed)


def _truncate_off_diagonal(history: np.ndarray, candidate: np.ndarray, rank: int, seed: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Rank-`rank` factors of history @ candidate' with its diagonal set to zero, never
    formed when it is large. B's diagonal is zero; the product's is large and would take
    most of the truncated rank (on ML-1M: NDCG@10 0.253 with it, 0.288 without)."""
    diagonal = np.einsum("ij,ij->i", history, candidate)
    if len(history) <= 4 * rank:
        product = history @ candidate.T
        product[np.diag_indices_from(product)] = 0.0
        left, singular, right = np.linalg.svd(product)
        left, singular, right = left[:, :rank], singular[:rank], right[:rank]
    else:
        def times(first: np.ndarray, second: np.ndarray, x: np.ndarray) -> np.ndarray:
            x = x.reshape(len(first), -1)
            return first @ (second.T @ x) - diagonal[:, None] * x

        product = scipy.sparse.linalg.LinearOperator(
            (len(history), len(history)), dtype=np.float64,
            matvec=lambda x: times(history, candidate, x).ravel(),
            rmatvec=lambda x: times(candidate, history, x).ravel(),
            matmat=lambda x: times(history, candidate, x),
            rmatmat=lambda x: times(candidate, history, x))
        left, singular, right = scipy.sparse.linalg.svds(product, k=rank, random_state=seed)
    root = np.sqrt(singular)
    return (left * root).astype(np.float32), (right.T * root).astype(np.float32)


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
