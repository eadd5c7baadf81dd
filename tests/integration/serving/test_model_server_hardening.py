"""The model server under hostile input: every client error is TF Serving's 400 /
INVALID_ARGUMENT with a message (never 500 / UNKNOWN / INTERNAL, never a silent cast), the HTTP
layer refuses broken framing and slow clients, failed loads are logged and reported in model
status, and valid requests interleaved with all of it keep their answers. The last part fuzzes
the REST and gRPC decoders with hypothesis."""

import http.client
import json
import logging
import pathlib
import select
import shutil
import socket
import time
import urllib.error
import urllib.request
from email.message import Message

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from recs import features as F
from serving.http import HttpLimits
from serving.model_server import (ModelRegistry, ModelServer, ServingError, parse_predict_body,
                                  run_signature, tensor_from_proto)

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""A few seconds per property, the same examples every run (CI must not flake)."""
TOTAL_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def _value(value):
    return getattr(value, "item", lambda: value)()


def _columns(records: list[dict], keys: tuple[str, ...]) -> dict[str, list]:
    return {key: [_value(r[key]) for r in records] for key in keys}


def _request(url: str, body: bytes | None = None, method: str | None = None
             ) -> tuple[int, dict, Message]:
    """(status, JSON body, headers) of one request on a fresh connection."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def _raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Sends raw bytes and reads until the server closes the connection (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return received


def _status_and_body(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.fixture(scope="module")
def towers_query(tiny_world) -> dict[str, list]:
    return _columns(tiny_world.records[:2], F.QUERY_FEATURES)


@pytest.fixture(scope="module")
def ranker_batch(tiny_world) -> dict[str, list]:
    return _columns(tiny_world.records[:3], F.RANKER_FEATURES)


def _with(columns: dict[str, list], **changes) -> dict[str, list]:
    return {**columns, **changes}


# ----------------------------------------------------------------------------- REST bodies

def _rest_cases(towers_query: dict, ranker_batch: dict) -> list[tuple[str, str, bytes, str]]:
    """(case, path, body, a fragment the error message must hold)."""
    towers = "/v1/models/towers:predict"
    ranker = "/v1/models/ranker:predict"
    user = towers_query[F.USER_ID][0]

    def body(value) -> bytes:
        return json.dumps(value).encode()

    return [
        ("malformed b64", ranker, body({"signature_name": "serving_tf_example",
                                        "inputs": {"examples": [{"b64": "!!not base64!!"}]}}),
         "base64"),
        ("b64 of a number", ranker, body({"signature_name": "serving_tf_example",
                                          "instances": [{"examples": {"b64": 5}}]}), "base64"),
        ("ragged column", towers, body({"inputs": _with(towers_query, age=[30, [31, 32]])}),
         "ragged"),
        ("ragged instances", towers, body({"instances": [
            {**{k: v[0] for k, v in towers_query.items()}, "age": [30]},
            {**{k: v[0] for k, v in towers_query.items()}, "age": 30}]}), "ragged"),
        ("instances mixing objects and values", towers,
         body({"instances": [{k: v[0] for k, v in towers_query.items()}, 5]}), "mix"),
        ("int beyond int64", towers, body({"inputs": _with(towers_query, age=[2 ** 70, 30])}),
         "'age'"),
        ("negative int beyond int64", towers,
         body({"inputs": _with(towers_query, age=[-2 ** 63 - 1, 30])}), "'age'"),
        ("signature_name a list", towers, body({"signature_name": ["serving_default"],
                                                "inputs": towers_query}), "signature_name"),
        ("signature_name an object", towers, body({"signature_name": {"a": 1},
                                                   "inputs": towers_query}), "signature_name"),
        ("signature_name false", towers, body({"signature_name": False,
                                               "inputs": towers_query}), "signature_name"),
        ("body a list", towers, body([towers_query]), "Is not object"),
        ("body a number", towers, b"5", "Is not object"),
        ("body empty", towers, b"", "empty"),
        ("deep nesting", towers, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         "JSON Parse error"),
        ("deep nesting in a column", towers,
         body({"inputs": _with(towers_query, age=[[[[[[1]]]]]] * 2)}), "'age'"),
        ("NaN for an int", towers,
         json.dumps({"inputs": _with(towers_query, age=[float("nan"), 30])}).encode(), "'age'"),
        ("Infinity for an int", towers,
         json.dumps({"inputs": _with(towers_query, hour=[float("inf"), 3])}).encode(),
         "'hour'"),
        ("string for an int", towers, body({"inputs": _with(towers_query, age=["30", "31"])}),
         "'age'"),
        ("float for an int", towers, body({"inputs": _with(towers_query, age=[30.7, 31])}),
         "'age'"),
        ("whole float for an int", towers,
         body({"inputs": _with(towers_query, age=[30.0, 31])}), "'age'"),
        ("bool for an int", towers, body({"inputs": _with(towers_query, age=[True, 31])}),
         "'age'"),
        ("bool for a float", ranker,
         body({"inputs": _with(ranker_batch, popularity=[True, 1.0, 2.0])}), "'popularity'"),
        ("float beyond float32", ranker,
         body({"inputs": _with(ranker_batch, popularity=[1e39, 1.0, 2.0])}), "'popularity'"),
        ("number too big for a double", ranker,
         body({"inputs": _with(ranker_batch, popularity=[1.0, 1.0, 2.0])}).replace(
             b"[1.0, 1.0, 2.0]", b"[1e400, 1.0, 2.0]"), "JSON Parse error"),
        ("int not exact in float32", ranker,
         body({"inputs": _with(ranker_batch, popularity=[2 ** 24 + 1, 1.0, 2.0])}),
         "'popularity'"),
        ("number for a string", towers, body({"inputs": _with(towers_query, user_id=[5, 6])}),
         "'user_id'"),
        ("null for a string", towers, body({"inputs": _with(towers_query, user_id=[None, user])}),
         "'user_id'"),
        ("lone surrogate", towers,
         body({"inputs": _with(towers_query, user_id=["\ud800", user])}), "'user_id'"),
        ("invalid UTF-8", towers, body({"inputs": towers_query}).replace(
            user.encode(), b"\xff\xfe", 1), "JSON Parse error"),
        ("scalar for a batch", towers,
         body({"inputs": _with(towers_query, age=30)}), "'age'"),
        ("missing input", towers,
         body({"inputs": {k: v for k, v in towers_query.items() if k != F.AGE}}), "missing"),
        ("unexpected input", towers, body({"inputs": _with(towers_query, extra=[1, 2])}),
         "unexpected"),
        ("both formats", towers, body({"inputs": towers_query, "instances": [1]}),
         "exactly one of"),
        ("instances empty", towers, body({"instances": []}), "non-empty"),
    ]


@pytest.fixture(scope="module")
def rest_cases(towers_query, ranker_batch):
    return _rest_cases(towers_query, ranker_batch)


def test_every_rest_client_error_is_a_400_naming_the_problem(server, rest_cases):
    wrong = {}
    for case, path, body, fragment in rest_cases:
        status, answer, headers = _request(f"{server.rest_url}{path}", body)
        if (status != 400 or fragment not in answer.get("error", "")
                or headers.get("Content-Type") != "application/json"):
            wrong[case] = (status, answer)
    assert not wrong


def test_type_mismatches_are_refused_never_cast(server, towers_query):
    # 30.7 was answered as age 30 and true as 1.
    for age in ([30.7, 31.2], [True, False]):
        status, answer, _ = _request(f"{server.rest_url}/v1/models/towers:predict",
                                     json.dumps({"inputs": _with(towers_query,
                                                                 age=age)}).encode())
        assert status == 400 and "is not of expected type: int64" in answer["error"]


def test_nan_and_infinity_stay_accepted_for_floats(server, ranker_batch):
    # TF Serving reads these literals (rapidjson's kParseNanAndInfFlag) for float inputs.
    body = json.dumps({"inputs": _with(ranker_batch, popularity=[float("nan"), float("inf"),
                                                                 1.0])}).encode()
    assert b"NaN" in body
    status, answer, _ = _request(f"{server.rest_url}/v1/models/ranker:predict", body)
    assert status == 200 and len(answer["outputs"]) == 3


def test_both_json_parsers_read_a_body_alike(server, ranker_batch):
    # A NaN anywhere sends the body to the second parser; the values it reads are the same.
    # Beyond 64 bits an integer literal is a double (as TF Serving reads it): fine for a
    # float input; 2**24 + 1 is an integer float32 cannot hold exactly.
    for literal, expected in (("-1" + "0" * 30, 200), ("16777217", 400), ("12", 200)):
        for other in ("1.0", "NaN"):
            body = json.dumps({"inputs": _with(ranker_batch, popularity=["A", "B", 1.0])})
            body = body.replace('"A"', literal).replace('"B"', other)
            status, _, _ = _request(f"{server.rest_url}/v1/models/ranker:predict",
                                    body.encode())
            assert (literal, other, status) == (literal, other, expected)


def test_valid_requests_interleaved_with_hostile_ones_keep_their_answers(server, rest_cases,
                                                                         towers_query):
    valid = json.dumps({"inputs": towers_query}).encode()
    expected = _request(f"{server.rest_url}/v1/models/towers:predict", valid)[1]["outputs"]
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    answers = []
    for _, path, body, _ in rest_cases:
        # Both on one kept-alive connection: a refusal must not desynchronise it.
        connection.request("POST", path, body)
        hostile = connection.getresponse()
        assert hostile.status == 400 and "error" in json.loads(hostile.read())
        connection.request("POST", "/v1/models/towers:predict", valid)
        response = connection.getresponse()
        answers.append((response.status, json.loads(response.read())["outputs"]))
    connection.close()
    assert len(answers) == len(rest_cases)
    for status, outputs in answers:
        assert status == 200
        np.testing.assert_allclose(outputs, expected, rtol=1e-6)


# ----------------------------------------------------------------------------- REST routes

@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/v1/models/towers:predict", "POST"),
    ("DELETE", "/v1/models/towers", "GET"),
    ("PATCH", "/v1/models/towers/versions/1/metadata", "GET"),
    ("GET", "/v1/models/towers:predict", "POST"),
    ("OPTIONS", "/v1/models/towers", "GET"),
])
def test_other_methods_get_405_with_the_error_envelope(server, method, path, allowed):
    status, answer, headers = _request(f"{server.rest_url}{path}", b"{}", method=method)
    assert status == 405
    assert method in answer["error"] and headers["Allow"] == allowed


@pytest.mark.parametrize("path, message", [
    ("/v1/models", "Malformed request"),
    ("/v1/models/towers/versions/one", "Malformed request"),
    ("/v1/models/towers/versions/1/labels/x", "Malformed request"),
    ("/v2/models/towers", "Malformed request"),
    ("/", "Malformed request"),
    ("/v1/models/towers/versions/99999999999999999999", "Failed to convert version"),
])
def test_malformed_routes_get_400(server, path, message):
    status, answer, _ = _request(f"{server.rest_url}{path}")
    assert status == 400 and message in answer["error"]


def test_rest_paths_are_case_insensitive_like_tf_serving(server):
    status, answer, _ = _request(f"{server.rest_url}/V1/Models/towers/VERSIONS/1/Metadata")
    assert status == 200 and answer["model_spec"]["version"] == "1"


@pytest.mark.parametrize("length", [b"abc", b"-1", b"-5", b"1e3", b"5, 6"])
def test_an_invalid_content_length_is_a_400(server, length):
    # "-1" made the old server read until the client closed; "abc" was a 500.
    response = _raw(server.rest_port, b"POST /v1/models/towers:predict HTTP/1.1\r\n"
                                      b"Host: x\r\nContent-Length: " + length + b"\r\n\r\n{}")
    status, answer = _status_and_body(response)
    assert status == 400 and "error" in answer


def test_the_body_cap_holds_for_chunked_bodies(server):
    cap = HttpLimits().max_body_bytes
    chunk = b"[" * (1 << 20)
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/towers:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent = 0
        # Stop sending once an answer is there: writing on would reset the connection.
        while sent <= cap + len(chunk) and not select.select([sock], [], [], 0)[0]:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        response = b""
        try:
            while part := sock.recv(65536):
                response += part
        except ConnectionResetError:
            pass
    status, answer = _status_and_body(response)
    assert status == 413 and "error" in answer


@pytest.fixture(scope="module")
def strict_server(tiny_world):
    """A model server with short read timeouts and small caps."""
    registry = ModelRegistry(str(tiny_world.serving_dir), ("towers",))
    registry.load()
    limits = HttpLimits(header_timeout_s=0.3, body_timeout_s=0.3, keep_alive_s=1.0,
                        max_header_bytes=2048, max_body_bytes=64 * 1024)
    with ModelServer(registry, http_limits=limits) as running:
        yield running


def test_a_client_too_slow_with_its_head_is_cut_with_408(strict_server):
    response = _raw(strict_server.rest_port, b"GET /v1/models/towers HTTP/1.1\r\nHost:")
    status, answer = _status_and_body(response)
    assert status == 408 and "request head" in answer["error"]


def test_a_client_too_slow_with_its_body_is_cut_with_408(strict_server):
    response = _raw(strict_server.rest_port, b"POST /v1/models/towers:predict HTTP/1.1\r\n"
                                             b"Host: x\r\nContent-Length: 100\r\n\r\n{\"in")
    status, answer = _status_and_body(response)
    assert status == 408 and "request body" in answer["error"]


def test_oversized_heads_and_bodies_are_refused(strict_server):
    head = _raw(strict_server.rest_port, b"GET /v1/models/towers HTTP/1.1\r\nHost: x\r\n"
                                         b"X-Pad: " + b"a" * 4096 + b"\r\n\r\n")
    body = _raw(strict_server.rest_port, b"POST /v1/models/towers:predict HTTP/1.1\r\n"
                                         b"Host: x\r\nContent-Length: 100000\r\n\r\n")
    assert _status_and_body(head)[0] == 431
    assert _status_and_body(body)[0] == 413
    assert _request(f"{strict_server.rest_url}/v1/models/towers")[0] == 200


# ----------------------------------------------------------------------------- gRPC

@pytest.fixture(scope="module")
def channel(server):
    opened = grpc.insecure_channel(server.grpc_target)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _ranker_request(ranker_batch: dict, **replaced: tensor_pb2.TensorProto
                    ) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ranker"
    for key, values in ranker_batch.items():
        dtype = F.RAW_FEATURE_DTYPES[key]
        request.inputs[key].CopyFrom(replaced.get(key) or tf.make_tensor_proto(
            np.array(values, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)))
    return request


def _proto(**fields) -> tensor_pb2.TensorProto:
    shape = fields.pop("shape", [3])
    proto = tensor_pb2.TensorProto(**fields)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


GRPC_CASES = [
    ("invalid dtype enum", "age", _proto(dtype=999, int64_val=[1, 2, 3]), "invalid dtype"),
    ("DT_RESOURCE", "age", _proto(dtype=types_pb2.DT_RESOURCE), "DT_RESOURCE"),
    ("DT_VARIANT", "age", _proto(dtype=types_pb2.DT_VARIANT), "DT_VARIANT"),
    ("float for int64", "age", _proto(dtype=types_pb2.DT_FLOAT, float_val=[30.7, 31, 32]),
     "DT_FLOAT"),
    ("int32 for int64", "age", _proto(dtype=types_pb2.DT_INT32, int_val=[30, 31, 32]),
     "DT_INT32"),
    ("double for float", "popularity",
     _proto(dtype=types_pb2.DT_DOUBLE, double_val=[1.0, 2.0, 3.0]), "DT_DOUBLE"),
    ("bool for int64", "age", _proto(dtype=types_pb2.DT_BOOL, bool_val=[True] * 3), "DT_BOOL"),
    ("content too short", "age", _proto(dtype=types_pb2.DT_INT64, tensor_content=b"\0" * 20),
     "tensor_content"),
    ("content too long", "popularity",
     _proto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\0" * 13), "tensor_content"),
    ("content for strings", "user_id",
     _proto(dtype=types_pb2.DT_STRING, tensor_content=b"abc"), "string_val"),
    ("too many values", "age", _proto(dtype=types_pb2.DT_INT64, int64_val=[1, 2, 3, 4]),
     "4 values"),
    ("too few values", "user_id", _proto(dtype=types_pb2.DT_STRING, string_val=[b"a", b"b"]),
     "2 values"),
    ("no values", "age", _proto(dtype=types_pb2.DT_INT64), "0 values"),
    ("negative dimension", "age", _proto(dtype=types_pb2.DT_INT64, int64_val=[1], shape=[-3]),
     "sizes >= 0"),
    ("absurd shape", "age", _proto(dtype=types_pb2.DT_INT64, int64_val=[1], shape=[2 ** 40]),
     "at most"),
    ("absurd shape with a zero", "age",
     _proto(dtype=types_pb2.DT_INT64, shape=[0, 2 ** 62, 2 ** 62]), "at most"),
    ("unknown rank", "age", tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT64, int64_val=[1], tensor_shape={"unknown_rank": True}),
     "known"),
    ("rank 2 for rank 1", "age",
     _proto(dtype=types_pb2.DT_INT64, int64_val=[1] * 6, shape=[3, 2]), "shape"),
]


@pytest.mark.parametrize("case, key, proto, fragment", GRPC_CASES,
                         ids=[case[0] for case in GRPC_CASES])
def test_bad_tensor_protos_are_invalid_argument_naming_the_input(stub, ranker_batch, case,
                                                                 key, proto, fragment):
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(_ranker_request(ranker_batch, **{key: proto}), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"'{key}'" in error.value.details() and fragment in error.value.details()


def test_a_filled_tensor_proto_is_accepted_as_tf_writes_it(stub, ranker_batch):
    # tf.make_tensor_proto(30, shape=[3]) writes one value for the three.
    response = stub.Predict(_ranker_request(
        ranker_batch, age=tf.make_tensor_proto(30, dtype=tf.int64, shape=[3])), timeout=30)
    assert tf.make_ndarray(response.outputs["probability"]).shape == (3,)


@pytest.mark.parametrize("data", [
    b"\xff\xff\xff\xff", b"\x0a\x05\x0a\x03\xff\xfe\xfd",  # Garbage; invalid UTF-8 model name.
    predict_pb2.PredictRequest(model_spec={"name": "ranker"}).SerializeToString()[:-1] + b"\x80",
])
def test_malformed_messages_are_invalid_argument_not_internal(server, data):
    channel = grpc.insecure_channel(server.grpc_target)
    predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as error:
        predict(data, timeout=30)
    channel.close()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_output_filter_selects_outputs_and_refuses_unknown_ones(tiny_world, server):
    query = _columns(tiny_world.records[:1], F.QUERY_FEATURES)
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest(model_spec={"name": "retrieval_exact"},
                                         output_filter=["scores"])
    for key, values in query.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(np.array(values)))
    assert set(stub.Predict(request, timeout=30).outputs) == {"scores"}
    request.output_filter[:] = ["scores", "bogus"]
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    channel.close()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bogus" in error.value.details()


def test_grpc_keeps_answering_valid_requests_between_hostile_ones(stub, ranker_batch):
    valid = _ranker_request(ranker_batch)
    expected = tf.make_ndarray(stub.Predict(valid, timeout=30).outputs["probability"])
    for _, key, proto, _ in GRPC_CASES:
        with pytest.raises(grpc.RpcError):
            stub.Predict(_ranker_request(ranker_batch, **{key: proto}), timeout=30)
        answer = tf.make_ndarray(stub.Predict(valid, timeout=30).outputs["probability"])
        np.testing.assert_allclose(answer, expected, rtol=1e-6)


# ----------------------------------------------------------------------------- load failures

@pytest.fixture
def broken_registry(tiny_world, tmp_path) -> ModelRegistry:
    """Serves ranker version 1; version 2, pushed after, is not a SavedModel."""
    shutil.copytree(tiny_world.serving_dir / "ranker" / "1", tmp_path / "ranker" / "1")
    registry = ModelRegistry(str(tmp_path), ("ranker",))
    registry.load()
    (tmp_path / "ranker" / "2").mkdir()
    (tmp_path / "ranker" / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return registry


def _load_error_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "recs.model_server" and r.levelno == logging.ERROR]


def test_a_load_failure_is_logged_once_with_model_version_and_error(broken_registry, caplog):
    caplog.set_level(logging.ERROR, logger="recs.model_server")
    assert broken_registry.refresh() == {"ranker": [1]}
    assert broken_registry.refresh() == {"ranker": [1]}  # Retried, not logged again.
    (record,) = _load_error_logs(caplog)
    message = record.getMessage()
    assert "ranker" in message and "version 2" in message and "Cannot parse file" in message
    version_2 = pathlib.Path(broken_registry.base_dir) / "ranker" / "2"
    shutil.rmtree(version_2)
    (version_2 / "saved_model.pb").mkdir(parents=True)  # Another error: logged too.
    broken_registry.refresh()
    assert len(_load_error_logs(caplog)) == 2
    assert _load_error_logs(caplog)[1].getMessage() != message


def test_a_failed_version_is_reported_as_tf_serving_does_and_the_rest_still_serve(
        broken_registry, ranker_batch):
    broken_registry.refresh()
    with ModelServer(broken_registry) as server:
        status, body, _ = _request(f"{server.rest_url}/v1/models/ranker")
        assert status == 200
        available, failed = body["model_version_status"]
        assert available == {"version": "1", "state": "AVAILABLE",
                             "status": {"error_code": "OK", "error_message": ""}}
        assert failed["version"] == "2" and failed["state"] == "END"
        assert failed["status"]["error_code"] == "UNKNOWN"
        assert "Cannot parse file" in failed["status"]["error_message"]
        status, body, _ = _request(f"{server.rest_url}/v1/models/ranker/versions/2")
        assert status == 200 and body["model_version_status"] == [failed]

        channel = grpc.insecure_channel(server.grpc_target)
        request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "ranker"})
        statuses = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=30).model_version_status
        end = get_model_status_pb2.ModelVersionStatus.END
        assert [(s.version, s.state) for s in statuses] == [
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (2, end)]
        assert statuses[1].status.error_code == grpc.StatusCode.UNKNOWN.value[0]
        assert "Cannot parse file" in statuses[1].status.error_message
        response = _ranker_predict(channel, ranker_batch)
        channel.close()
        assert response.model_spec.version.value == 1


def _ranker_predict(channel: grpc.Channel, ranker_batch: dict) -> predict_pb2.PredictResponse:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.Predict(_ranker_request(ranker_batch), timeout=30)


def test_the_poller_survives_a_failing_refresh(broken_registry, monkeypatch, caplog):
    import serving.model_server.registry as model_server

    registry, base = broken_registry, pathlib.Path(broken_registry.base_dir)
    real, calls = model_server.versions_on_disk, []

    def flaky(base_dir: str, name: str) -> list[int]:
        calls.append(name)
        if len(calls) == 1:
            raise OSError("the base directory is unreachable for a moment")
        return real(base_dir, name)

    monkeypatch.setattr(model_server, "versions_on_disk", flaky)
    shutil.rmtree(base / "ranker" / "2")
    shutil.copytree(base / "ranker" / "1", base / "ranker" / "3")
    registry.start_polling(0.05)
    deadline = time.monotonic() + 120
    while registry.versions("ranker") != [3] and time.monotonic() < deadline:
        time.sleep(0.05)
    registry.stop_polling()
    assert registry.versions("ranker") == [3]
    assert any(r.exc_info and "unreachable" in str(r.exc_info[1])
               for r in _load_error_logs(caplog))


# ----------------------------------------------------------------------------- fuzzing

@pytest.fixture(scope="module")
def ranker(server):
    return server.registry.get("ranker")


_LEAVES = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(st.characters(exclude_categories=()), max_size=8)  # Surrogates too.
           | st.fixed_dictionaries({"b64": st.text(max_size=8)})
           | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_JSON = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


def _column(key: str, size: int) -> st.SearchStrategy:
    """Mostly the right type for `key`, often something else."""
    dtype = F.RAW_FEATURE_DTYPES[key]
    right = {tf.string: st.text(max_size=6), tf.int64: st.integers(0, 100),
             tf.float32: st.floats(0, 100, width=32)}[dtype]
    return st.one_of(st.lists(right, min_size=size, max_size=size),
                     st.lists(right | _LEAVES, min_size=size, max_size=size), _JSON)


@st.composite
def _predict_bodies(draw) -> dict:
    size = draw(st.integers(1, 3))
    keys = draw(st.lists(st.sampled_from(F.RANKER_FEATURES + ("extra",)), unique=True)
                | st.just(list(F.RANKER_FEATURES)))
    columns = {key: draw(_column(key, size) if key != "extra" else _JSON) for key in keys}
    if draw(st.booleans()):
        body = {"inputs": columns if draw(st.integers(0, 9)) else draw(_JSON)}
    else:
        rows = [{key: column[i] if isinstance(column, list) and i < len(column) else column
                 for key, column in columns.items()} for i in range(size)]
        body = {"instances": rows if draw(st.integers(0, 9)) else draw(_JSON)}
    if not draw(st.integers(0, 4)):
        body["signature_name"] = draw(st.sampled_from(["serving_default", "serving_tf_example",
                                                       "nope"]) | _LEAVES)
    return body


@FUZZ
@given(body=_predict_bodies())
def test_fuzz_rest_conversion_is_total_against_the_ranker(ranker, body):
    signature = body.get("signature_name", "")
    try:
        if not isinstance(signature, str):
            return  # The HTTP handler refuses it first (tested above).
        inputs, _ = parse_predict_body(body, ranker.input_specs(signature))
        outputs = run_signature(ranker, signature, inputs)
    except ServingError as error:
        assert error.code in TOTAL_CODES and error.message
        return
    assert list(outputs) == ["probability"]
    assert outputs["probability"].shape == next(iter(inputs.values())).shape


@FUZZ
@given(data=st.binary(max_size=300) | _JSON.map(lambda v: json.dumps({"inputs": v}).encode()))
def test_fuzz_rest_bodies_over_http_get_200_or_a_4xx_envelope(server, data):
    status, answer, _ = _request(f"{server.rest_url}/v1/models/towers:predict", data)
    assert status == 200 or (status in (400, 404) and answer["error"])


_DTYPES = st.sampled_from(sorted(types_pb2.DataType.values())) | st.integers(-5, 2 ** 31 - 1)


@st.composite
def _tensor_protos(draw) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=draw(_DTYPES | st.sampled_from(
        [types_pb2.DT_INT64, types_pb2.DT_FLOAT, types_pb2.DT_STRING])))
    if draw(st.integers(0, 9)) == 0:
        proto.tensor_shape.unknown_rank = True
    for size in draw(st.lists(st.integers(-3, 5) | st.integers(-2 ** 63, 2 ** 63 - 1),
                              max_size=3)):
        proto.tensor_shape.dim.add().size = size
    if draw(st.booleans()):
        proto.tensor_content = draw(st.binary(max_size=48))
    proto.int64_val.extend(draw(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=6)))
    proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=6)))
    proto.string_val.extend(draw(st.lists(st.binary(max_size=4), max_size=6)))
    proto.int_val.extend(draw(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=6)))
    return proto


@FUZZ
@given(proto=_tensor_protos(), key=st.sampled_from([F.AGE, F.POPULARITY, F.USER_ID]))
def test_fuzz_tensor_proto_decoding_is_total(ranker, proto, key):
    spec = ranker.input_specs("")[key]
    try:
        array = tensor_from_proto(key, proto, spec)
    except ServingError as error:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and key in error.message
        return
    assert array.dtype == spec.dtype.as_numpy_dtype and spec.shape.is_compatible_with(
        array.shape)


@FUZZ
@given(data=st.binary(max_size=200) | _tensor_protos().map(
    lambda proto: predict_pb2.PredictRequest(model_spec={"name": "towers"},
                                             inputs={F.AGE: proto}).SerializeToString()))
def test_fuzz_grpc_predict_messages_get_a_result_or_a_client_error(channel, data):
    for method in ("/tensorflow.serving.PredictionService/Predict",
                   "/tensorflow.serving.PredictionService/GetModelMetadata",
                   "/tensorflow.serving.ModelService/GetModelStatus"):
        try:
            channel.unary_unary(method)(data, timeout=30)
        except grpc.RpcError as error:
            assert error.code() in TOTAL_CODES, (method, error.details())


def test_metadata_and_status_errors_are_client_errors(server):
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "towers"}, metadata_field=["signature_def", "bogus"])
    with pytest.raises(grpc.RpcError) as error:
        stub.GetModelMetadata(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = model_service_pb2_grpc.ModelServiceStub(channel)
    for spec in ({"name": "towers", "version": {"value": 7}}, {"name": "nope"}):
        with pytest.raises(grpc.RpcError) as error:
            status.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec),
                                  timeout=30)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()
