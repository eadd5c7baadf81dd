"""The service's typed config: the settings an arm may change, model routes that must agree
across layers, connection limits in range, and JSON round-trips of nested configs."""

import re

import pytest

from serving import http as guarded_http
from serving.config import ServiceConfig
from serving.online.experiments import Arm, Experiment, ModelTarget, Route


def test_arm_settings_the_service_does_not_know_are_refused():
    from serving.online.experiments import Arm, Experiment

    with pytest.raises(ValueError, match=r"settings of arm 'b' must be among \('diversity', "
                                         r"'exploration', 'tail_share'\); received "
                                         r"\['temperature'\]"):
        ServiceConfig(experiments=(Experiment("x", arms=(
            Arm("a"), Arm("b", settings={"temperature": 0.5}))),))
    config = ServiceConfig(experiments=(Experiment("x", arms=(
        Arm("a"), Arm("b", settings={"diversity": 0.5}))),))
    assert ServiceConfig.from_json(config.to_json()) == config  # Round-trips nested configs.


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


@pytest.mark.parametrize("field, value, message", [
    ("max_in_flight", 0, r"max_in_flight must be None \(no limit\) or an int >= 1"),
    ("retry_after_s", 0, r"retry_after_s must be an int >= 1"),
    ("keep_alive_s", 0.5, r"keep_alive_s must be >= 1 second"),
    ("header_timeout_s", 0.0, r"header_timeout_s must be > 0 seconds"),
    ("max_header_bytes", 100, r"max_header_bytes must be >= 1024"),
    ("max_k", True, r"max_k must be an int in \[1, 100\]"),
])
def test_limits_out_of_range_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        ServiceConfig(**{field: value})


def test_limits_round_trip_through_json():
    config = ServiceConfig(max_in_flight=None, header_timeout_s=2.5, max_body_bytes=4096)
    assert ServiceConfig.from_json(config.to_json()) == config
    assert config.http_limits() == guarded_http.HttpLimits(
        header_timeout_s=2.5, body_timeout_s=10.0, keep_alive_s=5.0,
        max_header_bytes=16 * 1024, max_body_bytes=4096)


def test_authentication_and_tls_are_off_by_default_and_round_trip_when_on():
    from serving.security import ClientTls, ServerTls, TokenSource

    default = ServiceConfig()
    assert not (default.tokens.enabled or default.tls.enabled
                or default.model_server_tls.configured or default.model_server_token.enabled)
    assert (default.metrics_access, default.docs_access) == ("open", "open")
    secured = ServiceConfig(
        model_server="https://tf-serving:8501", retrieval_server="https://scann:8501",
        tokens=TokenSource(file="/etc/recs/tokens/service"),
        tls=ServerTls("/etc/recs/tls/tls.crt", "/etc/recs/tls/tls.key"),
        metrics_access="token", docs_access="closed",
        model_server_tls=ClientTls(ca_file="/etc/recs/tls/ca.crt"),
        retrieval_server_token=TokenSource(file="/etc/recs/tokens/model-server"))
    again = ServiceConfig.from_json(secured.to_json())
    assert again == secured and isinstance(again.tls, ServerTls)
    assert "/etc/recs/tokens/service" in secured.to_json()  # The place, never a token.


def test_model_server_credentials_that_would_go_nowhere_are_refused():
    from serving.security import ClientTls, TokenSource

    with pytest.raises(ValueError, match="model_server_tls must be empty unless a model "
                                         "server is reached over TLS: write its address "
                                         "https://host:port"):
        ServiceConfig(model_server="http://tf-serving:8501",
                      model_server_tls=ClientTls(ca_file="ca.crt"))
    ServiceConfig(model_server="http://tf-serving:8501", retrieval_server="https://scann:8501",
                  model_server_tls=ClientTls(ca_file="ca.crt"))  # One https server will do.
    with pytest.raises(ValueError, match="retrieval_server_token must be empty while "
                                         "retrieval_server is"):
        ServiceConfig(retrieval_server_token=TokenSource(env="RECS_MODEL_TOKEN"))
