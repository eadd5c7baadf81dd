"""Model versions as TF Serving handles them: warmup at load, labels, polling for new
versions, and a swap under load that fails no request."""

import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from recs import features as F
from serving.clients import GrpcClient, ModelServerError, RestClient
from serving.model_server import ModelRegistry, ModelServer, warm_up

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _ranker_batch(records: list[dict], n: int = 4) -> dict[str, list]:
    return {key: [getattr(r[key], "item", lambda: r[key])() for r in records[:n]]
            for key in F.RANKER_FEATURES}


@pytest.fixture
def base(tiny_world, tmp_path):
    """A serving base directory holding version 1 of the ranker."""
    shutil.copytree(tiny_world.serving_dir / "ranker" / "1", tmp_path / "ranker" / "1")
    return tmp_path


def _push(base, version: int) -> None:
    """Pushes a new version atomically, as a Pusher should: copy aside, then rename."""
    staging = base / f".staging-{version}"
    shutil.copytree(base / "ranker" / "1", staging)
    staging.rename(base / "ranker" / str(version))


@pytest.mark.parametrize("model, signatures", [
    ("ranker", {"serving_default", "serving_tf_example"}),
    ("towers", {"serving_default", "query_embedding", "candidate_embedding"}),
    ("retrieval", {"serving_default"}),
    ("retrieval_exact", {"serving_default"}),
])
def test_every_export_carries_warmup_requests_that_replay(tiny_world, model, signatures):
    path = tiny_world.serving_dir / model / "1"
    records = list(tf.data.TFRecordDataset(
        str(path / "assets.extra" / "tf_serving_warmup_requests")))
    requests = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
                for r in records]
    assert {r.model_spec.signature_name for r in requests} == signatures
    assert len(requests) == 2 * len(signatures)  # Batch sizes 1 and 8.
    registry = ModelRegistry(str(tiny_world.serving_dir), (model,))
    registry.load()
    assert warm_up(registry.get(model)) == len(requests)


def test_labels_route_rest_and_grpc_to_their_versions(base, tiny_world):
    _push(base, 2)
    registry = ModelRegistry(str(base), ("ranker",), num_versions=1,
                             labels={"ranker": {"stable": 1, "canary": 2}})
    registry.load()
    assert registry.versions("ranker") == [1, 2]  # The newest, and the labelled ones.
    batch = _ranker_batch(tiny_world.records)
    with ModelServer(registry) as server:
        rest = RestClient(server.rest_url)
        assert [s["version"] for s in rest.status("ranker")["model_version_status"]] == ["1", "2"]
        status, stable = _post(f"{server.rest_url}/v1/models/ranker/labels/stable:predict",
                               {"inputs": batch})
        latest = rest.predict("ranker", batch)["probability"]
        assert status == 200
        np.testing.assert_allclose(stable["outputs"], latest, rtol=1e-5)  # Same weights.
        status, body = _post(f"{server.rest_url}/v1/models/ranker/labels/blue:predict",
                             {"inputs": batch})
        assert (status, body) == (400, {"error": "Unrecognized servable version label: blue"})
        grpc_client = GrpcClient(server.grpc_target)
        _, version = grpc_client.predict_versioned("ranker", batch)
        assert version == 2
        assert grpc_client.available_versions("ranker") == [1, 2]
        grpc_client.close()


def test_a_broken_new_version_is_retried_and_never_replaces_the_served_one(base):
    registry = ModelRegistry(str(base), ("ranker",))
    registry.load()
    broken = base / "ranker" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    assert registry.refresh() == {"ranker": [1]}
    assert "ranker/2" in registry.load_errors
    shutil.rmtree(broken)
    _push(base, 2)
    assert registry.refresh() == {"ranker": [2]}
    assert not registry.load_errors


def test_swapping_versions_under_load_fails_no_request(base, tiny_world):
    registry = ModelRegistry(str(base), ("ranker",))
    registry.load()
    registry.start_polling(0.2)
    batch = _ranker_batch(tiny_world.records)
    seen: list[tuple[float, int]] = []  # (when the request started, version that answered)
    failures: list[Exception] = []
    stop = threading.Event()
    with ModelServer(registry) as server:
        def hammer() -> None:
            client = GrpcClient(server.grpc_target)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    seen.append((started, client.predict_versioned("ranker", batch)[1]))
                except ModelServerError as error:
                    failures.append(error)
            client.close()

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        _push(base, 2)
        deadline = time.monotonic() + 60
        while registry.versions("ranker") != [2] and time.monotonic() < deadline:
            time.sleep(0.1)
        swapped = time.monotonic()
        loaded_in_time = registry.versions("ranker") == [2]
        time.sleep(0.5)
        stop.set()
        for worker in workers:
            worker.join()
    assert loaded_in_time, "version 2 did not load within 60 s"
    assert registry.versions("ranker") == [2]  # Version 1 unloaded by the latest-1 policy.
    assert not failures
    assert min(seen)[1] == 1  # Before the push, version 1 answered.
    # Requests started once version 1 was gone were all answered by version 2 (requests in
    # flight across the swap may finish later on version 1, which is why it stays loaded).
    after = [version for started, version in seen if started > swapped]
    assert after and set(after) == {2}


class _RecordingRegistry(ModelRegistry):
    """A registry that records which (model, version) answered each lookup (predict and
    metadata), so a test sees on the server side which version a routed call reached."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.answered: list[tuple[str, int]] = []

    def get(self, name, version=None, label=""):
        model = super().get(name, version, label)
        self.answered.append((model.name, model.version))
        return model


class _CallLog:
    """A client that passes every call on and records (model, version, label) of predicts."""

    def __init__(self, client) -> None:
        self.client, self.calls = client, []

    def predict_versioned(self, model, inputs, signature="", version=None, timeout=None,
                          label=""):
        self.calls.append((model, version, label))
        return self.client.predict_versioned(model, inputs, signature, version, timeout, label)

    def available_versions(self, model, timeout=None, label=""):
        return self.client.available_versions(model, timeout, label)


@pytest.fixture(scope="module")
def labelled_ranker(tiny_world, tmp_path_factory):
    """A ranker server with versions 1 and 2 (the same weights) labelled stable and canary:
    the retrieval and recommender models stay on the session's `server`, as in a deployment
    whose retrieval server is not the ranker's (`ServiceConfig.retrieval_server`)."""
    base = tmp_path_factory.mktemp("labelled")
    for version in (1, 2):
        shutil.copytree(tiny_world.serving_dir / "ranker" / "1", base / "ranker" / str(version))
    registry = _RecordingRegistry(str(base), ("ranker",),
                                  labels={"ranker": {"stable": 1, "canary": 2}})
    registry.load()
    with ModelServer(registry) as running:
        yield running


def _clients(protocol: str, server: ModelServer):
    return RestClient(server.rest_url) if protocol == "rest" else GrpcClient(server.grpc_target)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_an_arm_routed_to_a_label_is_served_and_logged_by_that_version(
        server, labelled_ranker, store, tiny_world, tmp_path, protocol):
    from serving.config import ServiceConfig
    from serving.online.experiments import Arm, Experiment
    from serving.online.policy import Ask, OnlinePolicy
    from serving.online.recommender import Recommender, load_catalogue

    # The control arm pins `@stable`: an unpinned call reaches the newest version, which
    # here is the canary.
    config = ServiceConfig(
        served_log=str(tmp_path / "served.jsonl"), model_timeout_ms=30_000,
        status_refresh_s=3600, experiments=(Experiment("ranker-canary", arms=(
            Arm("control", models={"ranker": "@stable"}),
            Arm("canary", models={"ranker": "@canary"}))),))
    retrieval = _CallLog(_clients(protocol, server))
    recommender = Recommender(_clients(protocol, labelled_ranker), store,
                              load_catalogue(str(tiny_world.serving_dir), "retrieval"),
                              retrieval_client=retrieval)
    policy = OnlinePolicy(recommender, config)
    arms = {}
    for user in dict.fromkeys(r[F.USER_ID] for r in tiny_world.records):
        arms.setdefault(policy.assigner.assign(user)["ranker-canary"], user)
    registry = labelled_ranker.registry
    answered = {}
    for arm, user in sorted(arms.items()):
        registry.answered.clear()
        answer = policy.answer(Ask(user, 5, "tv", 20))
        answered[arm] = set(registry.answered)
        assert answer.fallback is None and len(answer.served.items) == 5
    policy.close()
    # Every ranker lookup of a request (predict, and REST's metadata for the output name)
    # reached the arm's version; the one-call recommender, which bundles the service's own
    # ranker, was never asked.
    assert answered == {"canary": {("ranker", 2)}, "control": {("ranker", 1)}}
    assert {model for model, _, _ in retrieval.calls} == {"retrieval"}
    logged = {line["experiments"]["ranker-canary"]: line for line in map(
        json.loads, (tmp_path / "served.jsonl").read_text().splitlines())}
    assert {arm: (line["policy"], line["routes"], line["model_versions"])
            for arm, line in logged.items()} == {
        "canary": ("models", {"retrieval": "retrieval", "ranker": "ranker@canary"},
                   {"retrieval": 1, "ranker": 2}),
        "control": ("models", {"retrieval": "retrieval", "ranker": "ranker@stable"},
                    {"retrieval": 1, "ranker": 1})}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_clients_resolve_a_label_to_its_version(labelled_ranker, protocol):
    client = _clients(protocol, labelled_ranker)
    assert client.available_versions("ranker", label="canary") == [2]
    assert client.available_versions("ranker", label="stable") == [1]
    assert client.available_versions("ranker") == [1, 2]
    with pytest.raises(ModelServerError, match="Unrecognized servable version label: blue"):
        client.available_versions("ranker", label="blue")
    with pytest.raises(ValueError, match="version and label name the same thing"):
        client.predict_versioned("ranker", {}, version=1, label="canary")


def test_routing_the_ranker_makes_the_recommender_skip_the_one_call_model(
        server, labelled_ranker, store, tiny_world):
    from serving.online.experiments import ModelTarget, Route
    from serving.online.recommender import Recommender, load_catalogue

    retrieval = _CallLog(RestClient(server.rest_url))
    recommender = Recommender(RestClient(labelled_ranker.rest_url), store,
                              load_catalogue(str(tiny_world.serving_dir), "retrieval"),
                              retrieval_client=retrieval)
    user = tiny_world.records[0][F.USER_ID]
    default = recommender.ranked(user)
    assert retrieval.calls == [("recommender", None, "")]  # One call, the bundle.
    assert set(default.routes) == {"recommender"}
    retrieval.calls.clear()
    routed = recommender.ranked(user, route=Route(ranker=ModelTarget(label="canary")))
    assert retrieval.calls == [("retrieval", None, "")]  # Two calls: retrieval here...
    assert routed.routes == {"retrieval": ModelTarget("retrieval"),  # ...the ranker there.
                             "ranker": ModelTarget("ranker", label="canary")}
    top = routed.items[:5]
    assert len(top) == 5 and all(0 < item.score < 1 for item in top)
