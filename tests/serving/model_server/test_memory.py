"""A large request's memory goes back to the system once it is answered; small ones cost
nothing."""

import json
import urllib.request

import grpc
import numpy as np
import psutil
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.model_server import grpc_api, memory, rest_api


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_a_large_request_gives_the_allocators_free_pages_back():
    # 2,400 blocks of 64 KiB (below glibc's mmap threshold: they come from the heap), then
    # every one but each eighth freed: the free space is inside the heap, where free() alone
    # never returns it.
    blocks = [np.ones(8192) for _ in range(2400)]
    kept = blocks[::8]
    del blocks
    before = _rss_mb()
    assert memory.release_after(memory.RELEASE_AFTER_BYTES)
    # About 131 MiB was freed (2,100 x 64 KiB); most of it must leave the process.
    assert before - _rss_mb() > 80, (before, _rss_mb())
    assert len(kept) == 300


def test_only_a_request_of_the_threshold_or_more_trims(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: calls.append)
    assert not memory.release_after(memory.RELEASE_AFTER_BYTES - 1)
    assert calls == []
    assert memory.release_after(memory.RELEASE_AFTER_BYTES)
    assert calls == [0]


def test_rest_and_grpc_predictions_report_their_request_size(toy_server, monkeypatch):
    sizes = {"rest": [], "grpc": []}
    monkeypatch.setattr(rest_api, "release_after", sizes["rest"].append)
    monkeypatch.setattr(grpc_api, "release_after", sizes["grpc"].append)
    body = json.dumps({"signature_name": "double", "instances": [1, 2]}).encode()
    request = urllib.request.Request(f"{toy_server.rest_url}/v1/models/toy:predict", data=body)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == {"predictions": [2, 4]}
    assert sizes["rest"] == [len(body)]
    message = predict_pb2.PredictRequest()
    message.model_spec.name, message.model_spec.signature_name = "toy", "double"
    message.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([1, 5], np.int64)))
    with grpc.insecure_channel(toy_server.grpc_target) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(message, timeout=30)
    assert sizes["grpc"] == [message.ByteSize()]
