"""How the item-to-item fit (`recs.models.item_item`) scales with the catalogue, and what each
fit scores on MovieLens 1M.

Two parts, every fit in its own fresh process so that its peak resident memory is its own:

- Scale: generated interactions at 3k, 20k and 100k titles (users with a few latent tastes,
  titles with Zipf popularity, so co-watching has structure), fitted by each method that the
  catalogue admits: "dense" (one titles x titles float32 matrix: 40 GB at 100k titles, so not
  run there) and "low_rank" (linear in titles); "auto" picks between them by size. At 3k
  titles the previous fit (float64 EASE at l2 1000 with three dense copies and a full SVD of
  B) runs too.
- Quality: ML-1M under RecBole's protocol (`quality_ml1m.py`: ratings >= 3, 10-core, per-user
  random 80/10/10, training and validation titles masked), the item-to-item scores alone
  (sum over the whole training history of the factors), NDCG@10 on the test split for each
  method at the library's rank (the default `ItemItemConfig`: DLAE reduced to rank 64 on the
  users' scores), next to the untruncated EASE, the library's weights untruncated, and the
  previous fit.

    python benchmarks/item_item_scale.py [--sizes 3000,20000,100000]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MemoryCapExceeded, run_in_process, timed, write_result  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                    "movielens-1m")
# Interactions per generated catalogue: about 50 plays per user.
INTERACTIONS = {3_000: 1_000_000, 20_000: 3_000_000, 100_000: 10_000_000}
PER_USER = 50
GOAL_SECONDS, GOAL_MB = 600.0, 4096.0
PREVIOUS_L2 = 1000.0  # the previous fit's EASE penalty (the published best on MovieLens)


def generated_interactions(num_titles: int, interactions: int, seed: int = 0
                           ) -> tuple[np.ndarray, np.ndarray]:
    """`(users, titles)` of `interactions` plays: each user has one of 50 tastes, each taste
    prefers its own slice of the catalogue; within it titles follow a Zipf popularity."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(interactions // PER_USER), PER_USER)
    tastes = rng.integers(0, 50, users.max() + 1)[users]
    popularity = 1.0 / np.arange(1, num_titles + 1) ** 0.8
    order = rng.permutation(num_titles)
    # 70% of plays inside the user's taste slice, 30% anywhere (by popularity).
    slice_size = num_titles // 50
    inside = rng.random(len(users)) < 0.7
    ranks = np.minimum(rng.zipf(1.3, len(users)) - 1, slice_size - 1)
    titles = np.where(inside, order[(tastes * slice_size + ranks) % num_titles],
                      rng.choice(num_titles, len(users), p=popularity / popularity.sum()))
    return users, titles


def previous_fit(users: np.ndarray, titles: np.ndarray, num_titles: int, l2: float,
                 rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The fit before this benchmark: float64 co-occurrence, EASE with three dense copies,
    a full SVD truncated to `rank`."""
    from recs.models.item_item import cooccurrence
    gram = cooccurrence(users, titles, num_titles).astype(np.float64)
    regularized = gram.copy()
    regularized[np.diag_indices_from(regularized)] += l2
    inverse = np.linalg.inv(regularized)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    left, singular, right = np.linalg.svd(weights)
    root = np.sqrt(singular[:rank])
    return left[:, :rank] * root, right[:rank].T * root


def _fit(method: str, users: np.ndarray, titles: np.ndarray, num_titles: int,
         out: str | None) -> None:
    """One fit, in its own process; the factors go to `out` (.npz) when given."""
    from recs.config import ItemItemConfig
    from recs.models.item_item import fit_item_item
    config = ItemItemConfig()
    if method == "previous":
        history, candidate = previous_fit(users, titles, num_titles, PREVIOUS_L2, config.rank)
    else:
        factors = fit_item_item(users, titles, num_titles,
                                ItemItemConfig(method=method))
        history, candidate = factors.history, factors.titles
    if out:
        np.savez(out, history=history, titles=candidate)


def _fit_generated(method: str, num_titles: int, interactions: int) -> None:
    users, titles = generated_interactions(num_titles, interactions)
    _fit(method, users, titles, num_titles, None)


def scale_runs(sizes: list[int], max_rss_mb: float) -> list[dict]:
    from recs.config import ItemItemConfig
    from recs.models.item_item import resolve_method
    runs = []
    for num_titles in sizes:
        interactions = INTERACTIONS.get(num_titles, num_titles * 100)
        auto = resolve_method(ItemItemConfig(), num_titles)
        methods = ["previous"] if num_titles <= 5_000 else []
        methods += ["dense"] if num_titles <= 20_000 else []
        methods += ["low_rank"]
        for method in methods:
            row = {"titles": num_titles, "interactions": interactions, "method": method,
                   "auto_picks": method == auto}
            try:
                seconds, peak = run_in_process(_fit_generated, method, num_titles,
                                               interactions, max_rss_mb=max_rss_mb)
                row |= {"seconds": seconds, "peak_rss_mb": peak}
            except MemoryCapExceeded as error:
                row |= {"seconds": None, "peak_rss_mb": None, "error": str(error)}
            print(row, flush=True)
            runs.append(row)
        if num_titles > 20_000:
            runs.append({"titles": num_titles, "interactions": interactions,
                         "method": "dense", "auto_picks": False, "seconds": None,
                         "peak_rss_mb": None,
                         "error": f"not run: one {num_titles} x {num_titles} float32 matrix "
                                  f"is {num_titles ** 2 * 4 / 2 ** 30:.0f} GiB"})
    return runs


def ml1m_quality(data_dir: str, scratch: str) -> dict[str, dict]:
    """NDCG@10 (and Recall@10) on ML-1M's test split of each fit's item-to-item scores."""
    from recs.config import ItemItemConfig
    from recs.data.movielens import read_ml1m
    from recs.evaluation import user_metrics
    from recs.models.item_item import cooccurrence, ease_weights, item_weights
    from recs.protocols import core_filter, split_per_user

    data = read_ml1m(data_dir)
    positive = np.flatnonzero(data.ratings >= 3)
    kept = positive[core_filter(data.users[positive], data.titles[positive])]
    part = split_per_user(data.users[kept])
    _, users = np.unique(data.users[kept], return_inverse=True)
    _, titles = np.unique(data.titles[kept], return_inverse=True)
    num_users, num_titles = users.max() + 1, titles.max() + 1
    train = part == 0
    history = np.zeros((num_users, num_titles), dtype=np.float32)
    history[users[train], titles[train]] = 1.0
    seen = [np.flatnonzero(row) for row in history]
    for user, title in zip(users[part == 1], titles[part == 1]):
        seen[user] = np.append(seen[user], title)
    test = [[] for _ in range(num_users)]
    for user, title in zip(users[part == 2], titles[part == 2]):
        test[user].append(title)
    test = [np.array(items) for items in test]

    def ndcg(scores: np.ndarray) -> dict:
        metrics = user_metrics(lambda rows: scores[rows], test, (10,), exclude=seen)
        return {"ndcg_at_10": metrics["ndcg_at_10"], "recall_at_10": metrics["recall_at_10"]}

    results = {}
    full = ease_weights(cooccurrence(users[train], titles[train], num_titles), PREVIOUS_L2)
    results["ease_untruncated"] = ndcg(history @ full)
    config = ItemItemConfig()
    full = item_weights(cooccurrence(users[train], titles[train], num_titles), config.l2,
                        config.dropout)
    results["library_weights_untruncated"] = ndcg(history @ full) | {
        "l2": config.l2, "dropout": config.dropout}
    del full
    for method in ("previous", "dense", "low_rank"):
        out = os.path.join(scratch, f"ml1m_{method}.npz")
        seconds, peak = run_in_process(_fit, method, users[train], titles[train],
                                       num_titles, out)
        factors = np.load(out)
        results[method] = ndcg((history @ factors["history"]) @ factors["titles"].T) | {
            "seconds": seconds, "peak_rss_mb": peak}
        print(method, results[method], flush=True)
    results["titles"], results["interactions"] = int(num_titles), int(train.sum())
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3000,20000,100000")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--max-rss-mb", type=float, default=16_000)
    parser.add_argument("--scratch", default="/tmp/item_item_scale")
    args = parser.parse_args(argv)
    os.makedirs(args.scratch, exist_ok=True)
    from recs.config import ItemItemConfig

    quality, quality_s = timed(lambda: ml1m_quality(args.data, args.scratch))
    runs = scale_runs([int(size) for size in args.sizes.split(",")], args.max_rss_mb)
    largest = max((run for run in runs if run["method"] == "low_rank"),
                  key=lambda run: run["titles"])
    config = ItemItemConfig()
    figures = {
        "runs": runs,
        "ml1m_ndcg_at_10": {method: quality[method]["ndcg_at_10"]
                            for method in ("previous", "dense", "low_rank")},
        "ml1m": quality,
        "goal": {"titles": largest["titles"], "max_seconds": GOAL_SECONDS,
                 "max_peak_rss_mb": GOAL_MB,
                 "met": bool(largest["seconds"] is not None
                             and largest["seconds"] <= GOAL_SECONDS
                             and largest["peak_rss_mb"] <= GOAL_MB
                             and min(quality["dense"]["ndcg_at_10"],
                                     quality["low_rank"]["ndcg_at_10"])
                             >= quality["previous"]["ndcg_at_10"])},
    }
    peers = {"ml1m_ease_untruncated": quality["ease_untruncated"],
             "ml1m_library_weights_untruncated": quality["library_weights_untruncated"],
             "ml1m_previous_fit": quality["previous"]}
    base = quality["previous"]["ndcg_at_10"]
    ratios = {f"ml1m_ndcg_{method}_over_previous": quality[method]["ndcg_at_10"] / base
              for method in ("dense", "low_rank")}
    at = {(run["titles"], run["method"]): run for run in runs}
    small = min(run["titles"] for run in runs)
    if (small, "previous") in at and (small, "dense") in at:
        ratios["seconds_dense_over_previous_at_smallest"] = (
            at[small, "dense"]["seconds"] / at[small, "previous"]["seconds"])
        ratios["peak_rss_dense_over_previous_at_smallest"] = (
            at[small, "dense"]["peak_rss_mb"] / at[small, "previous"]["peak_rss_mb"])
    parameters = {"sizes": args.sizes, "interactions": INTERACTIONS, "per_user": PER_USER,
                  "config": config.to_dict(), "ml1m_seconds": quality_s,
                  "note": "each fit in its own spawned process; peak_rss_mb is that process "
                          "(Python, NumPy and TensorFlow imports included)"}
    path = write_result("item_item_scale", parameters, figures, peers, ratios)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
