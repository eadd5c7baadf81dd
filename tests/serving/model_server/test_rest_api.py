"""The REST router and application: TF Serving's paths, methods and status codes, over a toy
servable (no trained world)."""

import json
import urllib.error
import urllib.request

import pytest

from serving.model_server.errors import ServingError
from serving.model_server.rest_api import RestRoute, parse_route


def _request(url: str, body: dict | bytes | None = None, method: str | None = None
             ) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


@pytest.mark.parametrize("method, path, route", [
    ("GET", "/v1/models/toy", RestRoute("toy", None, "", "")),
    ("GET", "/v1/models/toy/versions/3", RestRoute("toy", 3, "", "")),
    ("GET", "/v1/models/toy/labels/canary/metadata", RestRoute("toy", None, "canary",
                                                                "/metadata")),
    ("POST", "/V1/Models/toy/VERSIONS/2:PREDICT", RestRoute("toy", 2, "", ":predict")),
    ("POST", f"/v1/models/toy/versions/{2 ** 63 - 1}:predict",
     RestRoute("toy", 2 ** 63 - 1, "", ":predict")),
])
def test_routes_are_parsed_as_tf_serving_reads_them(method, path, route):
    assert parse_route(method, path) == route
    assert route.method == ("POST" if route.tail == ":predict" else "GET")


@pytest.mark.parametrize("path, message", [
    ("/v2/models/toy", "Malformed request"),
    ("/v1/models/toy/versions/x", "Malformed request"),
    ("/v1/models/toy/versions/\u0663", "Malformed request"),  # An Arabic-Indic digit.
    ("/v1/models/toy/versions/-1", "Malformed request"),
    ("/v1/models/toy:explain", "Malformed request"),
    (f"/v1/models/toy/versions/{2 ** 63}", "Failed to convert version"),
    ("/v1/models/toy/versions/" + "9" * 5000, "Failed to convert version"),
])
def test_other_paths_are_invalid_argument(path, message):
    with pytest.raises(ServingError, match=message) as raised:
        parse_route("GET", path)
    assert raised.value.http_status == 400


def test_status_metadata_and_predict_answer_as_tf_serving(toy_server):
    url = f"{toy_server.rest_url}/v1/models/toy"
    assert _request(url)[:2] == (200, {"model_version_status": [{
        "version": "1", "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]})
    status, metadata, _ = _request(f"{url}/versions/1/metadata")
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and {"serving_default", "double"} <= set(signatures)
    assert signatures["double"]["inputs"]["n"]["dtype"] == "DT_INT64"
    status, answer, _ = _request(f"{url}:predict", {"inputs": {"x": [[1, 2], [3, 4.5]],
                                                               "tag": ["a", "b"]}})
    assert status == 200 and answer == {"outputs": {"sum": [3.0, 7.5], "echo": ["a", "b"]}}
    status, answer, _ = _request(f"{url}:predict", {"signature_name": "double",
                                                    "instances": [1, 2]})
    assert status == 200 and answer == {"predictions": [2, 4]}


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("/v1/models/toy/versions/9", None, 404, "Could not find version 9"),
    ("/v1/models/toy/labels/canary", None, 400, "Unrecognized servable version label"),
    ("/v1/models/toy/versions/" + "9" * 5000, None, 400, "Failed to convert version"),
    ("/v1/models/toy:predict", b"[1]", 400, "Is not object"),
    ("/v1/models/toy:predict", b"{\"signature_name\": 5, \"inputs\": 1}", 400,
     "'signature_name' key must be a string"),
    ("/v1/models/toy:predict", b"{\"signature_name\": \"nope\", \"inputs\": 1}", 400,
     "not found in signature def"),
    ("/v1/models/toy:predict", b"", 400, "The document is empty"),
])
def test_refusals_carry_tf_serving_status_and_error_envelope(toy_server, path, body, status,
                                                             message):
    answered, answer, headers = _request(f"{toy_server.rest_url}{path}", body)
    assert answered == status and message in answer["error"]
    assert headers["content-type"] == "application/json"


def test_a_wrong_method_is_405_naming_the_allowed_one(toy_server):
    status, answer, headers = _request(f"{toy_server.rest_url}/v1/models/toy:predict")
    assert status == 405 and headers["allow"] == "POST" and "use POST" in answer["error"]
    status, _, headers = _request(f"{toy_server.rest_url}/v1/models/toy", b"{}", method="PUT")
    assert status == 405 and headers["allow"] == "GET"
