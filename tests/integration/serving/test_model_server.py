"""The local model server against TF Serving's documented REST and gRPC behaviour, and the
recommender on top of it."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from recs import features as F
from recs.evaluation import exact_top_k
from serving.clients import GrpcClient, ModelServerError, RestClient
from serving.clients.local import LocalClient
from serving.model_server import ModelRegistry, ModelServer, ServingError, parse_predict_body
from serving.model_server.config import ModelServingConfig
from serving.online.fresh import FreshTitles, merge_top_k
from serving.online.recommender import Recommender, UnknownUserError, load_catalogue
from serving.online.store import load_store

MODELS = ("ranker", "retrieval", "retrieval_exact", "towers")


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


def test_parse_predict_body_rejects_ragged_instances():
    specs = {"a": tf.TensorSpec([None], tf.int64), "b": tf.TensorSpec([None], tf.int64)}
    with pytest.raises(ServingError, match="same keys"):
        parse_predict_body({"instances": [{"a": 1}, {"b": 2}]}, specs)


def test_models_config_names_every_model(tmp_path):
    path = ModelServingConfig(base_dir="/models", models=MODELS).write_files(
        str(tmp_path))["models.config"]
    text = (tmp_path / "models.config").read_text()
    assert path.endswith("models.config")
    for name in MODELS:
        assert f'name: "{name}"' in text and f'base_path: "/models/{name}"' in text


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_recommender_retrieves_ranks_and_filters(server, store, tiny_world, protocol):
    client = (RestClient(server.rest_url) if protocol == "rest"
              else GrpcClient(server.grpc_target))
    catalogue = load_catalogue(str(tiny_world.serving_dir), "retrieval")
    recommender = Recommender(client, store, catalogue)
    user = next(r[F.USER_ID] for r in tiny_world.records if r[F.COMPLETED] == 1)
    finished = store.finished(user)
    items = recommender.recommend(user, k=5)
    assert 1 <= len(items) <= 5
    assert not finished & {item.title_id for item in items}
    scores = [item.score for item in items]
    assert scores == sorted(scores, reverse=True)
    assert all(item.title_id in catalogue for item in items)


def test_recommender_rejects_bad_requests(server, store, tiny_world):
    recommender = Recommender(RestClient(server.rest_url), store,
                              load_catalogue(str(tiny_world.serving_dir), "retrieval"))
    with pytest.raises(UnknownUserError, match="unknown user_id 'ghost'"):
        recommender.recommend("ghost")
    with pytest.raises(ValueError, match="k must be between 1 and 100; received 0"):
        recommender.recommend("u000001", k=0)


def _fresh_copies(catalogue: dict) -> list[dict]:
    """Every catalogue title again under a new id (the towers never saw these ids)."""
    return [{**row, F.TITLE_ID: f"new-{title}"} for title, row in catalogue.items()]


@pytest.fixture
def with_fresh(server, store, tiny_world) -> tuple[Recommender, FreshTitles, dict]:
    """A recommender over the exact index with an empty fresh-title side index."""
    client = RestClient(server.rest_url)
    catalogue = load_catalogue(str(tiny_world.serving_dir), "retrieval_exact")
    fresh = FreshTitles(client)
    return (Recommender(client, store, catalogue, retrieval_model="retrieval_exact",
                        recommender_model="recommender_exact", fresh=fresh), fresh, catalogue)


def test_fresh_titles_are_searchable_at_once_and_merged_by_score(with_fresh, tiny_world):
    recommender, fresh, catalogue = with_fresh
    client = recommender.client
    users = sorted({record[F.USER_ID] for record in tiny_world.records})
    before = {user: recommender.retrieve(user) for user in users}
    fresh.publish(_fresh_copies(catalogue))
    assert len(fresh) == len(catalogue)

    # Oracle: exact search over indexed + fresh embeddings from the served towers.
    rows = list(catalogue.values()) + _fresh_copies(catalogue)
    columns = {key: [row[key] for row in rows] for key in F.CANDIDATE_FEATURES}
    embeddings = client.predict("towers", columns, signature="candidate_embedding")["embedding"]
    merged_fresh = 0
    for user in users:
        merged = recommender.retrieve(user)
        query = client.predict("retrieval_exact", recommender._query(user, "tv", 20))
        top = exact_top_k(embeddings.astype("f4"), query["query_embedding"].astype("f4"),
                          len(before[user]))[0]
        assert [title for title, _ in merged] == [rows[i][F.TITLE_ID] for i in top]
        merged_fresh += sum(title.startswith("new-") for title, _ in merged)
    # A fresh copy has no item-to-item row (a new id), so it can lose to its indexed twin;
    # across the users some still win a place, and each is merged where its score puts it.
    assert merged_fresh > 0

    recommendations = recommender.recommend(user, k=len(before))
    assert {item.title_id for item in recommendations} <= {title for title, _ in merged}


def test_taken_down_titles_leave_both_indexes(with_fresh, tiny_world):
    recommender, fresh, catalogue = with_fresh
    user = tiny_world.records[0][F.USER_ID]
    fresh.publish(_fresh_copies(catalogue)[:5])
    candidates = [title for title, _ in recommender.retrieve(user)]
    indexed = next(title for title in candidates if not title.startswith("new-"))
    fresh.take_down(indexed)
    fresh.take_down("new-" + next(iter(catalogue)))
    after = [title for title, _ in recommender.retrieve(user)]
    assert indexed not in after and "new-" + next(iter(catalogue)) not in after
    fresh.forget_indexed({f"new-{title}" for title in catalogue})
    assert len(fresh) == 0


def test_publishing_a_title_without_its_features_is_refused(server):
    with pytest.raises(ValueError, match="lacks candidate features"):
        FreshTitles(RestClient(server.rest_url)).publish([{F.TITLE_ID: "t-new"}])


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


def test_merge_top_k_orders_by_score_dedupes_and_excludes():
    indexed = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    fresh = [("n", 0.7), ("b", 0.6), ("x", 0.95)]
    # x is taken down; b keeps its higher score.
    assert merge_top_k(indexed, fresh, 3, exclude={"x"}) == [("a", 0.9), ("n", 0.7),
                                                              ("b", 0.6)]
    assert merge_top_k([], [], 3) == []


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
