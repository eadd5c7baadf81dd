"""A local model server that speaks TF Serving's REST and gRPC protocols.

The stock `tensorflow_model_server` binary is not installable everywhere (it ships as a Docker
image or from an apt repository), and it cannot load the ScaNN retrieval model, whose custom
ops it lacks. This server loads the same `<base>/<model_name>/<version>/` SavedModels and
answers the same requests, so clients are written once for both:

REST (TF Serving's RESTful API):
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict
         {"instances": [...]} (row format) or {"inputs": {...}} (columnar format)
gRPC (tensorflow_serving.apis):
    PredictionService.Predict, PredictionService.GetModelMetadata, ModelService.GetModelStatus
    (ModelSpec by version, version_label, or neither for the newest)

Like `tensorflow_model_server` it keeps the newest `num_versions` of each model (plus labelled
ones), polls the base directory for new versions, replays each new version's
`assets.extra/tf_serving_warmup_requests` before it takes traffic, and unloads old versions
only after the new one serves.

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


def _load_saved_model(path: str):
    """`tf.saved_model.load`, registering TF-DF's ops first when the model holds trees (a
    ranker blended with gradient-boosted trees: `recs.ensemble`)."""
    try:
        return tf.saved_model.load(path)
    except (RuntimeError, tf.errors.NotFoundError) as error:  # "Op type not registered"
        if "SimpleML" not in str(error):
            raise
    import tensorflow_decision_forests  # noqa: F401  (registers the trees' inference ops)
    return tf.saved_model.load(path)


class ModelRegistry:
    """Serves the versions of each named model under a TF Serving base directory.

    Like TF Serving's `latest` version policy, the newest `num_versions` versions on disk are
    loaded, plus any version a label points to. `refresh()` (or the poller) loads new versions,
    replays their warmup requests, and only then makes them visible and unloads the versions
    the policy no longer keeps; requests already running on an unloaded version finish on it.

    Args:
        base_dir: holds `<model_name>/<version>/saved_model.pb`.
        model_names: the models to serve.
        num_versions: versions kept per model.
        labels: {model: {label: version}}, e.g. {"ranker": {"stable": 1, "canary": 2}}.
    """

    def __init__(self, base_dir: str, model_names: tuple[str, ...], num_versions: int = 1,
                 labels: dict[str, dict[str, int]] | None = None) -> None:
        if num_versions < 1:
            raise ValueError(f"num_versions must be >= 1; received {num_versions}.")
        self.base_dir = base_dir
        self.model_names = tuple(model_names)
        self.num_versions = num_versions
        self.labels = {name: dict(value) for name, value in (labels or {}).items()}
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.load_errors: dict[str, str] = {}
        """`<model>/<version>` -> why it failed to load; retried at the next refresh."""

    def _wanted(self, name: str, on_disk: list[int]) -> list[int]:
        labelled = set(self.labels.get(name, {}).values()) & set(on_disk)
        return sorted(set(on_disk[-self.num_versions:]) | labelled)

    def _load_version(self, name: str, version: int) -> LoadedModel:
        path = os.path.join(self.base_dir, name, str(version))
        model = LoadedModel(name=name, version=version, path=path,
                            saved_model=_load_saved_model(path),
                            signature_defs=_signature_defs(path))
        warm_up(model)
        return model

    def refresh(self) -> dict[str, list[int]]:
        """Brings the loaded versions in line with the disk and the policy.

        Returns:
            {model: versions now loaded}.
        """
        import scann  # noqa: F401  (registers ScaNN's ops so the ScaNN retrieval model loads)

        loaded = {}
        for name in self.model_names:
            wanted = self._wanted(name, versions_on_disk(self.base_dir, name))
            with self._lock:
                current = dict(self._models.get(name, {}))
            for version in wanted:
                if version in current:
                    continue
                try:
                    current[version] = self._load_version(name, version)
                    self.load_errors.pop(f"{name}/{version}", None)
                except (OSError, ValueError, tf.errors.OpError, ServingError) as error:
                    # Often a version still being copied in; the next refresh retries it.
                    self.load_errors[f"{name}/{version}"] = str(error)
            keep = {v: m for v, m in current.items() if v in wanted}
            if not keep and current:
                keep = current  # Never unload the last servable version for a broken one.
            with self._lock:
                self._models[name] = keep
            loaded[name] = sorted(keep)
        return loaded

    def load(self) -> None:
        """Loads (and warms up) the versions the policy keeps, once.

        Raises:
            FileNotFoundError: a model has no version directory with a saved_model.pb.
        """
        for name, versions in self.refresh().items():
            if not versions:
                raise FileNotFoundError(
                    f"No servable version of model {name!r} under {self.base_dir}/{name}; "
                    f"expected <version>/saved_model.pb. Run the pipeline to push one. "
                    f"Load errors: {self.load_errors or 'none'}")

    def start_polling(self, seconds: float) -> None:
        """Refreshes every `seconds` on a daemon thread until `stop_polling`."""
        def poll() -> None:
            while not self._stop.wait(seconds):
                self.refresh()

        self._stop.clear()
        self._poller = threading.Thread(target=poll, name="model-poller", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()

    def versions(self, name: str) -> list[int]:
        """Loaded versions of `name`, ascending.

        Raises:
            ServingError: NOT_FOUND for a model this registry does not serve.
        """
        with self._lock:
            models = self._models.get(name)
        if not models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        return sorted(models)

    def get(self, name: str, version: int | None = None, label: str = "") -> LoadedModel:
        """The requested version: a number, a label, or the newest loaded one.

        Raises:
            ServingError: NOT_FOUND for an unknown model, version or label.
        """
        with self._lock:
            models = dict(self._models.get(name, {}))
        if not models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        if label:
            if label not in self.labels.get(name, {}):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: {label}")
            version = self.labels[name][label]
        if version is None:
            return models[max(models)]
        if version not in models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return models[version]


def run_signature(model: LoadedModel, signature_name: str, inputs: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """Runs `signature_name` of `model` on NumPy inputs.

    Raises:
        ServingError: INVALID_ARGUMENT for an unknown signature or inputs that do not match.
    """
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
    except UnicodeDecodeError as error:
        # TensorFlow quotes the offending (binary) input in its message and fails to decode it.
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input could not be parsed by signature {signature_name!r}: "
                           f"{error.reason}") from error
    return {key: value.numpy() for key, value in outputs.items()}


def warm_up(model: LoadedModel) -> int:
    """Replays `assets.extra/tf_serving_warmup_requests` (as TF Serving does with
    `--enable_model_warmup`); returns how many requests ran. A model without the file is
    served cold.

    Raises:
        ServingError: a warmup request fails; the version is then not served.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(model.path, "assets.extra", "tf_serving_warmup_requests")
    if not tf.io.gfile.exists(path):
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        run_signature(model, request.model_spec.signature_name,
                      {key: tf.make_ndarray(value) for key, value in request.inputs.items()})
        count += 1
    return count


# ----------------------------------------------------------------------------- REST


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes)
                            else v, otypes=[object])(array).tolist()
    return array.tolist()


def _array(values: Any) -> np.ndarray:
    """JSON values as an array; binary strings stay objects, since NumPy's fixed-width bytes
    would drop their trailing NUL bytes (serialized tf.Examples often end in one)."""
    array = np.array(values)
    return np.array(values, dtype=object) if array.dtype.kind == "S" else array


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
        return {key: _array(_decode_value(value)) for key, value in columns.items()}, False
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "'instances' must be a non-empty list")
    if all(isinstance(row, dict) and set(row) != {"b64"} for row in rows):
        keys = set(rows[0])
        if any(set(row) != keys for row in rows):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "every instance must have the same keys")
        return {key: _array([_decode_value(row[key]) for row in rows]) for key in keys}, True
    if len(input_names) != 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"instances must be objects keyed by {input_names}")
    return {input_names[0]: _array(_decode_value(rows))}, True


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


_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
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

    def _route(self) -> tuple[str, int | None, str, str]:
        match = _ROUTE.match(self.path.split("?")[0])
        if not match:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Malformed request: {self.command} {self.path}")
        version = int(match["version"]) if match["version"] else None
        return match["name"], version, match["label"] or "", match["tail"] or ""

    def do_GET(self) -> None:  # noqa: N802
        try:
            name, version, label, tail = self._route()
            model = self.registry.get(name, version, label)
            if tail == "" and version is None and not label:
                # Without a version, TF Serving lists every loaded version.
                self._send(200, {"model_version_status": [
                    {"version": str(v), "state": "AVAILABLE",
                     "status": {"error_code": "OK", "error_message": ""}}
                    for v in self.registry.versions(name)]})
            elif tail == "/metadata":
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
        except Exception as error:  # noqa: BLE001  (the request boundary: answer, never drop)
            self._send(500, {"error": f"internal error: {type(error).__name__}: {error}"})

    def do_POST(self) -> None:  # noqa: N802
        try:
            name, version, label, tail = self._route()
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
            model = self.registry.get(name, version, label)
            signature_name = body.get("signature_name", "") or DEFAULT_SIGNATURE
            input_names = sorted(model.signature(signature_name).structured_input_signature[1])
            inputs, row_format = parse_predict_body(body, input_names)
            outputs = run_signature(model, signature_name, inputs)
            self._send(200, format_predict_response(outputs, row_format))
        except ServingError as error:
            self._send(error.http_status, {"error": error.message})
        except Exception as error:  # noqa: BLE001  (the request boundary: answer, never drop)
            self._send(500, {"error": f"internal error: {type(error).__name__}: {error}"})


# ----------------------------------------------------------------------------- gRPC


def _spec_model(registry: ModelRegistry, spec: Any) -> LoadedModel:
    """The model a gRPC ModelSpec names: by version, by label, or the newest.

    Raises:
        ServingError: TF Serving's code for an unknown model, version or label.
    """
    choice = spec.WhichOneof("version_choice")
    return registry.get(spec.name, spec.version.value if choice == "version" else None,
                        spec.version_label if choice == "version_label" else "")


def _requested_model(registry: ModelRegistry, spec: Any, context: grpc.ServicerContext
                     ) -> LoadedModel:
    """The model a gRPC request's ModelSpec names; aborts the call with TF Serving's code."""
    try:
        return _spec_model(registry, spec)
    except ServingError as error:
        context.abort(error.code, error.message)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
                ) -> predict_pb2.PredictResponse:  # noqa: N802
        try:
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            model = _spec_model(self.registry, request.model_spec)
            outputs = run_signature(model, request.model_spec.signature_name, inputs)
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
        spec = request.model_spec
        versions = ([model.version] if spec.WhichOneof("version_choice")
                    else self.registry.versions(spec.name))
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in versions:
            status = response.model_version_status.add()
            status.version = version
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
        self.registry.stop_polling()
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=1.0).wait()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
