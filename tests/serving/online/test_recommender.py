"""Profile -> one model call -> ranked items, with a stand-in model server (no world): a list
that keeps the ranker's order makes items of only the candidates it can show, and a
recommender that refuses the one call gives way to retrieval and the ranker."""

import numpy as np

from recs.contract.signatures import (PROBABILITY, QUERY_EMBEDDING_OUTPUT, RECOMMEND,
                                      RETRIEVAL_SCORE, SCORES, TITLE_IDS)
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


class _ChangedRecommender(_Server):
    """A pushed recommender whose `recommend` signature takes other inputs (INVALID_ARGUMENT),
    beside a retrieval model and a ranker that answer."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def predict_versioned(self, model, inputs, signature="", version=None, timeout=None,
                          label=""):
        from serving.clients.base import ModelServerError

        self.calls.append(model)
        if model == "recommender":
            raise ModelServerError("INVALID_ARGUMENT", "input 'excluded_title_ids' unknown")
        if model == "retrieval":
            return {TITLE_IDS: np.array([[b"t1", b"t2"]], dtype=object),
                    SCORES: np.array([[2.0, 1.0]], np.float32),
                    QUERY_EMBEDDING_OUTPUT: np.zeros((1, 4), np.float32)}, 3
        return {PROBABILITY: np.array([0.2, 0.7], np.float32)}, 5


def test_a_recommender_whose_signatures_differ_gives_way_to_the_two_calls(caplog):
    import logging

    server = _ChangedRecommender()
    store = _recommender().store
    recommender = Recommender(server, store, CATALOGUE)
    with caplog.at_level(logging.WARNING, logger="recs.service"):
        first = recommender.ranked("u1")
        second = recommender.ranked("u1")
    # Ranked by the ranker's probability: t2 (0.7) before t1 (0.2).
    assert [item.title_id for item in first.items] == ["t2", "t1"] == [
        item.title_id for item in second.items]
    assert first.versions == {"retrieval": 3, "ranker": 5}
    # Asked once, then left alone for a while; said once.
    assert server.calls == ["recommender", "retrieval", "ranker", "retrieval", "ranker"]
    assert list(recommender.one_call_refusals.values()) == ["input 'excluded_title_ids' unknown"]
    assert len([r for r in caplog.records if "refused the one call" in r.getMessage()]) == 1
