"""A local model server that speaks TF Serving's REST and gRPC protocols.

The stock `tensorflow_model_server` binary is not installable everywhere (it ships as a Docker
image or from an apt repository), and it cannot load the ScaNN retrieval model, whose custom
ops it lacks. This server loads the same `<base>/<model_name>/<version>/` SavedModels and
answers the same requests, so clients are written once for both:

REST (TF Serving's RESTful API):
    GET  /v1/models/{name}[/versions/{v}]
    GET  /v1/models/{name}[/versions/{v}]/metadata
    POST /v1/models/{name}[/versions/{v}]:predict   {"instances": [...]} or {"inputs": {...}}
gRPC (tensorflow_serving.apis):
    PredictionService.Predict, PredictionService.GetModelMetadata, ModelService.GetModelStatus

Errors are `{"error": "..."}` with the HTTP status TF Serving uses for each gRPC code.
"""

import base64
import dataclasses
import http
import http.server
import json
import os
import re
import threading
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: http.HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: http.HTTPStatus.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: http.HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNIMPLEMENTED: http.HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.INTERNAL: http.HTTPStatus.INTERNAL_SERVER_ERROR,
}
DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 32 * 1024 * 1024


class ServingError(Exception):
    """A request the server refuses, with the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return int(_HTTP_STATUS.get(self.code, http.HTTPStatus.INTERNAL_SERVER_ERROR))


@dataclasses.dataclass
class LoadedModel:
    """One servable version: the loaded SavedModel and its signature definitions."""

    name: str
    version: int
    path: str
    saved_model: Any
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]

    def signature(self, name: str) -> Any:
        signature_name = name or DEFAULT_SIGNATURE
        if signature_name not in self.saved_model.signatures:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Serving signature name: \"{signature_name}\" not found in "
                               f"signature def; available: {sorted(self.saved_model.signatures)}")
        return self.saved_model.signatures[signature_name]


def versions_on_disk(base_dir: str, name: str) -> list[int]:
    """Numeric version directories of model `name` holding a saved_model.pb, ascending."""
    model_dir = os.path.join(base_dir, name)
    if not tf.io.gfile.isdir(model_dir):
        return []
    return sorted(int(entry.rstrip("/")) for entry in tf.io.gfile.listdir(model_dir)
                  if entry.rstrip("/").isdigit()
                  and tf.io.gfile.exists(os.path.join(model_dir, entry, "saved_model.pb")))


def _signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    return {key: value for key, value in proto.meta_graphs[0].signature_def.items()
            if not key.startswith("__")}


class ModelRegistry:
    """Loads the newest version of each named model under a TF Serving base directory.

    Args:
        base_dir: holds `<model_name>/<version>/saved_model.pb`.
        model_names: the models to serve.
    """

    def __init__(self, base_dir: str, model_names: tuple[str, ...]) -> None:
        self.base_dir = base_dir
        self.model_names = tuple(model_names)
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Loads the newest version of every model.

        Raises:
            FileNotFoundError: a model has no version directory with a saved_model.pb.
        """
        import scann  # noqa: F401  (registers ScaNN's ops so the ScaNN retrieval model loads)

        for name in self.model_names:
            versions = versions_on_disk(self.base_dir, name)
            if not versions:
                raise FileNotFoundError(
                    f"No servable version of model {name!r} under {self.base_dir}/{name}; "
                    "expected <version>/saved_model.pb. Run the pipeline to push one.")
            path = os.path.join(self.base_dir, name, str(versions[-1]))
            loaded = LoadedModel(name=name, version=versions[-1], path=path,
                                 saved_model=tf.saved_model.load(path),
                                 signature_defs=_signature_defs(path))
            with self._lock:
                self._models[name] = loaded

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        with self._lock:
            model = self._models.get(name)
        if model is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        if version is not None and version != model.version:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return model

    def predict(self, name: str, version: int | None, signature_name: str,
                inputs: dict[str, np.ndarray]) -> tuple[LoadedModel, dict[str, np.ndarray]]:
        """Runs one signature on NumPy inputs.

        Raises:
            ServingError: unknown model, version or signature, or inputs that do not match.
        """
        model = self.get(name, version)
        function = model.signature(signature_name)
        expected = function.structured_input_signature[1]
        missing = sorted(set(expected) - set(inputs))
        extra = sorted(set(inputs) - set(expected))
        if missing or extra:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"inputs must be exactly {sorted(expected)}; missing {missing}, "
                               f"unexpected {extra}")
        tensors = {}
        for key, spec in expected.items():
            try:
                tensors[key] = tf.convert_to_tensor(inputs[key], dtype=spec.dtype)
            except (TypeError, ValueError) as error:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {key!r} must be {spec.dtype.name} of shape "
                                   f"{spec.shape}: {error}") from error
            if not spec.shape.is_compatible_with(tensors[key].shape):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {key!r} must have shape {spec.shape}; received "
                                   f"{tensors[key].shape}")
        try:
            outputs = function(**tensors)
        except tf.errors.InvalidArgumentError as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, error.message) from error
        return model, {key: value.numpy() for key, value in outputs.items()}


# ----------------------------------------------------------------------------- REST


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes)
                            else v, otypes=[object])(array).tolist()
    return array.tolist()


def _decode_value(value: Any) -> Any:
    """TF Serving's JSON encoding of binary strings: {"b64": "..."}."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_value(item) for item in value]
    return value


def parse_predict_body(body: dict[str, Any], input_names: list[str]
                       ) -> tuple[dict[str, np.ndarray], bool]:
    """Decodes a REST predict body in row ("instances") or columnar ("inputs") format.

    Returns:
        (inputs by name, True when the request used the row format).

    Raises:
        ServingError: neither or both formats, or rows that do not name the inputs.
    """
    if ("instances" in body) == ("inputs" in body):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "JSON Value: request must have exactly one of 'instances' (row "
                           "format) or 'inputs' (columnar format)")
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict):
            if len(input_names) != 1:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"'inputs' must be an object keyed by {input_names}")
            columns = {input_names[0]: columns}
        return {key: np.array(_decode_value(value)) for key, value in columns.items()}, False
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "'instances' must be a non-empty list")
    if all(isinstance(row, dict) and set(row) != {"b64"} for row in rows):
        keys = set(rows[0])
        if any(set(row) != keys for row in rows):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "every instance must have the same keys")
        return {key: np.array([_decode_value(row[key]) for row in rows]) for key in keys}, True
    if len(input_names) != 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"instances must be objects keyed by {input_names}")
    return {input_names[0]: np.array(_decode_value(rows))}, True


def format_predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """Encodes outputs as TF Serving does: "predictions" for rows, "outputs" for columns."""
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _json_value(next(iter(outputs.values())))}
        return {"outputs": {key: _json_value(value) for key, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": _json_value(next(iter(outputs.values())))}
    columns = {key: _json_value(value) for key, value in outputs.items()}
    count = len(next(iter(columns.values())))
    return {"predictions": [{key: column[i] for key, column in columns.items()}
                            for i in range(count)]}


def _signature_json(signature: meta_graph_pb2.SignatureDef) -> dict[str, Any]:
    def tensors(mapping: Any) -> dict[str, Any]:
        return {key: {"dtype": types_pb2.DataType.Name(info.dtype),
                      "tensor_shape": {"dim": [{"size": str(d.size)}
                                               for d in info.tensor_shape.dim]},
                      "name": info.name}
                for key, info in mapping.items()}
    return {"inputs": tensors(signature.inputs), "outputs": tensors(signature.outputs),
            "method_name": signature.method_name}


_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
                    r"(?P<tail>/metadata|:predict)?$")


class _RestHandler(http.server.BaseHTTPRequestHandler):
    registry: ModelRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # Request logs would drown the demo's output; errors are returned to callers.

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, int | None, str]:
        match = _ROUTE.match(self.path.split("?")[0])
        if not match:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Malformed request: {self.command} {self.path}")
        version = int(match["version"]) if match["version"] else None
        return match["name"], version, match["tail"] or ""

    def do_GET(self) -> None:  # noqa: N802
        try:
            name, version, tail = self._route()
            model = self.registry.get(name, version)
            if tail == "/metadata":
                self._send(200, {
                    "model_spec": {"name": name, "signature_name": "",
                                   "version": str(model.version)},
                    "metadata": {"signature_def": {"signature_def": {
                        key: _signature_json(sig) for key, sig in model.signature_defs.items()}}}})
            elif tail == "":
                self._send(200, {"model_version_status": [{
                    "version": str(model.version), "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""}}]})
            else:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: GET {self.path}")
        except ServingError as error:
            self._send(error.http_status, {"error": error.message})

    def do_POST(self) -> None:  # noqa: N802
        try:
            name, version, tail = self._route()
            if tail != ":predict":
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Malformed request: POST {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"request body of {length} bytes exceeds {MAX_BODY_BYTES}")
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError as error:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"JSON Parse error: {error}") from error
            if not isinstance(body, dict):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "JSON Value: request body must be an object")
            model = self.registry.get(name, version)
            signature_name = body.get("signature_name", "") or DEFAULT_SIGNATURE
            input_names = sorted(model.signature(signature_name).structured_input_signature[1])
            inputs, row_format = parse_predict_body(body, input_names)
            _, outputs = self.registry.predict(name, version, signature_name, inputs)
            self._send(200, format_predict_response(outputs, row_format))
        except ServingError as error:
            self._send(error.http_status, {"error": error.message})


# ----------------------------------------------------------------------------- gRPC


def _requested_model(registry: ModelRegistry, spec: Any, context: grpc.ServicerContext
                     ) -> LoadedModel:
    """The model a gRPC request's ModelSpec names; aborts the call with TF Serving's code."""
    version = spec.version.value if spec.HasField("version") else None
    try:
        return registry.get(spec.name, version)
    except ServingError as error:
        context.abort(error.code, error.message)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
                ) -> predict_pb2.PredictResponse:  # noqa: N802
        version = request.model_spec.version.value if request.model_spec.HasField(
            "version") else None
        try:
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            model, outputs = self.registry.predict(
                request.model_spec.name, version, request.model_spec.signature_name, inputs)
        except ServingError as error:
            context.abort(error.code, error.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = (request.model_spec.signature_name
                                              or DEFAULT_SIGNATURE)
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:  # noqa: N802
        if list(request.metadata_field) != ["signature_def"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "Metadata field signature_def is the only one supported; received "
                          f"{list(request.metadata_field)}")
        model = _requested_model(self.registry, request.model_spec, context)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in model.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext
                       ) -> get_model_status_pb2.GetModelStatusResponse:  # noqa: N802
        model = _requested_model(self.registry, request.model_spec, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = model.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


class ModelServer:
    """REST and gRPC front ends over one `ModelRegistry`.

    Args:
        registry: the loaded models.
        host: interface to bind; loopback by default.
        rest_port: 0 picks a free port (see `rest_port` after `start`).
        grpc_port: 0 picks a free port.

    Example:
        server = ModelServer(ModelRegistry(base, ("ranker",)), rest_port=8501, grpc_port=8500)
        server.start()
        ...
        server.stop()
    """

    def __init__(self, registry: ModelRegistry, host: str = "127.0.0.1", rest_port: int = 0,
                 grpc_port: int = 0, workers: int = 8) -> None:
        self.registry = registry
        handler = type("RestHandler", (_RestHandler,), {"registry": registry})
        self._http = http.server.ThreadingHTTPServer((host, rest_port), handler)
        self._http.daemon_threads = True
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                 options=[("grpc.max_receive_message_length", MAX_BODY_BYTES)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(registry), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(registry),
                                                                  self._grpc)
        self.grpc_port = self._grpc.add_insecure_port(f"{host}:{grpc_port}")
        self.rest_port = self._http.server_address[1]
        self.host = host
        self._thread: threading.Thread | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def start(self) -> "ModelServer":
        self._grpc.start()
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=1.0).wait()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_models_config(base_dir: str, model_names: tuple[str, ...], path: str) -> str:
    """Writes TF Serving's `--model_config_file` (text proto) serving each model's latest
    version from `base_dir`; returns `path`."""
    entries = "\n".join(
        f"  config {{\n    name: \"{name}\"\n    base_path: \"{os.path.join(base_dir, name)}\"\n"
        f"    model_platform: \"tensorflow\"\n"
        f"    model_version_policy {{ latest {{ num_versions: 1 }} }}\n  }}"
        for name in model_names)
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(f"model_config_list {{\n{entries}\n}}\n")
    return path
