"""The recommendation service's HTTP API: answers, errors, fallbacks, metrics, and a fuzz run
against its own OpenAPI spec."""

import json
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient

from recs import features as F
from serving.api.service import ServiceServer, create_app, openapi_spec
from serving.clients import GrpcClient, RestClient
from serving.config import ServiceConfig
from serving.online.policy import OnlinePolicy
from serving.online.recommender import Recommender, load_catalogue

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial

SPEC = pathlib.Path(__file__).resolve().parents[3] / "serving" / "openapi.json"


def _user(tiny_world) -> str:
    return next(r[F.USER_ID] for r in tiny_world.records if r[F.COMPLETED] == 1)


@pytest.fixture(scope="module")
def catalogue(tiny_world):
    return load_catalogue(str(tiny_world.serving_dir), "retrieval")


def _app(client, store, catalogue, tmp_path, **overrides):
    # A generous model budget: these tests check answers, and a loaded CI machine once took
    # over a second for one call (the fallback test sets its own short budget).
    config = ServiceConfig(**{"served_log": str(tmp_path / "served.jsonl"),
                              "model_timeout_ms": 30_000, **overrides})
    return create_app(OnlinePolicy(Recommender(client, store, catalogue), config))


@pytest.fixture
def api(server, store, catalogue, tmp_path):
    with TestClient(_app(RestClient(server.rest_url), store, catalogue, tmp_path)) as client:
        yield client


# The one-call recommender model, and the two calls (retrieval, then ranking) a server without
# it gets: the same answer's shape either way, with the versions and stages of the path taken.
PATHS = {"one_call": ("recommender", {"recommender": 1}, {"profile", "recommend", "total"}),
         "two_calls": ("", {"retrieval": 1, "ranker": 1},
                       {"profile", "retrieval", "ranking", "total"})}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_recommendations_are_ranked_unfinished_and_logged(server, store, catalogue, tiny_world,
                                                         tmp_path, protocol, path):
    recommender_model, versions, stages = PATHS[path]
    client = (RestClient(server.rest_url) if protocol == "rest"
              else GrpcClient(server.grpc_target))
    user = _user(tiny_world)
    config = ServiceConfig(served_log=str(tmp_path / "served.jsonl"), model_timeout_ms=30_000,
                           recommender_model=recommender_model)
    recommender = Recommender(client, store, catalogue, recommender_model=recommender_model)
    with TestClient(create_app(OnlinePolicy(recommender, config))) as api:
        response = api.post("/v1/recommendations",
                            json={"user_id": user, "k": 5,
                                  "context": {"device_type": "mobile", "hour": 8}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["items"]) == 5 and body["fallback"] is None
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert not store.finished(user) & {item["title_id"] for item in body["items"]}
    assert body["model_versions"] == versions
    assert body["candidates"] >= 5
    assert set(body["timings_ms"]) == stages
    (line,) = (tmp_path / "served.jsonl").read_text().splitlines()
    logged = json.loads(line)
    assert logged["request_id"] == body["request_id"] and logged["hour"] == 8
    assert [i["title_id"] for i in logged["items"]] == [i["title_id"] for i in body["items"]]


@pytest.mark.parametrize("body, status, message", [
    ({"user_id": "u000001", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"user_id": "u000001", "k": 101}, 422, "k: Input should be less than or equal to 100"),
    ({"user_id": "u000001", "context": {"device_type": "toaster"}}, 422,
     "context.device_type: Input should be 'tv', 'mobile', 'tablet' or 'web'"),
    ({"user_id": "u000001", "context": {"hour": 24}}, 422, "context.hour"),
    ({"user_id": "u000001", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ({"k": 3}, 422, "user_id: Field required"),
    ({"user_id": "u 1; drop"}, 422, "user_id: String should match pattern"),
])
def test_bad_requests_get_a_clear_4xx(api, body, status, message):
    response = api.post("/v1/recommendations", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_a_malformed_body_gets_400(api):
    # 400, not FastAPI's 422: the body is not JSON at all (schema violations stay 422).
    # Oversized bodies are refused at the connection: see
    # tests/serving/api/test_service_hardening.py.
    response = api.post("/v1/recommendations", content=b'{"user_id": ',
                        headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def _silent_port() -> tuple[socket.socket, int]:
    """A TCP port that accepts connections and never answers: a hung model server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    threading.Thread(target=lambda: accepted.extend(iter(listener.accept, None)),
                     daemon=True).start()
    return listener, listener.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_hung_or_dead_model_server_gets_the_popularity_fallback(store, catalogue, tiny_world,
                                                                 tmp_path):
    user = _user(tiny_world)
    listener, hung = _silent_port()
    expected = [row[F.TITLE_ID] for row in sorted(
        catalogue.values(), key=lambda row: (-row[F.POPULARITY], row[F.TITLE_ID]))
        if row[F.TITLE_ID] not in store.finished(user)][:4]
    try:
        for url, reason in ((f"http://127.0.0.1:{hung}", "model_server_timeout"),
                            (f"http://127.0.0.1:{_free_port()}", "model_server_error")):
            app = _app(RestClient(url, timeout=30.0), store, catalogue, tmp_path,
                       model_timeout_ms=300)
            with TestClient(app) as api:
                started = time.monotonic()
                response = api.post("/v1/recommendations", json={"user_id": user, "k": 4})
                elapsed = time.monotonic() - started
                body = response.json()
                assert response.status_code == 200 and body["fallback"] == reason
                # The 300 ms budget bounds the wait, not the client's own 30 s timeout.
                assert elapsed < 5.0
                assert [item["title_id"] for item in body["items"]] == expected
                assert all(item["score"] is None for item in body["items"])
                assert api.get("/readyz").status_code == 503
                metrics = api.get("/metrics").text
                assert f'recs_fallbacks_total{{reason="{reason}"}} 1.0' in metrics
    finally:
        listener.close()


def test_health_readiness_and_metrics(api, tiny_world):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_versions"] == {"retrieval": 1, "ranker": 1, "recommender": 1}
    assert api.post("/v1/recommendations", json={"user_id": _user(tiny_world)}).status_code == 200
    assert api.post("/v1/recommendations", json={"user_id": "ghost"}).status_code == 200
    metrics = api.get("/metrics").text
    assert 'recs_requests_total{outcome="ok"} 1.0' in metrics
    assert 'recs_requests_total{outcome="fallback"} 1.0' in metrics
    assert 'recs_fallbacks_total{reason="no_profile"} 1.0' in metrics
    # The model path timed each of its stages once; the popularity list (no model call)
    # timed the profile read and the total too.
    counts = {stage: 2.0 if stage in ("profile", "total") else 1.0
              for stage in PATHS["one_call"][2]}
    assert set(counts) >= {"profile", "total"}
    for stage, count in counts.items():
        assert f'recs_stage_latency_seconds_count{{stage="{stage}"}} {count}' in metrics


def test_checked_in_openapi_spec_is_current(api):
    assert SPEC.read_text() == openapi_spec(api.app), (
        "serving/openapi.json is stale: regenerate it with `recs openapi > serving/openapi.json`")


def test_schemathesis_with_every_check_finds_nothing(server, store, catalogue, tmp_path):
    """Schemathesis' CLI, every check, positive and negative data, all its phases, over a
    real connection to a service on real models (so the connection layer is under test too).
    Seeded: CI runs the same cases each time."""
    app = _app(RestClient(server.rest_url), store, catalogue, tmp_path)
    with ServiceServer(app) as service:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{service.url}/openapi.json",
             "--checks", "all", "--mode", "all", "--max-examples", "30", "--seed", "19",
             "--generation-database", "none", "--no-color", "--request-timeout", "30"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "4 selected / 4 total" in result.stdout  # The recommendations and the probes.
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated.group(1)) >= 100, result.stdout[-2000:]


def test_arms_tag_responses_change_settings_and_exploration_logs_propensities(
        server, store, catalogue, tiny_world, tmp_path):
    from serving.online.experiments import Arm, Assigner, Experiment

    experiment = Experiment("diverse", arms=(Arm("control"),
                                             Arm("treatment", settings={"diversity": 1.0})))
    app = _app(RestClient(server.rest_url), store, catalogue, tmp_path,
               experiments=(experiment,), exploration=0.5)
    users = sorted({r[F.USER_ID] for r in tiny_world.records})[:12]
    assigner = Assigner([experiment])
    with TestClient(app) as api:
        bodies = [api.post("/v1/recommendations", json={"user_id": u, "k": 4}).json()
                  for u in users]
    for user, body in zip(users, bodies):
        arm = assigner.assign(user)["diverse"]
        assert body["experiments"] == {"diverse": arm}
        for item in body["items"]:
            # Kept: 1 - epsilon; explored: epsilon over the pool of lower-ranked candidates.
            assert item["propensity"] == pytest.approx(0.5) or (
                item["explored"] and 0 < item["propensity"] < 0.5)
        if arm == "treatment" and not any(i["explored"] for i in body["items"]):
            genres = [item["genre"] for item in body["items"]]
            assert len(set(genres)) == len(genres)  # Diversity 1: no genre twice.
    assert any(item["explored"] for body in bodies for item in body["items"])
    logged = [json.loads(line) for line in (tmp_path / "served.jsonl").read_text().splitlines()]
    assert [line["experiments"] for line in logged] == [b["experiments"] for b in bodies]
    assert all("propensity" in item for line in logged for item in line["items"])


def test_a_user_unknown_to_the_store_is_served_from_the_profile_in_the_request(api):
    profile = {"age": 31, "country": "de", "subscription_tier": "premium",
               "preferred_genres": ["drama", "comedy"]}
    response = api.post("/v1/recommendations",
                        json={"user_id": "just-signed-up", "k": 3, "profile": profile})
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 3
    assert all(item["score"] is not None for item in response.json()["items"])
    response = api.post("/v1/recommendations", json={
        "user_id": "just-signed-up", "profile": {**profile, "age": -1}})
    assert response.status_code == 422 and "profile.age" in response.json()["error"]


def test_a_user_with_no_profile_anywhere_gets_the_popularity_list(api, catalogue):
    # Nothing is known of "ghost" (not in the store, no profile in the request): the models
    # have nothing to go on, so the answer is the catalogue's popularity order, flagged.
    response = api.post("/v1/recommendations", json={"user_id": "ghost", "k": 4})
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = sorted(catalogue.values(), key=lambda row: (-float(row[F.POPULARITY]),
                                                           row[F.TITLE_ID]))[:4]
    assert [item["title_id"] for item in answer["items"]] == [row[F.TITLE_ID] for row in expected]
    assert answer["fallback"] == "no_profile"
    assert all(item["score"] is None for item in answer["items"])
    assert answer["model_versions"] == {} and answer["candidates"] == 0


def test_a_popularity_arm_is_answered_from_the_popularity_list_without_a_fallback(
        server, store, catalogue, tiny_world, tmp_path):
    from serving.online.experiments import Arm, Experiment

    config = ServiceConfig(served_log=str(tmp_path / "served.jsonl"), model_timeout_ms=30_000,
                           experiments=(Experiment("baseline", arms=(
                               Arm("models"), Arm("popularity", policy="popularity"))),))
    policy = OnlinePolicy(Recommender(RestClient(server.rest_url), store, catalogue), config)
    users = list(dict.fromkeys(r[F.USER_ID] for r in tiny_world.records))
    user = next(u for u in users if policy.assigner.assign(u)["baseline"] == "popularity")
    with TestClient(create_app(policy)) as api:
        answer = api.post("/v1/recommendations", json={"user_id": user, "k": 4}).json()
    expected = [row[F.TITLE_ID] for row in sorted(
        catalogue.values(), key=lambda row: (-float(row[F.POPULARITY]), row[F.TITLE_ID]))
        if row[F.TITLE_ID] not in store.finished(user)][:4]
    assert [item["title_id"] for item in answer["items"]] == expected
    assert (answer["fallback"], answer["model_versions"], answer["experiments"]) == (
        None, {}, {"baseline": "popularity"})
    (logged,) = [json.loads(line) for line in
                 (tmp_path / "served.jsonl").read_text().splitlines()]
    assert (logged["policy"], logged["routes"]) == ("popularity", {})
