"""Profile -> one model call -> ranked items, with a stand-in model server (no world): a list
that keeps the ranker's order makes items of only the candidates it can show."""

import numpy as np

from recs.contract.signatures import (PROBABILITY, QUERY_EMBEDDING_OUTPUT, RECOMMEND,
                                      RETRIEVAL_SCORE, TITLE_IDS)
from serving.online.recommender import Recommender
from serving.online.store import SqliteProfileStore

CATALOGUE = {f"t{i}": {"title_id": f"t{i}", "genre": "drama" if i % 2 else "comedy",
                       "release_year": 2020, "popularity": float(i), "description": ""}
             for i in range(6)}


class _Server:
    """Answers `recommend` with t5..t0 ranked by probability, and `gone` (a title the
    catalogue lacks) in third place."""

    def predict_versioned(self, model, inputs, signature="", version=None, timeout=None,
                          label=""):
        assert signature == RECOMMEND
        titles = [b"t5", b"t4", b"gone", b"t3", b"t2", b"t1", b"t0"]
        return {TITLE_IDS: np.array(titles, dtype=object),
                PROBABILITY: np.linspace(0.9, 0.3, len(titles)).astype(np.float32),
                RETRIEVAL_SCORE: np.arange(len(titles), 0, -1).astype(np.float32),
                QUERY_EMBEDDING_OUTPUT: np.zeros((1, 4), np.float32)}, 7


def _recommender() -> Recommender:
    store = SqliteProfileStore(":memory:")
    store.upsert_profiles([{"user_id": "u1", "age": 30, "country": "de",
                            "subscription_tier": "basic", "preferred_genres": "drama"}])
    return Recommender(_Server(), store, CATALOGUE)


def test_a_limit_keeps_the_best_candidates_and_counts_every_ranked_one():
    recommender = _recommender()
    every = recommender.ranked("u1")
    best = recommender.ranked("u1", limit=3)
    # The catalogue lacks "gone": it is left out, and the limit counts shown titles.
    assert [item.title_id for item in every.items] == ["t5", "t4", "t3", "t2", "t1", "t0"]
    assert best.items == every.items[:3]
    assert best.candidates == every.candidates == 7
    assert best.items[0].genre == "drama" and best.items[1].genre == "comedy"
    assert best.items[0].score == float(np.float32(0.9)) and best.versions == {"recommender": 7}
    assert [item.title_id for item in recommender.recommend("u1", k=2)] == ["t5", "t4"]
