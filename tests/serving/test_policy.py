"""The online policy: arms set what a user gets, a failing model server falls back to
popularity with the reason, versions come from a status refreshed off the request path, and a
new retrieval version's catalogue replaces the served one."""

import json

from serving.client import ModelServerError
from serving.config import ServiceConfig
from serving.experiments import Arm, Experiment
from serving.policy import (MODEL_SERVER_ERROR, MODEL_SERVER_TIMEOUT, Ask, FixedStatus,
                            ModelStatus, OnlinePolicy)
from serving.recommender import Recommendation, Recommender, ServedList
from serving.store import SqliteProfileStore

TITLE = {"title_id": "t1", "genre": "drama", "release_year": 2020, "popularity": 2.0,
         "description": "a story"}


class _Versions:
    """A model server's status API whose newest versions a test sets; counts the calls."""

    def __init__(self, versions: list[int]) -> None:
        self.versions, self.calls = versions, 0

    def available_versions(self, model, timeout=None):
        self.calls += 1
        return list(self.versions)


class _Recommender(Recommender):
    """The real catalogue and fallback; model calls replaced by a settable outcome."""

    def __init__(self, client, failure: ModelServerError | None = None) -> None:
        super().__init__(client, SqliteProfileStore(":memory:"), {"t1": TITLE})
        self.failure, self.asked = failure, []

    def recommend_detailed(self, user_id, k=10, **options):
        self.asked.append(options)
        if self.failure is not None:
            raise self.failure
        item = Recommendation("t1", 0.9, 0.5, "drama")
        return ServedList([item], {self.retrieval_model: None, self.ranker_model: 3},
                          {"retrieval": 1.0}, 1)


def test_versions_are_read_from_a_status_refreshed_off_the_request_path(tmp_path):
    client = _Versions([4])
    recommender = _Recommender(client)
    policy = OnlinePolicy(recommender, ServiceConfig(status_refresh_s=3600,
                                                     served_log=str(tmp_path / "s.jsonl")))
    calls = client.calls  # The start-up refresh: one call per model (retrieval, ranker and
    # the one-call recommender).
    answers = [policy.answer(Ask("u1", 1, "tv", 20)) for _ in range(5)]
    policy.close()
    assert calls == 3 and client.calls == calls  # No request asked the model server.
    # The version the ranker call reported is kept; the status fills the one it left out.
    assert answers[0].served.versions == {"retrieval": 4, "ranker": 3}
    logged = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [entry["request_id"] for entry in logged] == [a.request_id for a in answers]


def test_a_failing_model_server_falls_back_to_popularity_and_says_why():
    for status, reason in (("DEADLINE_EXCEEDED", MODEL_SERVER_TIMEOUT),
                           ("UNAVAILABLE", MODEL_SERVER_ERROR), (503, MODEL_SERVER_ERROR)):
        recommender = _Recommender(None, ModelServerError(status, "down"))
        answer = OnlinePolicy(recommender, ServiceConfig(),
                              FixedStatus({"retrieval": 1, "ranker": 1})).answer(
            Ask("u1", 3, "tv", 20))
        assert answer.fallback == reason and [i.title_id for i in answer.served.items] == ["t1"]
        assert answer.served.items[0].score is None


def test_an_arm_sets_its_users_diversity_and_exploration_over_the_request():
    recommender = _Recommender(None)
    config = ServiceConfig(experiments=(Experiment("diverse", arms=(
        Arm("control", 1, {"diversity": 0.0}), Arm("treatment", 1, {"diversity": 0.7,
                                                                     "exploration": 0.2}))),))
    policy = OnlinePolicy(recommender, config, FixedStatus({"retrieval": 1, "ranker": 1}))
    arms = {user: policy.answer(Ask(user, 1, "tv", 20, diversity=0.3)).experiments["diverse"]
            for user in (f"u{i}" for i in range(40))}
    settings = [(asked["diversity"], asked["exploration"]) for asked in recommender.asked]
    expected = [(0.7, 0.2) if arm == "treatment" else (0.0, 0.0) for arm in arms.values()]
    assert settings == expected and {"control", "treatment"} == set(arms.values())


def test_a_new_retrieval_version_brings_its_catalogue(tmp_path):
    fresh = {**TITLE, "title_id": "t2", "popularity": 9.0}
    assets = tmp_path / "retrieval" / "2" / "assets.extra"
    assets.mkdir(parents=True)
    (assets / "catalogue.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (TITLE, fresh)))
    client = _Versions([1])
    recommender = _Recommender(client)
    policy = OnlinePolicy(recommender, ServiceConfig(serving_dir=str(tmp_path),
                                                     status_refresh_s=3600))
    # Version 1 has no snapshot here: the catalogue is kept, not emptied.
    assert set(recommender.catalogue) == {"t1"}
    client.versions = [1, 2]
    policy.status.refresh()
    policy.close()
    assert set(recommender.catalogue) == {"t1", "t2"}
    # The fallback list follows the new catalogue at once: t2 is the most popular.
    assert [item.title_id for item in recommender.popular("u1", 2).items] == ["t2", "t1"]


def test_model_status_reports_what_is_missing():
    status = FixedStatus({"retrieval": 2, "ranker": None})
    assert not status.ready() and status.missing() == ["ranker"]
    live = ModelStatus({"ranker": _Versions([])}, refresh_s=3600)
    assert live.missing() == ["ranker"] and not live.ready()
    live.close()
