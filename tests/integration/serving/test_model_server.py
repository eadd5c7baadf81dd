"""The local model server over the tiny world's models against TF Serving's documented REST
and gRPC behaviour, through the REST, gRPC and in-process clients."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from recs import features as F
from serving.clients import GrpcClient, ModelServerError, RestClient
from serving.clients.local import LocalClient
from serving.model_server.config import ModelServingConfig
from serving.online.recommender import load_catalogue


def _http(url: str, body: object | None = None) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else
                                       json.dumps(body).encode())
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data)) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _query_row(record: dict) -> dict:
    """One request row as plain JSON values."""
    return {key: getattr(record[key], "item", lambda: record[key])()
            for key in F.QUERY_FEATURES}


def test_status_and_metadata_follow_tf_serving(server):
    status, body = _http(f"{server.rest_url}/v1/models/towers")
    assert status == 200
    assert body["model_version_status"] == [{"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK",
                                                         "error_message": ""}}]
    status, body = _http(f"{server.rest_url}/v1/models/towers/versions/1/metadata")
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and body["model_spec"]["version"] == "1"
    assert signatures["query_embedding"]["inputs"][F.USER_ID]["dtype"] == "DT_STRING"
    assert signatures["query_embedding"]["inputs"][F.AGE]["dtype"] == "DT_INT64"


def test_row_and_columnar_predict_agree(server, tiny_world):
    rows = [_query_row(r) for r in tiny_world.records[:3]]
    status, by_rows = _http(f"{server.rest_url}/v1/models/towers:predict", {"instances": rows})
    assert status == 200
    catalogue = load_catalogue(str(tiny_world.serving_dir), "retrieval_exact")
    title = next(iter(catalogue.values()))
    status, candidate = _http(f"{server.rest_url}/v1/models/towers:predict",
                              {"signature_name": "candidate_embedding",
                               "instances": [{key: title[key] for key in F.CANDIDATE_FEATURES}]})
    width = np.array(candidate["predictions"]).shape[1]
    assert status == 200 and width >= 16  # The towers' 16, plus any attached parts.
    assert np.array(by_rows["predictions"]).shape == (3, width)
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    status, by_columns = _http(f"{server.rest_url}/v1/models/towers/versions/1:predict",
                               {"inputs": columns, "signature_name": "query_embedding"})
    assert status == 200
    np.testing.assert_allclose(by_rows["predictions"], by_columns["outputs"], rtol=1e-5)


def test_multi_output_rows_are_objects(server, tiny_world):
    rows = [_query_row(r) for r in tiny_world.records[:2]]
    status, body = _http(f"{server.rest_url}/v1/models/retrieval:predict", {"instances": rows})
    assert status == 200
    assert set(body["predictions"][0]) == {"scores", "title_ids", "query_embedding"}
    assert len(body["predictions"][0]["title_ids"]) == 10


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/models/nope:predict", {"instances": [1]}, 404, "Servable not found"),
    ("/v1/models/towers/versions/9:predict", {"instances": [1]}, 404, "Specific(towers, 9)"),
    ("/v1/models/towers:predict", b"{not json", 400, "JSON Parse error"),
    ("/v1/models/towers:predict", {"inputs": {}, "instances": []}, 400, "exactly one of"),
    ("/v1/models/towers:predict", {"inputs": {"user_id": ["u"]}}, 400, "missing"),
    ("/v1/models/towers:predict", {"instances": [{"user_id": "u"}],
                                   "signature_name": "bogus"}, 400, "bogus"),
    ("/v1/models/towers:explain", {"instances": [1]}, 400, "Malformed request"),
])
def test_rest_errors_use_tf_serving_codes(server, path, body, status, message):
    code, answer = _http(f"{server.rest_url}{path}", body)
    assert code == status
    assert message in answer["error"]


def test_wrong_dtype_is_a_400_naming_the_input(server, tiny_world):
    row = _query_row(tiny_world.records[0])
    columns = {key: [value] for key, value in row.items()}
    columns[F.AGE] = ["thirty"]
    code, answer = _http(f"{server.rest_url}/v1/models/towers:predict", {"inputs": columns})
    assert code == 400 and "'age'" in answer["error"]


def test_the_in_process_client_answers_like_rest_and_refuses_like_it(server, tiny_world):
    rows = [_query_row(r) for r in tiny_world.records[:3]]
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    local = LocalClient(server.registry)
    outputs, version = local.predict_versioned("towers", columns, "query_embedding")
    over_rest = RestClient(server.rest_url).predict("towers", columns, "query_embedding")
    (key,) = over_rest  # The signature's one output, under the name the model gives it.
    assert version == 1 and set(outputs) == {key}
    np.testing.assert_allclose(outputs[key], over_rest[key], rtol=1e-5)
    assert local.available_versions("towers") == [1] and local.available_versions("nope") == []
    with pytest.raises(ModelServerError) as refused:
        local.predict("nope", columns, "query_embedding")
    assert refused.value.status == "NOT_FOUND"
    with pytest.raises(ModelServerError) as refused:
        local.predict("towers", {**columns, F.AGE: ["old"] * 3}, "query_embedding")
    assert refused.value.status == "INVALID_ARGUMENT"


def test_grpc_predict_matches_rest(server, tiny_world):
    rows = [_query_row(r) for r in tiny_world.records[:2]]
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    via_grpc = GrpcClient(server.grpc_target).predict("towers", columns)
    via_rest = RestClient(server.rest_url).predict("towers", columns)
    np.testing.assert_allclose(via_grpc["embedding"], via_rest["embedding"], rtol=1e-5)


def test_raw_grpc_metadata_and_errors(server):
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "ranker"
    response = stub.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "serving_tf_example"} <= set(signatures.signature_def)
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "ranker"
    bad.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.array([b"u1"])))
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(bad, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ModelServerError, match="NOT_FOUND"):
        GrpcClient(server.grpc_target).status("nope")


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_serialized_tf_examples_score_like_raw_features_through_both_clients(server, tiny_world,
                                                                             protocol):
    from recs.features import to_example

    records = tiny_world.records[:4]
    client = (RestClient(server.rest_url) if protocol == "rest"
              else GrpcClient(server.grpc_target))
    # Serialized tf.Examples are binary (REST sends them as {"b64": ...}) and may end in NUL
    # bytes, which must survive the trip.
    examples = [to_example(r) for r in records]
    by_example = client.predict("ranker", {"examples": examples},
                                signature="serving_tf_example")["probability"]
    by_features = client.predict("ranker", {
        key: [getattr(r[key], "item", lambda: r[key])() for r in records]
        for key in F.RANKER_FEATURES})["probability"]
    np.testing.assert_allclose(by_example, by_features, rtol=1e-5)


def test_a_started_server_serves_until_stopped_held_or_not(tiny_world):
    import gc

    from serving.model_server import server as model_server

    target = model_server.serve_models(ModelServingConfig.local(
        str(tiny_world.serving_dir), models=("towers",))).grpc_target
    gc.collect()  # A collected grpc.Server would stop answering.
    try:
        assert GrpcClient(target).available_versions("towers", timeout=10) == [1]
    finally:
        for running in [s for s in model_server._RUNNING if s.grpc_target == target]:
            running.stop()
    assert not [s for s in model_server._RUNNING if s.grpc_target == target]
