"""MovieLens 100K under the TFRS tutorials' protocol (BASELINES.md section 1a), and the ranker.

Protocol: every rating is a positive watch; random 80/20 split (seed 42); items are movie
titles (1,664); candidates are all titles; metric is the share of the 20,000 test pairs whose
title ranks in the exact top 100 (titles seen in training are not excluded). The published best
under it is 0.29 (deep retrieval tutorial, 2-layer towers, 300 epochs); the goal is >= 0.33.
Same-run peers: most popular titles, the ids-only two-tower of the tutorials, and EASE
(`recs.peers`, the peers `recs evaluate` runs).

Also reported: Recall/NDCG at 10, 50, 100 with and without excluding seen titles; the deep
ranker's AUC, log loss and expected calibration error on the test split (label: rating >= 4),
with a reliability plot, beside a gradient-boosted tree ranker (TF-DF) and both blends of the
two (averaged, stacked) with their training and serving costs; training throughput and peak
memory.

    python benchmarks/quality_ml100k.py
    python benchmarks/quality_ml100k.py --without history --skip-rankers \
        --name quality_ml100k_without_history      # an ablation
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import movielens_common as M  # noqa: E402
from common import RESULTS, peak_rss_mb, write_result  # noqa: E402
from recs.config import RetrievalConfig, TrainingConfig  # noqa: E402
from recs import features as F  # noqa: E402
from recs.data.movielens import catalogue_records, interaction_records, read_ml100k  # noqa: E402
from recs.evaluation import pair_metrics  # noqa: E402
from recs.peers import (ease_scores, fit_ease, popular_scores, popularity,  # noqa: E402
                        user_histories)
from recs.plots import plot_training_curves  # noqa: E402
from recs.protocols import TEST, TRAIN, split_random  # noqa: E402
from recs.training import train_retrieval  # noqa: E402


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                    "movielens-100k")
KS = (10, 50, 100)
PUBLISHED = {"tfrs_deep_retrieval_2_layers_300_epochs": 0.29,
             "tfrs_deep_retrieval_1_layer_300_epochs": 0.27,
             "tfrs_context_features_baseline": 0.2}
GOAL = 0.33
ABLATABLE = (F.HISTORY, F.DESCRIPTION, F.PREFERRED_GENRES, F.POPULARITY, F.RELEASE_YEAR)


def blank(tables: list[dict[str, np.ndarray]], keys: list[str]) -> None:
    """Ablation: the transformed `keys` carry nothing (bags all padding, z-scores at the
    mean), in training and at evaluation alike."""
    for key in keys:
        for table in tables:
            if F.transformed_name(key) in table:
                table[F.transformed_name(key)] = np.zeros_like(table[F.transformed_name(key)])


def default_config(train: dict[str, np.ndarray], test: dict[str, np.ndarray],
                   candidates: dict[str, np.ndarray], sizes, seed: int = 0
                   ) -> tuple[dict, object]:
    """The library's default `RetrievalConfig()`, no flags, through its Trainer path
    (`recs.training.train_retrieval`, as the pipeline's Trainer runs it): 10% of the
    training pairs (seeded; the protocol has no validation split) are its evaluation split,
    where it picks the item-to-item weight and the cold-start prior; every rating is a
    positive, as in the test pairs. Scored as exported, query tower against candidate tower.
    Returns (choice, score fn)."""
    config = RetrievalConfig()
    train = {**train, M.LABEL: np.ones_like(train[M.LABEL])}
    held = np.random.default_rng(seed).random(len(train[M.LABEL])) < 0.1
    start = time.perf_counter()
    result = train_retrieval(
        M.dataset(M.select(train, ~held), config.training.batch_size, True,
                  config.training.seed),
        M.dataset(M.select(train, held), 4096, False), sizes, config)
    seconds = time.perf_counter() - start
    query = M.embed(result.model.query_tower, test)
    candidate = M.embed(result.model.candidate_tower, candidates)
    chosen = {key: value for key, value in result.metrics.items()
              if key.startswith(("item_item_weight", "cold_start_weight", "recall_at",
                                  "ndcg_at"))}
    choice = {"trainer_metrics": chosen, "train_seconds": seconds, "config": config.to_dict()}
    return choice, lambda r: query[r] @ candidate.T


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    M.add_model_arguments(parser, epochs=10, batch_size=1024, embedding_dim=32, layers="64,32")
    parser.add_argument("--name", default="quality_ml100k")
    parser.add_argument("--without", default="",
                        help=f"comma-separated features to blank (an ablation), of {ABLATABLE}")
    parser.add_argument("--skip-rankers", action="store_true",
                        help="measure retrieval only")
    args = parser.parse_args(argv)
    without = [key for key in args.without.split(",") if key]
    unknown = sorted(set(without) - set(ABLATABLE))
    if unknown:
        parser.error(f"--without {unknown}: expected some of {ABLATABLE}")

    data = read_ml100k(args.data)
    part = split_random(data.num_ratings)  # seed 42: 80,000 training ratings, 20,000 test
    train_rows, test_rows = np.flatnonzero(part == TRAIN), np.flatnonzero(part == TEST)
    train_records = interaction_records(data, train_rows, reference=train_rows)
    test_records = interaction_records(data, test_rows, reference=train_rows)
    titles = catalogue_records(data, train_rows)
    sizes, train, (test, candidates), transform_s = M.transform(train_records,
                                                                [test_records, titles])
    print(f"tf.Transform: {transform_s:.0f} s; {sizes}", flush=True)
    blank([train, test, candidates], without)

    # Every title is a candidate, the ones never rated in training included; pairs and
    # candidates are matched by raw title, not by vocabulary id (unseen titles share the
    # out-of-vocabulary id).
    index_of = {row[F.TITLE_ID]: i for i, row in enumerate(titles)}
    targets = np.array([index_of[r[F.TITLE_ID]] for r in test_records])
    train_targets = np.array([index_of[r[F.TITLE_ID]] for r in train_records])
    seen_by_user: dict[str, list[int]] = {}
    for record, target in zip(train_records, train_targets):
        seen_by_user.setdefault(record[F.USER_ID], []).append(target)
    seen = [np.array(seen_by_user.get(r[F.USER_ID], []), dtype=np.int64) for r in test_records]
    print(f"{len(titles)} candidate titles, {len(targets)} test pairs", flush=True)

    def report(name: str, score) -> dict:
        metrics = pair_metrics(score, targets, KS)
        excluded = pair_metrics(score, targets, KS, exclude=seen)
        result = {**metrics, **{f"{k}_seen_excluded": v for k, v in excluded.items()}}
        print(f"  {name:22s} top-100 accuracy {metrics['recall_at_100']:.4f}  "
              f"R@10 {metrics['recall_at_10']:.4f}  NDCG@10 {metrics['ndcg_at_10']:.4f}  "
              f"(seen excluded: top-100 {excluded['recall_at_100']:.4f})", flush=True)
        return result

    # Peer 1: most popular titles in training.
    popular = report("most popular", popular_scores(popularity(train_targets, len(titles))))

    # Peer 2, the tutorials' ids-only two-tower (same epochs), and the project's model.
    fitted = M.two_tower_scores(train, test, candidates, sizes, args)
    ids_only = report("ids-only two-tower", fitted["ids_only"])
    ours = report("recs two-tower", fitted["ours"])
    config, rate, ids_rate = fitted["config"], fitted["ours_rate"], fitted["ids_only_rate"]
    plot_training_curves(fitted["history"], "ML-100K two-tower (TFRS protocol)",
                         str(RESULTS / f"{args.name}_retrieval_curves.png"))

    # Peer 3: EASE on each pair's user's training titles, its penalty picked on 10% of the
    # training pairs held out of the fit (recs.peers.EASE_L2); and the default configuration.
    train_users = np.array([r[F.USER_ID] for r in train_records], dtype=object)
    pair_users = np.array([r[F.USER_ID] for r in test_records], dtype=object)
    fitted_ease = fit_ease(train_users, train_targets, len(titles))
    ease_score = ease_scores(fitted_ease.weights,
                             user_histories(pair_users, train_users, train_targets, len(titles)))
    ease = report(f"EASE (l2 {fitted_ease.l2:g})", ease_score) | {
        "l2": fitted_ease.l2, "held_out_top_100_by_l2": fitted_ease.held_out_recall_by_l2}
    default = None
    if not without:
        choice, default_score = default_config(train, test, candidates, sizes)
        default = report("default config", default_score) | choice

    # The rankers: label rating >= 4; 10% of training held out for early stopping and
    # for fitting the stacked blend.
    ranked = {} if args.skip_rankers else M.rankers(
        train, test, sizes, args.name, "ML-100K",
        TrainingConfig(batch_size=512, epochs=20, learning_rate=0.001), towers=fitted["towers"])

    figures = {"default_config": default,
               "default_config_at_or_above_same_run_ease": (
                   None if default is None
                   else default["recall_at_100"] >= ease["recall_at_100"]),
               "recs_two_tower": ours, "top_100_accuracy": ours["recall_at_100"],
               "goal": GOAL, "goal_met": ours["recall_at_100"] >= GOAL,
               "without": without, "ranker": ranked.get("deep"), "ranker_ensemble": ranked,
               "training_examples_per_second": rate, "transform_seconds": transform_s,
               "peak_rss_mb": peak_rss_mb(), "config": config.to_dict()}
    peers = {"most_popular": popular, "ids_only_two_tower": ids_only, "ease": ease,
             "ids_only_examples_per_second": ids_rate, "published": PUBLISHED}
    best_published = max(PUBLISHED.values())
    ratios = {"ours_over_best_published": ours["recall_at_100"] / best_published,
              "ours_over_most_popular": ours["recall_at_100"] / popular["recall_at_100"],
              "ours_over_ids_only": ours["recall_at_100"] / ids_only["recall_at_100"],
              "ours_over_same_run_ease": ours["recall_at_100"] / ease["recall_at_100"]}
    if default is not None:
        ratios["default_config_over_same_run_ease"] = (default["recall_at_100"]
                                                       / ease["recall_at_100"])
    path = write_result(args.name, {**vars(args), "split": "random 80/20, seed 42",
                                    "candidates": len(titles),
                                    "test_pairs": int(len(targets))},
                        figures, peers, ratios)
    print(f"\n{'':24s}top-100 accuracy")
    print(f"{'published best (TFRS)':24s}{best_published:.3f}")
    print(f"{'goal':24s}{GOAL:.3f}")
    print(f"{'most popular':24s}{popular['recall_at_100']:.4f}")
    print(f"{'ids-only two-tower':24s}{ids_only['recall_at_100']:.4f}")
    print(f"{'EASE, same run':24s}{ease['recall_at_100']:.4f}")
    print(f"{'recs two-tower':24s}{ours['recall_at_100']:.4f}")
    if default is not None:
        print(f"{'default config':24s}{default['recall_at_100']:.4f}")
    if ranked:
        print(f"ranker AUC {ranked['deep']['auc']:.4f} alone, "
              f"{ranked['deep_towers']['auc']:.4f} reading the towers")
    print(f"training {rate:.0f} examples/s; peak RSS {peak_rss_mb():.0f} MB")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
