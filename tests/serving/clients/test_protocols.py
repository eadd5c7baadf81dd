"""The REST, gRPC and in-process clients against one toy servable: the same answers, the
same errors (no trained world)."""

import numpy as np
import pytest

from serving.clients.base import ModelServerError
from serving.clients.grpc_client import GrpcClient
from serving.clients.local import LocalClient
from serving.clients.rest import RestClient


@pytest.fixture(scope="module", params=["rest", "grpc", "local"])
def client(request, toy_server):
    if request.param == "rest":
        return RestClient(toy_server.rest_url, timeout=30)
    if request.param == "grpc":
        return GrpcClient(toy_server.grpc_target, timeout=30)
    return LocalClient(toy_server.registry)


def test_every_client_gets_the_same_outputs(client):
    outputs = client.predict("toy", {"x": np.array([[1, 2], [3, 4.5]], np.float32),
                                     "tag": [b"a", b"\x00b"]})
    assert sorted(outputs) == ["echo", "sum"]
    assert outputs["sum"].tolist() == [3.0, 7.5]
    assert [bytes(v) if not isinstance(v, str) else v.encode() for v in outputs["echo"]] == [
        b"a", b"\x00b"]


def test_a_single_output_keeps_its_name(client):
    # TF Serving's REST answer drops the name of a signature's only output; the REST client
    # reads it from the metadata so that every client answers alike.
    outputs, version = client.predict_versioned("toy", {"n": [2, 3]}, signature="double",
                                                version=1)
    assert list(outputs) == ["doubled"] and outputs["doubled"].tolist() == [4, 6]
    assert version == 1


def test_versions_are_listed(client):
    assert client.available_versions("toy") == [1]


@pytest.mark.parametrize("call, status", [
    (lambda c: c.predict("nope", {"n": [1]}), {404, "NOT_FOUND"}),
    (lambda c: c.predict("toy", {"n": [1]}, signature="double", version=5), {404, "NOT_FOUND"}),
    (lambda c: c.predict("toy", {"n": [1.5]}, signature="double"), {400, "INVALID_ARGUMENT"}),
    (lambda c: c.predict("toy", {"n": [1]}, signature="nope"), {400, "INVALID_ARGUMENT"}),
])
def test_refusals_are_model_server_errors_with_tf_serving_status(client, call, status):
    with pytest.raises(ModelServerError) as raised:
        call(client)
    assert raised.value.status in status


@pytest.mark.parametrize("make", [lambda port: RestClient(f"http://127.0.0.1:{port}", 2),
                                  lambda port: GrpcClient(f"127.0.0.1:{port}", 2)])
def test_a_server_that_is_not_there_is_unavailable(make):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # Free, and nothing listens once the probe closes.
    with pytest.raises(ModelServerError) as raised:
        make(port).available_versions("toy")
    assert raised.value.status == "UNAVAILABLE"


def test_the_grpc_client_refuses_a_token_that_could_break_its_metadata():
    with pytest.raises(ValueError, match="token must be a token of at least 16 characters"):
        GrpcClient("127.0.0.1:8500", token="a-token-with\nnewline-0123456789")
