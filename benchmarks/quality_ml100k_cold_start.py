"""Cold start on MovieLens 100K: users and titles held out of training entirely.

Split (seeded): 10% of users and 10% of titles are held out; training keeps the ratings of the
other users on the other titles. Vocabularies, popularity and preferred genres come from
training only, so held-out ids are out of vocabulary, held-out users have no history and no
preferred genres, held-out titles have zero popularity.

    new users   their ratings of known titles; candidates: every known title; the query tower
                sees only the profile (age group, region, occupation) and context
    new titles  known users' ratings of held-out titles; candidates: the held-out titles only
                (can the model tell which new title a user will watch?); the candidate tower
                sees only metadata and the description (title words, genres)

Metric: Recall@K of each (user, title) pair against all candidates (exact scoring). Peers from
the same run: random, most popular overall, most popular within the user's segment (age group x
occupation), and for new titles the genres a user watched most in training.

    python benchmarks/quality_ml100k_cold_start.py
    python benchmarks/quality_ml100k_cold_start.py --cold-start-dropout 0.2 \
        --name quality_ml100k_cold_start_dropout
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import movielens_common as M  # noqa: E402
from common import peak_rss_mb, write_result  # noqa: E402
from recs import features as F  # noqa: E402
from recs.data.movielens import catalogue_records, interaction_records, read_ml100k  # noqa: E402
from recs.evaluation import pair_metrics  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                    "movielens-100k")
KS = (10, 50, 100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--held-out-share", type=float, default=0.1)
    parser.add_argument("--name", default="quality_ml100k_cold_start")
    M.add_model_arguments(parser, epochs=10, batch_size=1024, embedding_dim=32, layers="64,32")
    args = parser.parse_args(argv)

    data = read_ml100k(args.data)
    rng = np.random.default_rng(7)
    users, titles = np.unique(data.users), np.unique(data.titles)
    new_users = set(rng.choice(users, int(args.held_out_share * len(users)), replace=False))
    new_titles = set(rng.choice(titles, int(args.held_out_share * len(titles)), replace=False))
    is_new_user = np.array([u in new_users for u in data.users])
    is_new_title = np.array([t in new_titles for t in data.titles])
    train_rows = np.flatnonzero(~is_new_user & ~is_new_title)
    user_rows = np.flatnonzero(is_new_user & ~is_new_title)
    title_rows = np.flatnonzero(~is_new_user & is_new_title)
    print(f"train {len(train_rows)}, new-user pairs {len(user_rows)}, new-title pairs "
          f"{len(title_rows)}", flush=True)

    train_records = interaction_records(data, train_rows, reference=train_rows)
    user_records = interaction_records(data, user_rows, reference=train_rows)
    title_records = interaction_records(data, title_rows, reference=train_rows)
    catalogue = catalogue_records(data, train_rows)
    sizes, train, (user_queries, title_queries, candidates), transform_s = M.transform(
        train_records, [user_records, title_records, catalogue])
    print(f"tf.Transform: {transform_s:.0f} s", flush=True)

    config = M.retrieval_config(args)
    model, _, rate = M.fit_two_tower(train, sizes, config)
    candidate_vectors = M.embed(model.candidate_tower, candidates)
    index_of = {row[F.TITLE_ID]: i for i, row in enumerate(catalogue)}
    known = np.array([row[F.TITLE_ID] not in new_titles for row in catalogue])
    fresh = ~known
    train_titles = np.array([index_of[r[F.TITLE_ID]] for r in train_records])
    counts = np.bincount(train_titles, minlength=len(catalogue)).astype(np.float32)

    def segment(record: dict) -> tuple:
        return record[F.AGE], record[F.SUBSCRIPTION_TIER]

    by_segment: dict[tuple, np.ndarray] = {}
    for record, title in zip(train_records, train_titles):
        by_segment.setdefault(segment(record), np.zeros(len(catalogue), np.float32))[title] += 1

    def evaluate(records, queries, allowed: np.ndarray, peers: dict) -> dict:
        """Recall@K with candidates restricted to `allowed` (others scored -inf)."""
        columns = np.flatnonzero(allowed)
        position = {c: i for i, c in enumerate(columns)}
        targets = np.array([position[index_of[r[F.TITLE_ID]]] for r in records])
        query_vectors = M.embed(model.query_tower, queries)
        scorers = {"recs two-tower": lambda rows: query_vectors[rows]
                   @ candidate_vectors[columns].T, **peers}
        results = {}
        for name, score in scorers.items():
            results[name] = pair_metrics(score, targets, KS)
            print(f"  {name:28s} R@10 {results[name]['recall_at_10']:.4f}  "
                  f"R@50 {results[name]['recall_at_50']:.4f}  "
                  f"R@100 {results[name]['recall_at_100']:.4f}", flush=True)
        results["candidates"] = int(len(columns))
        results["pairs"] = int(len(targets))
        return results

    seed = np.random.default_rng(0)
    print("new users (profile and context only):", flush=True)
    user_segments = [by_segment.get(segment(r), counts) for r in user_records]
    columns = np.flatnonzero(known)
    new_user = evaluate(user_records, user_queries, known, {
        "random": lambda rows: seed.random((len(rows), len(columns))),
        "most popular": lambda rows: np.tile(counts[columns], (len(rows), 1)),
        "most popular in segment": lambda rows: np.stack(
            [user_segments[r][columns] + 1e-3 * counts[columns] for r in rows]),
    })

    print("new titles (metadata and description only):", flush=True)
    fresh_columns = np.flatnonzero(fresh)
    genres_of = [set(data.catalogue[catalogue[c][F.TITLE_ID]]["genres"]) for c in fresh_columns]
    preferred = [set(r[F.PREFERRED_GENRES].split("|")) - {""} for r in title_records]
    new_title = evaluate(title_records, title_queries, fresh, {
        "random": lambda rows: seed.random((len(rows), len(fresh_columns))),
        "user's top genres": lambda rows: np.array(
            [[len(preferred[r] & g) + 1e-3 * seed.random() for g in genres_of] for r in rows]),
    })

    figures = {"new_users": new_user, "new_titles": new_title,
               "training_examples_per_second": rate, "transform_seconds": transform_s,
               "peak_rss_mb": peak_rss_mb(), "config": config.to_dict()}
    ratios = {
        "new_users_r100_over_most_popular": new_user["recs two-tower"]["recall_at_100"]
        / new_user["most popular"]["recall_at_100"],
        "new_users_r100_over_segment_popular": new_user["recs two-tower"]["recall_at_100"]
        / new_user["most popular in segment"]["recall_at_100"],
        "new_titles_r10_over_random": new_title["recs two-tower"]["recall_at_10"]
        / new_title["random"]["recall_at_10"],
        "new_titles_r10_over_top_genres": new_title["recs two-tower"]["recall_at_10"]
        / new_title["user's top genres"]["recall_at_10"],
    }
    path = write_result(args.name,
                        {**vars(args), "split": "10% users and 10% titles held out, seed 7"},
                        figures, {"random/popularity peers": "inside figures, same run"},
                        ratios)
    print(ratios)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
