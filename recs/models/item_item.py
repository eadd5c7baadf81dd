"""Co-watching item-to-item scores, fitted in closed form and served inside the two towers.

EASE (Steck, "Embarrassingly Shallow Autoencoders", 2019) learns title-to-title weights from
the users x titles matrix X of training interactions: with G = X'X + l2 I and P = G^-1,
B = I - P / diag(P), whose diagonal is zero (a title never recommends itself). A user's score
for title j is the sum of B[i, j] over the titles i they watched. On MovieLens this one
matrix inverse beats most trained models (BASELINES.md). Its dropout variant DLAE (Steck,
"Autoencoders that don't overfit towards the Identity", 2020) penalizes each title by how
often it is watched, Lambda = l2 + p / (1 - p) diag(X'X), and fits B = I - (X'X + Lambda)^-1
Lambda (the closed form of a linear autoencoder trained with input dropout p); its diagonal
is set to zero here, as a title the user watched is never recommended again.

To keep retrieval a single dot product (one ScaNN index, stock TF Serving), B is reduced to
rank r, B ~= H W' (`fit_item_item` says how, for small and large catalogues): the query side
sums, over the watched titles (`recs.features.WATCHED`: up to 300 of the raw history, where
the towers read 30), the rows of H (`ItemItemQuery`), the candidate side looks up the title's
row of W (`ItemItemCandidate`). Appended to the towers' embeddings, with the query side scaled
by a blend weight, the retrieval score becomes

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
    return _gram(interaction_matrix(users, titles, num_titles))


def _gram(matrix: scipy.sparse.csr_matrix) -> np.ndarray:
    """X'X of a users x titles CSR matrix, as float32, a block of columns at a time."""
    num_titles = matrix.shape[1]
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
    return item_weights(gram, l2, dropout=0.0, overwrite=overwrite)


def penalties(counts: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    """Each title's L2 penalty: l2, plus p / (1 - p) times its play count under dropout p
    (DLAE's Lambda; with p = 0, EASE's l2 for every title).

    Args:
        counts: `[titles]` diag(X'X): how many users watched each title.
        l2: the base penalty (> 0).
        dropout: DLAE's input dropout p, in [0, 1).
    """
    require(l2 > 0, "l2", "> 0", l2)
    require(0 <= dropout < 1, "dropout", "in [0, 1)", dropout)
    return l2 + dropout / (1.0 - dropout) * np.asarray(counts, np.float64)


def item_weights(gram: np.ndarray, l2: float, dropout: float = 0.0, overwrite: bool = False
                 ) -> np.ndarray:
    """The closed-form title-to-title weights, diagonal zero: EASE when `dropout` is 0, DLAE
    above (B = I - P Lambda with P = (gram + Lambda)^-1, `penalties`).

    Args:
        gram: `[titles, titles]` co-occurrence counts X'X (symmetric).
        l2: the base L2 penalty (> 0).
        dropout: DLAE's input dropout p, in [0, 1); 0 fits EASE.
        overwrite: compute in `gram`'s memory (float32, when it is float32): one titles x
            titles matrix in all instead of three.

    Returns:
        `[titles, titles]` weights in `gram`'s float dtype; row i, column j is what watching
        i adds to j.

    Example:
        >>> item_weights(np.array([[2.0, 1.0], [1.0, 2.0]]), l2=1.0).round(3).tolist()
        [[0.0, 0.333], [0.333, 0.0]]
    """
    penalty = penalties(np.diag(gram), l2, dropout)
    dtype = gram.dtype if gram.dtype in (np.float32, np.float64) else np.float64
    regularized = gram if overwrite and gram.dtype == dtype else np.array(gram, dtype=dtype)
    regularized[np.diag_indices_from(regularized)] += penalty.astype(dtype)
    # Symmetric, so its transpose is the Fortran-ordered matrix LAPACK inverts in place.
    inverse = scipy.linalg.inv(regularized.T, overwrite_a=True, check_finite=False).T
    if dropout == 0:
        inverse /= -np.diag(inverse).copy()
    else:
        inverse *= -penalty.astype(dtype)
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
    """Fits the item-to-item weights B (EASE or DLAE, `item_weights`) on the (user, title)
    interactions as rank-`config.rank` factors.

    Two fits (`config.method`; "auto" picks by catalogue size, `resolve_method`):

    - "dense": the exact closed form on one titles x titles float32 matrix.
    - "low_rank": never forms titles x titles. X'X is approximated by its top
      `config.components` eigenpairs (a randomized SVD of the sparse X) plus the residual's
      diagonal, so that (X'X + Lambda)^-1 is a diagonal minus a rank-`components` term
      (Woodbury) and B's off-diagonal part is a product of two `[titles, components]`
      factors. Memory is linear in titles.

    Either way B is then reduced to rank `config.rank` where it matters, on the training
    users' scores rather than on B itself (reduced-rank regression): with W the top right
    singular vectors of D X B, D scaling each user's row by one over their plays so that
    every user counts alike (as the metrics average over users, where X B alone is dominated
    by the heaviest), B ~= (B W) W'. On ML-1M this keeps much more of B's accuracy at rank 64
    than truncating B's own SVD (the README gives the figures).

    Args:
        users: `[n]` user ids of the engaged training pairs.
        titles: `[n]` title indices in [0, num_titles).
        num_titles: the title vocabulary size (out-of-vocabulary slot included).
        config: method, penalties and rank.

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
    matrix = interaction_matrix(users, titles, num_titles)
    if method == "dense":
        weights = item_weights(_gram(matrix), config.l2, config.dropout, overwrite=True)
        operator = _DenseWeights(weights)
    else:
        operator = _low_rank_weights(matrix, config)
    plays = np.asarray(matrix.sum(axis=1), np.float64).ravel()
    per_user = scipy.sparse.diags(1.0 / np.maximum(plays, 1.0)).astype(np.float32) @ matrix
    history, candidate = _reduced_rank(per_user.tocsr(), operator, config.rank, config.seed)
    rank = history.shape[1]
    padded = [np.zeros((num_titles, config.rank), dtype=np.float32) for _ in range(2)]
    padded[0][:, :rank], padded[1][:, :rank] = history, candidate
    return ItemItemFactors(history=padded[0], titles=padded[1], method=method)


class _DenseWeights:
    """B held as one dense matrix: B x and B' x."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights
        self.size = len(weights)

    def times(self, x: np.ndarray) -> np.ndarray:
        return self.weights @ x.astype(self.weights.dtype, copy=False)

    def transposed_times(self, x: np.ndarray) -> np.ndarray:
        return self.weights.T @ x.astype(self.weights.dtype, copy=False)

    def dense(self) -> np.ndarray:
        return self.weights


class _FactoredWeights:
    """B = history @ candidate' with its diagonal set to zero, never formed."""

    def __init__(self, history: np.ndarray, candidate: np.ndarray) -> None:
        self.history, self.candidate = history, candidate
        self.diagonal = np.einsum("ij,ij->i", history, candidate)
        self.size = len(history)

    def times(self, x: np.ndarray) -> np.ndarray:
        return self.history @ (self.candidate.T @ x) - self.diagonal[:, None] * x

    def transposed_times(self, x: np.ndarray) -> np.ndarray:
        return self.candidate @ (self.history.T @ x) - self.diagonal[:, None] * x

    def dense(self) -> np.ndarray:
        product = self.history @ self.candidate.T
        product[np.diag_indices_from(product)] = 0.0
        return product


def _reduced_rank(matrix: scipy.sparse.csr_matrix, weights: "_DenseWeights | _FactoredWeights",
                  rank: int, seed: int, iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Rank-`rank` factors (B W, W) of B, W the top right singular vectors of `matrix` B.

    Among rank-`rank` matrices B_r, B W W' minimizes ||X B - X B_r|| for X = `matrix` (the
    reduced-rank regression solution), so the factors keep what B does for those users. W
    comes from randomized subspace iteration on X B (Halko, Martinsson and Tropp, 2011),
    which only multiplies B and the sparse X by `[titles, 2 * rank]` blocks; at full rank the
    factors are B and the identity.
    """
    size = weights.size
    if rank >= size:
        return weights.dense().astype(np.float32), np.eye(size, dtype=np.float32)

    def gram_times(block: np.ndarray) -> np.ndarray:  # (X B)'(X B) block
        return weights.transposed_times(matrix.T @ (matrix @ weights.times(block)))

    block = np.random.default_rng(seed).standard_normal((size, min(2 * rank, size)))
    for _ in range(iterations):
        block, _ = scipy.linalg.qr(gram_times(block), mode="economic", check_finite=False)
    projected = block.T @ gram_times(block)
    values, vectors = scipy.linalg.eigh((projected + projected.T) / 2, check_finite=False)
    basis = block @ vectors[:, np.argsort(values)[::-1][:rank]]
    return (weights.times(basis).astype(np.float32), basis.astype(np.float32))


def _low_rank_weights(matrix: scipy.sparse.csr_matrix, config: ItemItemConfig
                      ) -> _FactoredWeights:
    """B off the diagonal from X'X ~= V S^2 V' + diag(residual), as two factors.

    With E = diag(1 / (residual + Lambda)) and C = (S^-2 + V'EV)^-1, Woodbury gives
    P = (X'X + Lambda)^-1 ~= E - (EV) C (EV)'. For i != j, EASE's B[i, j] = -P[i, j] / P[j, j]
    and DLAE's -P[i, j] Lambda[j], both [(EV) C (EV)'][i, j] times a per-column scale: history
    factors EV L (C = L L') and title factors EV L times that scale.
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
    penalty = penalties(counts, config.l2, config.dropout)
    residual = np.maximum(counts - (right ** 2) @ singular ** 2, 0.0)
    scaled = right / (residual + penalty)[:, None]  # E V
    core = np.linalg.inv(np.diag(singular ** -2.0) + right.T @ scaled)
    lower = np.linalg.cholesky((core + core.T) / 2)
    history = scaled @ lower
    if config.dropout == 0:
        scale = 1.0 / (1.0 / (residual + penalty) - np.einsum("ij,ij->i", history, history))
    else:
        scale = penalty
    return _FactoredWeights(history, history * scale[:, None])


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
