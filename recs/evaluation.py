"""Exact (brute-force) offline metrics of retrieval over a whole catalogue.

Two protocols, as published benchmarks define them:

* pair level (the TFRS tutorials): every test (query, title) pair counts once; Recall@K is the
  share of pairs whose title is in the query's top K ("top-K categorical accuracy"), NDCG@K
  gives a hit at rank r (0-based) 1 / log2(r + 2).
* user level (RecBole): each user has a set of test titles; Recall@K = hits / |test titles|,
  NDCG@K = DCG / ideal DCG, Hit@K = any hit; averaged over users.

Items already seen in training can be masked (RecBole always does; the TFRS protocol does not).

Also the one exact top-k of the project (`top_k`, `exact_top_k`: training's Recall@K, the index
tuner's oracle, the benchmarks) and the recall of an approximate index against it.
"""

from typing import Callable, Sequence

import numpy as np

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps `[batch]` query row indices to `[batch, num_candidates]` scores."""


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores, best first (ties by column).

    Args:
        scores: `[rows, columns]`.
        k: kept per row (at most the number of columns).

    Returns:
        `[rows, min(k, columns)]` int64 indices.
    """
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def exact_top_k(candidates: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256
                ) -> np.ndarray:
    """The brute-force oracle: row indices of the k best dot products, best first.

    Args:
        candidates: `[num_candidates, dim]`.
        queries: `[num_queries, dim]`.
        k: neighbours per query (at most num_candidates).
        chunk: queries scored at once.

    Returns:
        `[num_queries, k]` int64 indices into `candidates`.
    """
    return np.concatenate([top_k(queries[start:start + chunk] @ candidates.T, k)
                           for start in range(0, len(queries), chunk)])


def recall_against_exact(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / k.

    Args:
        approximate: `[num_queries, k]` ids from the index under test.
        exact: `[num_queries, k]` ids from brute force.

    Raises:
        ValueError: the two differ in shape.
    """
    if approximate.shape != exact.shape:
        raise ValueError(f"approximate and exact ids must have the same shape; received "
                         f"{approximate.shape} and {exact.shape}.")
    hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approximate, exact)]
    return float(np.sum(hits) / exact.size)


def _ranked(score: ScoreFn, rows: np.ndarray, k: int,
            exclude: Sequence[np.ndarray] | None) -> np.ndarray:
    scores = np.array(score(rows), dtype=np.float32, copy=True)
    if exclude is not None:
        for line, row in enumerate(rows):
            scores[line, exclude[row]] = -np.inf
    return top_k(scores, k)


def pair_metrics(score: ScoreFn, targets: np.ndarray, ks: Sequence[int],
                 exclude: Sequence[np.ndarray] | None = None, batch: int = 512
                 ) -> dict[str, float]:
    """Recall@K and NDCG@K over test pairs, each pair's target ranked against all candidates.

    Args:
        score: scores of query rows against every candidate.
        targets: `[num_pairs]` candidate index of each pair's true title.
        ks: cut-offs.
        exclude: per pair, candidate indices to mask (seen in training); the pair's own
            target is never masked.
        batch: pairs scored at once.

    Returns:
        `recall_at_{k}` and `ndcg_at_{k}` for each k.
    """
    k_max = max(ks)
    ranks = np.full(len(targets), np.iinfo(np.int64).max)
    for start in range(0, len(targets), batch):
        rows = np.arange(start, min(start + batch, len(targets)))
        masked = None
        if exclude is not None:
            masked = {row: np.setdiff1d(exclude[row], [targets[row]]) for row in rows}
        top = _ranked(score, rows, k_max, masked)
        hit_rank = np.argmax(top == targets[rows, None], axis=1)
        found = (top == targets[rows, None]).any(axis=1)
        ranks[rows[found]] = hit_rank[found]
    metrics = {}
    for k in ks:
        hit = ranks < k
        metrics[f"recall_at_{k}"] = float(hit.mean())
        gains = np.where(hit, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
        metrics[f"ndcg_at_{k}"] = float(gains.mean())
    return metrics


PAIR_METRICS = ("recall", "ndcg")
"""What `blended_metric` can measure at a cut-off K: pair-level Recall@K or NDCG@K."""


def parse_pair_metric(name: str) -> tuple[str, int]:
    """Splits a pair-level metric's name, `recall_at_100` or `ndcg_at_10`, into its kind and K.

    Raises:
        ValueError: the name is not `{recall|ndcg}_at_{K}` with K > 0.

    Example:
        >>> parse_pair_metric("ndcg_at_10")
        ('ndcg', 10)
    """
    kind, _, k = name.partition("_at_")
    if kind not in PAIR_METRICS or not k.isdigit() or int(k) <= 0:
        raise ValueError(f"a pair metric is named recall_at_K or ndcg_at_K with K > 0; "
                         f"received {name!r}.")
    return kind, int(k)


def blended_metric(base: ScoreFn, extra: ScoreFn, weights: Sequence[float],
                   targets: np.ndarray, k: int, kind: str = "recall",
                   exclude: Sequence[np.ndarray] | None = None, batch: int = 512
                   ) -> dict[float, float]:
    """Pair-level Recall@k or NDCG@k of `base + w * extra` for every blend weight w at once.

    Each batch's two score matrices are computed once and shared by all weights (choosing a
    blend weight costs one scoring pass, not one per weight). A pair's rank is the number of
    candidates scoring strictly above its target, which is `pair_metrics`' rank except in
    exact ties: a hit when it is below k, worth 1 / log2(rank + 2) to NDCG.

    Args:
        base: scores of query rows against every candidate.
        extra: the scores blended in, same shape.
        weights: blend weights to try.
        targets: `[num_pairs]` candidate index of each pair's true title.
        k: cut-off.
        kind: one of `PAIR_METRICS`.
        exclude: per pair, candidate indices left out of its ranking (already played); the
            pair's own target never is.
        batch: pairs scored at once.

    Returns:
        weight -> the metric (0.0 for every weight when there are no pairs).

    Raises:
        ValueError: `kind` is not one of `PAIR_METRICS`.

    Example:
        >>> one = lambda rows: np.array([[1.0, 0.0]])[np.zeros(len(rows), int)]
        >>> two = lambda rows: np.array([[0.0, 2.0]])[np.zeros(len(rows), int)]
        >>> blended_metric(one, two, [0.0, 1.0], np.array([1]), k=1)
        {0.0: 0.0, 1.0: 1.0}
    """
    if kind not in PAIR_METRICS:
        raise ValueError(f"kind must be one of {PAIR_METRICS}; received {kind!r}.")
    gains = (np.ones(k) if kind == "recall" else 1.0 / np.log2(np.arange(k) + 2.0))
    totals = dict.fromkeys(weights, 0.0)
    for start in range(0, len(targets), batch):
        rows = np.arange(start, min(start + batch, len(targets)))
        first = np.array(base(rows), np.float32, copy=True)
        second = np.asarray(extra(rows), np.float32)
        if exclude is not None:
            # -inf in the base masks every blend (the extra scores are finite).
            for line, row in enumerate(rows):
                first[line, np.setdiff1d(exclude[row], [targets[row]])] = -np.inf
        for weight in weights:
            scores = first + np.float32(weight) * second
            target = scores[np.arange(len(rows)), targets[rows]]
            ranks = (scores > target[:, None]).sum(axis=1)
            totals[weight] += float(gains[ranks[ranks < k]].sum())
    return {weight: totals[weight] / len(targets) if len(targets) else 0.0
            for weight in weights}


def user_metrics(score: ScoreFn, test_items: Sequence[np.ndarray], ks: Sequence[int],
                 exclude: Sequence[np.ndarray] | None = None, batch: int = 256
                 ) -> dict[str, float]:
    """RecBole's full-ranking Recall@K, NDCG@K and Hit@K, averaged over users with test items.

    Args:
        score: scores of user rows against every candidate.
        test_items: per user, the candidate indices of their test titles.
        ks: cut-offs.
        exclude: per user, candidate indices to mask (their training titles).
        batch: users scored at once.
    """
    users = np.array([u for u, items in enumerate(test_items) if len(items)])
    k_max = max(ks)
    sums = {f"{name}_at_{k}": 0.0 for k in ks for name in ("recall", "ndcg", "hit")}
    discounts = 1.0 / np.log2(np.arange(k_max) + 2.0)
    for start in range(0, len(users), batch):
        rows = users[start:start + batch]
        top = _ranked(score, rows, k_max, exclude)
        for line, user in enumerate(rows):
            relevant = np.isin(top[line], test_items[user])
            count = len(test_items[user])
            for k in ks:
                hits = relevant[:k]
                ideal = discounts[:min(count, k)].sum()
                sums[f"recall_at_{k}"] += hits.sum() / count
                # Fewer candidates than k: the ranked list, and so `hits`, is shorter.
                sums[f"ndcg_at_{k}"] += (discounts[:len(hits)][hits]).sum() / ideal
                sums[f"hit_at_{k}"] += float(hits.any())
    return {name: value / len(users) for name, value in sums.items()}


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
                ) -> dict[str, object]:
    """Expected calibration error and the reliability table over equal-width bins.

    ECE = sum over bins of (bin share of examples) * |mean predicted - observed rate|.

    Args:
        probabilities: `[n]` predicted P(engaged).
        labels: `[n]` 0/1 outcomes.
        bins: number of equal-width probability bins on [0, 1].

    Returns:
        {"ece": float, "bins": [{"lower", "upper", "count", "mean_predicted", "observed"}]}.

    Raises:
        ValueError: the arrays differ in length or are empty.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if len(probabilities) != len(labels) or not len(labels):
        raise ValueError(f"probabilities and labels must be non-empty and of equal length; "
                         f"received {len(probabilities)} and {len(labels)}.")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        predicted = float(probabilities[members].mean()) if count else 0.0
        observed = float(labels[members].mean()) if count else 0.0
        ece += count / len(labels) * abs(predicted - observed)
        table.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                      "mean_predicted": predicted, "observed": observed})
    return {"ece": ece, "bins": table}
