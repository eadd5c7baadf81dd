"""Same-run reference recommenders for offline evaluation: most popular, and EASE.

A model's figures mean little alone; published benchmarks put them next to the most popular
titles and next to EASE (Steck, 2019), the closed-form item-to-item model that most trained
models on MovieLens do not beat. Both are fitted here on the same training pairs as the model
under test and scored through the same metrics (`recs.evaluation`), as `ScoreFn`s over query
rows. EASE's weights are `recs.models.item_item`'s closed form (one implementation), its L2
penalty picked on training pairs held out of the fit.

Pure NumPy and SciPy: pairs are (user id, item index) arrays, whatever the ids are.

Example:
    counts = popularity(train_items, num_items)
    ease = fit_ease(train_users, train_items, num_items)
    histories = user_histories(test_users, train_users, train_items, num_items)
    user_metrics(ease_scores(ease.weights, histories), test_items, (10,), exclude=seen)
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse

from recs.config import require
from recs.evaluation import ScoreFn, pair_metrics
from recs.models.item_item import cooccurrence, ease_weights

EASE_L2 = (30.0, 100.0, 300.0, 1000.0)
"""The penalties `fit_ease` chooses among (1000 is the published best on MovieLens; sparser
data wants less)."""


def popularity(items: np.ndarray, num_items: int) -> np.ndarray:
    """Training interactions per item.

    Args:
        items: `[n]` item indices in [0, num_items) of the training pairs.
        num_items: the catalogue's size.

    Returns:
        `[num_items]` float32 counts.
    """
    return np.bincount(np.asarray(items, dtype=np.int64), minlength=num_items
                       ).astype(np.float32)


def popular_scores(counts: np.ndarray) -> ScoreFn:
    """Every query gets the same scores: the items' training counts (`popularity`)."""
    return lambda rows: np.broadcast_to(counts, (len(rows), len(counts)))


def user_histories(query_users: np.ndarray, users: np.ndarray, items: np.ndarray,
                   num_items: int) -> scipy.sparse.csr_matrix:
    """Each query's user's items among the (user, item) pairs, as a binary matrix.

    Args:
        query_users: `[queries]` user ids, one per query row (a user may repeat; a user
            without pairs gets an empty row).
        users: `[n]` user ids of the known pairs.
        items: `[n]` item indices in [0, num_items).
        num_items: the catalogue's size.

    Returns:
        `[queries, num_items]` float32 CSR; repeated pairs count once.
    """
    users, query_users = np.asarray(users), np.asarray(query_users)
    ids, rows = np.unique(np.concatenate([users, query_users]), return_inverse=True)
    known = scipy.sparse.csr_matrix(
        (np.ones(len(users), np.float32), (rows[:len(users)], np.asarray(items, np.int64))),
        shape=(len(ids), num_items))
    known.sum_duplicates()
    known.data[:] = 1.0
    return known[rows[len(users):]]


def ease_scores(weights: np.ndarray, histories: scipy.sparse.csr_matrix) -> ScoreFn:
    """Scores of query rows: each row's history times EASE's weights.

    Args:
        weights: `[items, items]` (`fit_ease`).
        histories: `[queries, items]` (`user_histories`).
    """
    return lambda rows: np.asarray(histories[rows] @ weights)


@dataclasses.dataclass(frozen=True)
class EaseFit:
    """EASE's weights fitted on every training pair, and how the penalty was chosen.

    Attributes:
        weights: `[items, items]` float32; row i, column j is what having i adds to j.
        l2: the penalty of `weights`.
        held_out_recall_by_l2: each candidate penalty's Recall@`k` on the held-out training
            pairs (empty when only one penalty was offered).
        k: the cut-off of that recall.
    """

    weights: np.ndarray
    l2: float
    held_out_recall_by_l2: dict[float, float]
    k: int


def fit_ease(users: np.ndarray, items: np.ndarray, num_items: int,
             l2s: Sequence[float] = EASE_L2, held_out_share: float = 0.1, k: int = 100,
             seed: int = 0) -> EaseFit:
    """Fits EASE, its penalty chosen on a seeded share of the training pairs.

    Each penalty of `l2s` is fitted on the pairs not held out and scored by pair-level
    Recall@k on the held-out ones (each held-out pair's user's other pairs as its history,
    every item a candidate); the best (the first, on a tie) is refitted on every pair. When
    the draw holds out no pair (or every pair), the first penalty is fitted directly.

    Args:
        users: `[n]` user ids of the training pairs.
        items: `[n]` item indices in [0, num_items).
        num_items: the catalogue's size.
        l2s: candidate penalties (> 0); with one, it is fitted directly.
        held_out_share: share of the pairs held out to choose the penalty, in (0, 1).
        k: the cut-off of the held-out recall.
        seed: the held-out draw's seed.

    Returns:
        The weights and the choice.

    Raises:
        ValueError: no pairs, no penalty, or `held_out_share` outside (0, 1).
    """
    users, items = np.asarray(users), np.asarray(items, dtype=np.int64)
    require(len(items) > 0, "items", "at least one training pair", len(items))
    require(len(l2s) > 0, "l2s", "at least one penalty such as (100.0, 1000.0)", l2s)
    require(0 < held_out_share < 1, "held_out_share", "in (0, 1)", held_out_share)
    by_l2: dict[float, float] = {}
    held = np.random.default_rng(seed).random(len(items)) < held_out_share
    # Too few pairs to hold any out (or to keep any in): nothing to choose on.
    if len(l2s) > 1 and 0 < held.sum() < len(items):
        histories = user_histories(users[held], users[~held], items[~held], num_items)
        for l2 in l2s:
            weights = ease_weights(cooccurrence(users[~held], items[~held], num_items),
                                   float(l2), overwrite=True)
            by_l2[float(l2)] = pair_metrics(ease_scores(weights, histories), items[held],
                                            (k,))[f"recall_at_{k}"]
    best = max(by_l2, key=by_l2.get) if by_l2 else float(l2s[0])
    weights = ease_weights(cooccurrence(users, items, num_items), best, overwrite=True)
    return EaseFit(weights=weights, l2=best, held_out_recall_by_l2=by_l2, k=k)
