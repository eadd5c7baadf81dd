"""The online policy: arms set what a user gets (settings, model routes, the popularity
list), a failing model server falls back to popularity with the reason, versions come from a
status refreshed off the request path (labels included), and a new retrieval version's
catalogue replaces the served one."""

import json
import re

import pytest

from serving.clients import ModelServerError
from serving.config import ServiceConfig
from serving.online.experiments import Arm, Experiment, ModelTarget, Route
from serving.online.policy import (MODEL_SERVER_ERROR, MODEL_SERVER_TIMEOUT, Ask, FixedStatus,
                                   ModelStatus, OnlinePolicy)
from serving.online.recommender import Recommendation, Recommender, ServedList
from serving.online.store import SqliteProfileStore

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

    def ranked(self, user_id, **options):
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
    answers = {user: policy.answer(Ask(user, 1, "tv", 20, diversity=0.3))
               for user in (f"u{i}" for i in range(40))}
    arms = {user: answer.experiments["diverse"] for user, answer in answers.items()}
    settings = [(answer.settings.diversity, answer.settings.exploration)
                for answer in answers.values()]
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


def test_model_status_reads_the_labels_the_experiments_route_to():
    class Labels(_Versions):
        def available_versions(self, model, timeout=None, label=""):
            self.calls += 1
            return {"": [1, 2], "canary": [2], "stable": [1]}[label]

    config = ServiceConfig(status_refresh_s=3600, experiments=(Experiment("canary", arms=(
        Arm("control", models={"ranker": "@stable"}),
        Arm("canary", models={"ranker": "ranker_b@canary"}))),))
    policy = OnlinePolicy(_Recommender(Labels([])), config)
    status = policy.status
    policy.close()
    assert status.version_of(ModelTarget("ranker", label="stable")) == 1
    assert status.version_of(ModelTarget("ranker_b", label="canary")) == 2
    assert status.version_of(ModelTarget("ranker")) == 2
    assert status.version_of(ModelTarget("ranker", version=7)) == 7  # Pinned: as asked.
    # A model only an arm routes to is read too, but its absence leaves the service ready.
    assert "ranker_b" in status.versions() and status.ready()


def test_arms_that_route_models_round_trip_through_the_service_config():
    # One layer: the popularity arm replaces every model, so it may not share users with
    # the routed arms.
    config = ServiceConfig(experiments=(
        Experiment("ranker", traffic=0.5, arms=(
            Arm("control", models={"ranker": "@stable"}),
            Arm("canary", models={"ranker": "ranker@canary", "recommender": "@4"}))),
        Experiment("baseline", traffic=0.5, arms=(
            Arm("models", settings={"diversity": 0.2}), Arm("popular", policy="popularity")))))
    again = ServiceConfig.from_json(config.to_json())
    assert again == config
    assert again.experiments[0].arms[1].route == Route(
        ranker=ModelTarget("ranker", label="canary"), recommender=ModelTarget(version=4))
    assert again.experiments[1].arms[1].policy == "popularity"
    assert config.to_dict()["experiments"][0]["arms"][1]["models"] == {
        "ranker": "ranker@canary", "recommender": "@4"}


def _layered(first: Arm, second: Arm, layer: str = "other") -> tuple[Experiment, ...]:
    """Experiments "a" (layer "default") and "b" (`layer`), each on half of its layer."""
    return (Experiment("a", traffic=0.5, arms=(Arm("control"), first)),
            Experiment("b", traffic=0.5, layer=layer, arms=(Arm("control"), second)))


def test_experiments_sharing_users_may_not_route_a_role_differently():
    with pytest.raises(ValueError, match=re.escape(
            "routes of role 'ranker' in experiments 'a' (layer 'default') and 'b' (layer "
            "'other') must be one target, as their users overlap: put both experiments in one "
            "layer, or route the role the same way in both; received ['ranker@2', "
            "'ranker@canary'].")):
        ServiceConfig(experiments=_layered(Arm("x", models={"ranker": "@canary"}),
                                           Arm("y", models={"ranker": "ranker@2"})))


def test_a_popularity_arm_may_not_share_users_with_an_arm_that_routes_a_model():
    with pytest.raises(ValueError, match=re.escape(
            "routes of role 'retrieval' in experiments 'a' (layer 'default') and 'b' (layer "
            "'other') must be one target")):
        ServiceConfig(experiments=_layered(Arm("x", policy="popularity"),
                                           Arm("y", models={"retrieval": "@canary"})))


def test_routes_that_cannot_meet_one_user_are_allowed():
    # One layer: no user is in both. Other layers: the same target ("@canary" is
    # "ranker@canary"), or different roles.
    for experiments in (
            _layered(Arm("x", models={"ranker": "@canary"}),
                     Arm("y", models={"ranker": "@2"}), layer="default"),
            _layered(Arm("x", models={"ranker": "@canary"}),
                     Arm("y", models={"ranker": "ranker@canary"})),
            _layered(Arm("x", models={"ranker": "@canary"}),
                     Arm("y", models={"retrieval": "@2"}))):
        assert ServiceConfig(experiments=experiments).experiments == experiments


def test_routing_the_recommender_needs_a_name_when_the_service_has_none():
    with pytest.raises(ValueError, match=re.escape(
            "models['recommender'] of arm 'x' must be a model name, as recommender_model is "
            "'' (no one-call model); received '@canary'.")):
        ServiceConfig(recommender_model="", experiments=(Experiment("e", arms=(
            Arm("control"), Arm("x", models={"recommender": "@canary"}))),))
