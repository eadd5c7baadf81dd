"""TF Serving's REST API as an ASGI application: the router (paths and methods), status and
metadata answered on the event loop, predictions on the worker pool through the JSON codec."""

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import re
from typing import Any, Callable

from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.http import error_body
from serving.model_server.errors import ServingError, invalid_argument
from serving.model_server.json_codec import (json_text, parse_json, parse_predict_body,
                                             predict_response_bytes)
from serving.model_server.memory import release_after
from serving.model_server.registry import ModelRegistry
from serving.model_server.servable import LoadedModel, VersionStatus
from serving.model_server.signatures import predict

_LOG = logging.getLogger("recs.model_server")
_INT64_MAX = 2 ** 63 - 1
def _signature_json(signature: meta_graph_pb2.SignatureDef) -> dict[str, Any]:
    def tensors(mapping: Any) -> dict[str, Any]:
        return {key: {"dtype": types_pb2.DataType.Name(info.dtype),
                      "tensor_shape": {"dim": [{"size": str(d.size)}
                                               for d in info.tensor_shape.dim]},
                      "name": info.name}
                for key, info in mapping.items()}
    return {"inputs": tensors(signature.inputs), "outputs": tensors(signature.outputs),
            "method_name": signature.method_name}


# ----------------------------------------------------------------------------- REST: HTTP

_ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)"
                    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<tail>/metadata|:predict)?", re.IGNORECASE | re.ASCII)


@dataclasses.dataclass(frozen=True)
class RestRoute:
    name: str
    version: int | None
    label: str
    tail: str  # "", "/metadata" or ":predict", lower case.

    @property
    def method(self) -> str:
        return "POST" if self.tail == ":predict" else "GET"


def parse_route(method: str, path: str) -> RestRoute:
    """The REST route of a request path (TF Serving's paths are case-insensitive).

    Raises:
        ServingError: INVALID_ARGUMENT, as TF Serving answers, for any other path or a
            version beyond int64.
    """
    match = _ROUTE.fullmatch(path)
    if not match:
        raise invalid_argument(f"Malformed request: {method} {path[:200]}")
    digits = match["version"]
    # Compared as text first: Python refuses to convert integers of over 4,300 digits.
    version = int(digits) if digits and len(digits) <= len(str(_INT64_MAX)) else None
    if digits and (version is None or version > _INT64_MAX):
        raise invalid_argument(f"Failed to convert version: {match['version'][:40]} to numeric.")
    return RestRoute(match["name"], version, match["label"] or "", (match["tail"] or "").lower())


def is_status_request(method: str, path: str) -> bool:
    """True for `GET /v1/models/{name}[/versions/{v}|/labels/{l}]`, model status: open to
    the readiness probe when the server requires tokens, as the service's probes are."""
    if method != "GET":
        return False
    try:
        return parse_route(method, path).tail == ""
    except ServingError:
        return False


def _status_json(statuses: list[VersionStatus]) -> dict[str, Any]:
    return {"model_version_status": [
        {"version": str(status.version), "state": status.state,
         "status": {"error_code": status.error_code.name,
                    "error_message": status.error_message}}
        for status in statuses]}


def _metadata_json(model: LoadedModel) -> dict[str, Any]:
    return {"model_spec": {"name": model.name, "signature_name": "",
                           "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": {
                key: _signature_json(sig) for key, sig in model.signature_defs.items()}}}}


def _rest_predict(registry: ModelRegistry, route: RestRoute, data: bytes) -> bytes:
    """A REST predict request's body to its answer's body (runs on the worker pool)."""
    body = parse_json(data)
    if not isinstance(body, dict):
        raise invalid_argument(f"JSON Value: {json_text(body)} Is not object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument(f"JSON Value: {json_text(signature_name)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    model = registry.get(route.name, route.version, route.label)
    inputs, row_format = parse_predict_body(body, model.input_specs(signature_name))
    outputs = predict(model, signature_name, inputs)
    return predict_response_bytes(outputs, row_format)


def _answer_predict(registry: ModelRegistry, route: RestRoute, data: bytes) -> bytes:
    """`_rest_predict`, then a large request's memory back to the system (its parsed body,
    inputs and outputs are gone by then)."""
    try:
        return _rest_predict(registry, route, data)
    finally:
        release_after(len(data))


async def _read_body(receive: Callable) -> bytes | None:
    """The request body; None when the client went away (serving.http caps its size)."""
    parts = []
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return None
        parts.append(event.get("body", b""))
        if not event.get("more_body", False):
            return b"".join(parts)


class RestApp:
    """TF Serving's REST API as an ASGI application. Routing, status and metadata run on the
    event loop (no TensorFlow call); predictions run on the worker pool."""

    def __init__(self, registry: ModelRegistry, workers: concurrent.futures.Executor) -> None:
        self.registry = registry
        self.workers = workers

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return  # uvicorn runs without lifespan events; websockets are not served.
        method, path = scope["method"], scope["path"]
        headers = [(b"content-type", b"application/json")]
        try:
            route = parse_route(method, path)
            if method != route.method:
                status, body = 405, error_body(f"Method {method} is not allowed on {path[:200]}; "
                                               f"use {route.method}")
                headers.append((b"allow", route.method.encode()))
            elif route.tail == ":predict":
                data = await _read_body(receive)
                if data is None:
                    return
                status, body = 200, await asyncio.get_running_loop().run_in_executor(
                    self.workers, _answer_predict, self.registry, route, data)
            elif route.tail == "/metadata":
                model = self.registry.get(route.name, route.version, route.label)
                status, body = 200, json.dumps(_metadata_json(model)).encode()
            else:
                statuses = self.registry.status(route.name, route.version, route.label)
                status, body = 200, json.dumps(_status_json(statuses)).encode()
        except ServingError as error:
            status, body = error.http_status, error_body(error.message)
        except Exception as error:  # noqa: BLE001  (the request boundary: answer, never drop)
            _LOG.exception("REST %s %s failed", method, path[:200])
            status, body = 500, error_body(f"internal error: {type(error).__name__}: {error}")
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
