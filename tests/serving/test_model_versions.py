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
from serving.client import GrpcClient, ModelServerError, RestClient
from serving.model_server import ModelRegistry, ModelServer, warm_up


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
