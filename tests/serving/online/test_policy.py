"""The online policy: arms set what a user gets (settings, model routes, the popularity
list), a failing model server falls back to popularity with the reason, versions come from a
status refreshed off the request path (labels included), and a new retrieval version's
catalogue replaces the served one."""

import json

from serving.clients import ModelServerError
from serving.config import ServiceConfig
from serving.online.experiments import Arm, Experiment, ModelTarget
from serving.online.policy import (MODEL_SERVER_ERROR, MODEL_SERVER_TIMEOUT, Ask, FixedStatus,
                                   OnlinePolicy)
from serving.online.recommender import Recommendation, Recommender, ServedList
from serving.online.store import SqliteProfileStore
from tests.serving.online._helpers import TITLE, _Recommender, _Versions


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
    answers = {user: policy.answer(Ask(user, 1, "tv", 20, diversity=0.3))
               for user in (f"u{i}" for i in range(40))}
    arms = {user: answer.experiments["diverse"] for user, answer in answers.items()}
    settings = [(answer.settings.diversity, answer.settings.exploration)
                for answer in answers.values()]
    expected = [(0.7, 0.2) if arm == "treatment" else (0.0, 0.0) for arm in arms.values()]
    assert settings == expected and {"control", "treatment"} == set(arms.values())
    # A list in the ranker's order asks for k candidates only; a re-ranked one for all.
    limits = {options["limit"] for options, arm in zip(recommender.asked, arms.values())
              if arm == "control"}
    assert limits == {1} and {options["limit"] for options in recommender.asked} == {1, None}


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


class _NoModelServer:
    """A client for tests that must make no model call: any call fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the model server was called ({name})")


def test_a_popularity_arm_is_served_the_popularity_list_with_no_model_call(tmp_path):
    popular = {**TITLE, "title_id": "t2", "popularity": 9.0}
    recommender = Recommender(_NoModelServer(), SqliteProfileStore(":memory:"),
                              {"t1": TITLE, "t2": popular})
    config = ServiceConfig(served_log=str(tmp_path / "s.jsonl"), experiments=(Experiment(
        "baseline", arms=(Arm("models"), Arm("popularity", policy="popularity"))),))
    policy = OnlinePolicy(recommender, config, FixedStatus({"retrieval": 1, "ranker": 1}))
    users = [u for u in (f"u{i}" for i in range(40))
             if policy.assigner.assign(u)["baseline"] == "popularity"]
    answers = [policy.answer(Ask(user, 2, "tv", 20)) for user in users]
    assert users and all([i.title_id for i in a.served.items] == ["t2", "t1"] for a in answers)
    assert {(a.policy, a.fallback) for a in answers} == {("popularity", None)}
    logged = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert {(e["policy"], e["fallback"], json.dumps(e["routes"]), json.dumps(
        e["model_versions"])) for e in logged} == {("popularity", None, "{}", "{}")}


def test_a_labelled_call_is_logged_with_the_version_its_label_points_to(tmp_path):
    class Routed(_Recommender):
        def ranked(self, user_id, **options):
            self.asked.append(options)
            route = options["route"]
            return ServedList([Recommendation("t1", 0.9, 0.5, "drama")],
                              {"retrieval": None, "ranker": None}, {}, 1,
                              {"retrieval": ModelTarget("retrieval"),
                               "ranker": route.ranker.resolved("ranker")})

    recommender = Routed(None)
    config = ServiceConfig(served_log=str(tmp_path / "s.jsonl"), experiments=(Experiment(
        "canary", arms=(Arm("control", models={"ranker": "@stable"}),
                        Arm("canary", models={"ranker": "@canary"}))),))
    # The newest ranker is 5, which neither label points to.
    status = FixedStatus({"retrieval": 4, "ranker": 5},
                         {("ranker", "stable"): 3, ("ranker", "canary"): 5})
    policy = OnlinePolicy(recommender, config, status)
    answers = {policy.answer(Ask(f"u{i}", 1, "tv", 20)).experiments["canary"]: i
               for i in range(40)}
    logged = {e["experiments"]["canary"]: (e["routes"]["ranker"], e["model_versions"])
              for e in map(json.loads, (tmp_path / "s.jsonl").read_text().splitlines())}
    assert set(answers) == {"control", "canary"}
    assert logged == {"control": ("ranker@stable", {"retrieval": 4, "ranker": 3}),
                      "canary": ("ranker@canary", {"retrieval": 4, "ranker": 5})}


def test_the_served_line_goes_to_the_logger_when_someone_listens(caplog):
    import logging

    policy = OnlinePolicy(_Recommender(None), ServiceConfig(),
                          FixedStatus({"retrieval": 1, "ranker": 1}))
    with caplog.at_level(logging.WARNING, logger="recs.served"):
        policy.answer(Ask("u1", 1, "tv", 20))
    assert not [r for r in caplog.records if r.name == "recs.served"]
    with caplog.at_level(logging.INFO, logger="recs.served"):
        answer = policy.answer(Ask("u1", 1, "tv", 20))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "recs.served"]
    assert [line["request_id"] for line in lines] == [answer.request_id]
