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
only after the new one serves. A version that fails to load is logged (logger
`recs.model_server`, once per distinct error) and reported by both status APIs as TF Serving
reports it, state END with the error, while the other versions keep serving.

One request, REST:
    uvicorn (serving.http: read timeouts, head and body caps, keep-alive)
    -> `_RestApp` on the event loop: route, method, body
    -> the worker pool: `_parse_json` -> `parse_predict_body` (each JSON value checked against
       the signature's dtype and shape: nothing is cast) -> `run_signature`
       -> `format_predict_response`
gRPC (the same worker pool runs the handlers):
    request bytes -> PredictRequest (a malformed message is INVALID_ARGUMENT, not INTERNAL)
    -> `tensor_from_proto` per input (dtype, shape, size and value count checked before any
       array is allocated) -> `run_signature` -> PredictResponse

Every refusal is a `ServingError` carrying TF Serving's gRPC code; REST answers it as
`{"error": "..."}` with the HTTP status TF Serving uses for that code.
"""

import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import reprlib
import threading
from typing import Any, Callable, Iterable, Mapping

import grpc
import numpy as np
import orjson
import tensorflow as tf
from google.protobuf import message as protobuf_message
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2, predict_pb2, prediction_service_pb2)

from recs.config import require
from recs.contract.models import ASSETS_EXTRA, SERVED_MODELS, WARMUP_FILE, versions_on_disk
from recs.contract.protos import signature_defs
from recs.export import load_saved_model
from recs.contract.signatures import SERVING_DEFAULT
from serving.batching import Batcher, BatchingParams, Overloaded, ShapeMismatch, read_params
from serving.http import BackgroundServer, HttpLimits, error_body

_LOG = logging.getLogger("recs.model_server")

# TF Serving's http_server.cc, code by code.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
DEFAULT_SIGNATURE = SERVING_DEFAULT
MAX_BODY_BYTES = 32 * 1024 * 1024
"""The largest REST body and gRPC message accepted, and the largest tensor a request may
expand to (a one-value TensorProto stands for any number of copies of it)."""
_INT64_MAX = 2 ** 63 - 1
_MAX_RANK = 254  # TensorFlow's own limit, for signatures whose inputs have an unknown rank.


class ServingError(Exception):
    """A request the server refuses, with the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclasses.dataclass
class LoadedModel:
    """One servable version: the loaded SavedModel and its signature definitions."""

    name: str
    version: int
    path: str
    saved_model: Any
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    batching: BatchingParams | None = None
    """Batch concurrent requests to each signature (`serving.batching`); None: never."""
    _batchers: dict[str, Batcher] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def batcher(self, signature_name: str, call: Callable[[dict], dict]) -> Batcher | None:
        """The signature's batcher (made on first use), or None when the model is not
        batched."""
        if self.batching is None:
            return None
        with self._lock:
            if signature_name not in self._batchers:
                self._batchers[signature_name] = Batcher(call, self.batching)
            return self._batchers[signature_name]

    def close(self) -> None:
        """Stops the batch threads (after an unload: running requests finish first)."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()

    def signature(self, name: str) -> Any:
        signature_name = name or DEFAULT_SIGNATURE
        if signature_name not in self.saved_model.signatures:
            raise _invalid(f"Serving signature name: \"{signature_name}\" not found in "
                           f"signature def; available: {sorted(self.saved_model.signatures)}")
        return self.saved_model.signatures[signature_name]

    def input_specs(self, signature_name: str) -> dict[str, tf.TensorSpec]:
        """{input name: dtype and shape} of a signature.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown signature.
        """
        return dict(self.signature(signature_name).structured_input_signature[1])


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One version's entry in GetModelStatus: AVAILABLE, or END with the load error."""

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def _load_failure(error: Exception) -> ServingError:
    """A load error as the status TF Serving would report: TensorFlow's and our own errors
    keep their code; anything else is UNKNOWN, named by its class."""
    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.OpError):
        return ServingError(_CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN),
                            error.message)
    return ServingError(grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}")


class ModelRegistry:
    """Serves the versions of each named model under a TF Serving base directory.

    Like TF Serving's `latest` version policy, the newest `num_versions` versions on disk are
    loaded, plus any version a label points to. `refresh()` (or the poller) loads new versions,
    replays their warmup requests, and only then makes them visible and unloads the versions
    the policy no longer keeps; requests already running on an unloaded version finish on it.
    A version that fails to load is retried at each refresh, logged once per distinct error,
    and reported by `status` until it loads or the policy no longer wants it.

    Args:
        base_dir: holds `<model_name>/<version>/saved_model.pb`.
        model_names: the models to serve.
        num_versions: versions kept per model.
        labels: {model: {label: version}}, e.g. {"ranker": {"stable": 1, "canary": 2}}.
    """

    def __init__(self, base_dir: str, model_names: tuple[str, ...], num_versions: int = 1,
                 labels: dict[str, dict[str, int]] | None = None, batching: bool = False
                 ) -> None:
        if num_versions < 1:
            raise ValueError(f"num_versions must be >= 1; received {num_versions}.")
        self.batching = batching
        self.base_dir = base_dir
        self.model_names = tuple(model_names)
        self.num_versions = num_versions
        self.labels = {name: dict(value) for name, value in (labels or {}).items()}
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._failures: dict[tuple[str, int], ServingError] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def load_errors(self) -> dict[str, str]:
        """`<model>/<version>` -> why it failed to load; retried at the next refresh."""
        with self._lock:
            return {f"{name}/{version}": failure.message
                    for (name, version), failure in self._failures.items()}

    def _wanted(self, name: str, on_disk: list[int]) -> list[int]:
        labelled = set(self.labels.get(name, {}).values()) & set(on_disk)
        return sorted(set(on_disk[-self.num_versions:]) | labelled)

    def _load_version(self, name: str, version: int) -> LoadedModel:
        path = os.path.join(self.base_dir, name, str(version))
        model = LoadedModel(name=name, version=version, path=path,
                            saved_model=load_saved_model(path),
                            signature_defs=signature_defs(path),
                            batching=read_params(path) if self.batching else None)
        warm_up(model)
        return model

    def _record_failure(self, name: str, version: int, error: Exception) -> None:
        failure = _load_failure(error)
        with self._lock:
            previous = self._failures.get((name, version))
            self._failures[(name, version)] = failure
        if previous is None or previous.message != failure.message:
            # Once per distinct error: the poller retries every few seconds.
            _LOG.error("model %s version %d failed to load (%s): %s", name, version,
                       failure.code.name, failure.message)

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
                except Exception as error:  # noqa: BLE001
                    # One broken version must not stop the others (nor the poller). Often it
                    # is still being copied in; the next refresh retries it.
                    self._record_failure(name, version, error)
            keep = {v: m for v, m in current.items() if v in wanted}
            if not keep and current:
                keep = current  # Never unload the last servable version for a broken one.
            with self._lock:
                dropped = [m for v, m in self._models.get(name, {}).items() if v not in keep]
                self._models[name] = keep
                for key in [key for key in self._failures if key[0] == name]:
                    if key[1] in keep or key[1] not in wanted:
                        del self._failures[key]
            for model in dropped:
                model.close()  # Its queued batches still run.
            loaded[name] = sorted(keep)
        return loaded

    def close(self) -> None:
        """Stops polling and every batch thread."""
        self.stop_polling()
        with self._lock:
            models = [m for versions in self._models.values() for m in versions.values()]
        for model in models:
            model.close()

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

    def start_polling(self, seconds: float, niceness: int = 0) -> None:
        """Refreshes every `seconds` on a daemon thread until `stop_polling`.

        Args:
            seconds: the polling period.
            niceness: added to the thread's OS scheduling niceness (Linux schedules threads
                apart), so that loading a new version yields the cores to the requests being
                served. Off by default: at +10 it did not lower the swap's p99 on the serving
                benchmark (warmup runs on TensorFlow's own thread pools, at normal priority),
                and on saturated cores it starved the load for over a minute.
        """
        def poll() -> None:
            if niceness and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
                try:
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                                   min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))
                except OSError:  # Not permitted here: load at the normal priority.
                    pass
            while not self._stop.wait(seconds):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001  (e.g. the base directory unreadable for a while)
                    _LOG.exception("refreshing the models under %s failed; retrying in %g s",
                                   self.base_dir, seconds)

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

    def _label_version(self, name: str, label: str) -> int:
        if label not in self.labels.get(name, {}):
            raise _invalid(f"Unrecognized servable version label: {label}")
        return self.labels[name][label]

    def get(self, name: str, version: int | None = None, label: str = "") -> LoadedModel:
        """The requested version: a number, a label, or the newest loaded one.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version, INVALID_ARGUMENT for an
                unknown label.
        """
        with self._lock:
            models = dict(self._models.get(name, {}))
        if not models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        if label:
            version = self._label_version(name, label)
        if version is None:
            return models[max(models)]
        if version not in models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return models[version]

    def status(self, name: str, version: int | None = None, label: str = ""
               ) -> list[VersionStatus]:
        """GetModelStatus: each loaded version AVAILABLE, each failed one END with its error,
        ascending; only the requested version when one is named (by number or label).

        Raises:
            ServingError: NOT_FOUND when there is no such model or version, INVALID_ARGUMENT
                for an unknown label.
        """
        if label:
            version = self._label_version(name, label)
        with self._lock:
            statuses = [VersionStatus(v, "AVAILABLE") for v in self._models.get(name, {})]
            statuses += [VersionStatus(v, "END", failure.code, failure.message)
                         for (model, v), failure in self._failures.items() if model == name]
        if version is not None:
            statuses = [status for status in statuses if status.version == version]
            if not statuses:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
        if not statuses:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        return sorted(statuses, key=lambda status: status.version)


def _check_input_names(received: Iterable[str], expected: Iterable[str]) -> None:
    missing = sorted(set(expected) - set(received))
    extra = sorted(set(received) - set(expected))
    if missing or extra:
        raise _invalid(f"inputs must be exactly {sorted(expected)}; missing {missing}, "
                       f"unexpected {extra}")


def _input_array(key: str, value: Any, spec: tf.TensorSpec) -> np.ndarray:
    """An input given from Python (`benchmarks/serving_latency.py` calls in-process) as an
    array of the signature's dtype: conversions within a kind (float64 to float32, ints within
    range) and ints to floats are made; a float for an integer, a bool for a number or a number
    for a string is refused. REST and gRPC inputs arrive here in the signature's dtype."""
    dtype = spec.dtype
    # Lists of bytes become objects: NumPy's fixed-width bytes would drop trailing NULs.
    array = (value if isinstance(value, np.ndarray)
             else np.asarray(value, dtype=object if dtype == tf.string else None))
    kind = array.dtype.kind
    if dtype == tf.string:
        allowed = kind in "SUO"
    elif dtype.is_bool:
        allowed = kind == "b"
    elif dtype.is_integer:
        allowed = kind in "iu" and (array.size == 0 or (dtype.min <= array.min()
                                                         and array.max() <= dtype.max))
    elif dtype.is_floating:
        allowed = kind in "iuf"
    else:
        allowed = array.dtype == dtype.as_numpy_dtype
    if not allowed:
        raise _invalid(f"input {key!r} must be {dtype.name}; received {array.dtype.name}")
    return array if dtype == tf.string else array.astype(dtype.as_numpy_dtype, copy=False)


def _checked_inputs(function: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs as arrays of the signature's dtypes and shapes.

    Raises:
        ServingError: INVALID_ARGUMENT for inputs that do not match its names, dtypes or
            shapes (see `_input_array`).
    """
    expected = function.structured_input_signature[1]
    _check_input_names(inputs, expected)
    arrays = {}
    for key, spec in expected.items():
        array = _input_array(key, inputs[key], spec)
        if not _fits(spec.shape, array.shape):
            raise _invalid(f"input {key!r} must have shape {_dims(spec.shape)}; received "
                           f"{list(array.shape)}")
        arrays[key] = array
    return arrays


def _call(function: Any, signature_name: str, arrays: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    expected = function.structured_input_signature[1]
    tensors = {}
    for key, array in arrays.items():
        try:
            tensors[key] = tf.convert_to_tensor(array, dtype=expected[key].dtype)
        except (TypeError, ValueError) as error:  # e.g. an object array holding numbers
            raise _invalid(f"input {key!r} must be {expected[key].dtype.name} of shape "
                           f"{_dims(expected[key].shape)}: {error}") from error
    try:
        outputs = function(**tensors)
    except tf.errors.OpError as error:
        raise ServingError(_CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN),
                           error.message) from error
    except UnicodeDecodeError as error:
        # TensorFlow quotes the offending (binary) input in its message and fails to decode it.
        raise _invalid(f"input could not be parsed by signature {signature_name!r}: "
                       f"{error.reason}") from error
    return {key: value.numpy() for key, value in outputs.items()}


def run_signature(model: LoadedModel, signature_name: str, inputs: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """Runs `signature_name` of `model` on NumPy inputs, alone (no batching).

    Raises:
        ServingError: INVALID_ARGUMENT for an unknown signature or inputs that do not match
            its names, dtypes or shapes (see `_input_array`); TensorFlow's code when the graph
            refuses them.
    """
    function = model.signature(signature_name)
    return _call(function, signature_name, _checked_inputs(function, inputs))


def predict(model: LoadedModel, signature_name: str, inputs: dict[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    """`run_signature`, in a batch with concurrent requests when the model is batched.

    Raises:
        ServingError: as `run_signature`; INVALID_ARGUMENT also for inputs a batched model
            cannot batch (not sharing their 0th dimension), UNAVAILABLE when its batch queue
            is full.
    """
    function = model.signature(signature_name)
    arrays = _checked_inputs(function, inputs)
    batcher = model.batcher(signature_name or DEFAULT_SIGNATURE,
                            lambda batch: _call(function, signature_name, batch))
    if batcher is None:
        return _call(function, signature_name, arrays)
    try:
        return batcher.run(arrays)
    except ShapeMismatch as error:
        raise _invalid(str(error)) from error
    except Overloaded as error:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, str(error)) from error


def _fits(shape: tf.TensorShape, dims: list[int] | tuple[int, ...]) -> bool:
    """`shape.is_compatible_with(dims)` for concrete dims, at a twentieth of its cost (it runs
    for every input of every request)."""
    if shape.rank is None:
        return True
    return len(dims) == shape.rank and all(
        size is None or size == dim for size, dim in zip(shape.as_list(), dims))


def _dims(shape: tf.TensorShape) -> str:
    """A signature shape as TF Serving writes it: [-1,16], or [?] for an unknown rank."""
    if shape.rank is None:
        return "[?]"
    return "[" + ",".join(str(-1 if d is None else d) for d in shape.as_list()) + "]"


def warm_up(model: LoadedModel) -> int:
    """Replays `assets.extra/tf_serving_warmup_requests` (as TF Serving does with
    `--enable_model_warmup`); returns how many requests ran. A model without the file is
    served cold.

    Raises:
        ServingError: a warmup request fails; the version is then not served.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(model.path, ASSETS_EXTRA, WARMUP_FILE)
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


# ----------------------------------------------------------------------------- REST: JSON

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 40, 40


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"Number too big to be stored in double: {text[:40]}")
    return value


def _json_int(text: str) -> int | float:
    """An integer literal; beyond 64 bits a double, as rapidjson (and the fast parser) read
    it, so both parsers give a body the same values."""
    if len(text.lstrip("-")) <= 20:
        value = int(text)
        if -2 ** 63 <= value < 2 ** 64:
            return value
    return _finite_float(text)


def _parse_json(data: bytes) -> Any:
    """The request body as JSON. Strict JSON takes the fast parser; TF Serving also reads the
    literals NaN, Infinity and -Infinity (rapidjson's kParseNanAndInfFlag), so a body the fast
    parser refuses is read again by one that knows them.

    Raises:
        ServingError: INVALID_ARGUMENT for anything else that is not UTF-8 JSON.
    """
    if not data.strip():
        raise _invalid("JSON Parse error: The document is empty")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as strict_error:
        try:
            return json.loads(data.decode("utf-8"), parse_constant=_NON_FINITE.__getitem__,
                              parse_float=_finite_float, parse_int=_json_int)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError.
            raise _invalid(f"JSON Parse error: {strict_error}") from error


def _json_type(value: Any) -> str:
    """rapidjson's name of a JSON value's type, as TF Serving's messages use it."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    return {str: "String", list: "Array", dict: "Object"}.get(type(value), type(value).__name__)


def _json_text(value: Any) -> str:
    """A JSON value for an error message, shortened: messages echo client input."""
    if isinstance(value, (list, dict)):
        return _SHORT.repr(value)
    try:
        text = json.dumps(value)
    except ValueError:  # An integer beyond Python's digit limit for str().
        return "<a number too long to print>"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_b64(value: Any) -> bool:
    """TF Serving's encoding of a binary string: {"b64": "..."}."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _flatten(key: str, value: Any, rank: int | None) -> tuple[list[int], list[Any]]:
    """The shape of nested JSON lists and their leaves in row-major order, one nesting level
    at a time (bounded by the input's rank, so deep nesting costs nothing).

    Raises:
        ServingError: lists that are ragged, or nested deeper than the input's rank.
    """
    limit = _MAX_RANK if rank is None else rank
    shape: list[int] = []
    items = [value]
    while True:
        kinds = set(map(type, items))
        if list not in kinds:
            return shape, items
        if kinds != {list}:
            raise _invalid(f"input {key!r} is ragged: lists and values mix at level "
                           f"{len(shape) + 1}")
        if len(shape) == limit:
            raise _invalid(f"input {key!r} has lists nested deeper than its rank, {limit}")
        lengths = set(map(len, items))
        if len(lengths) > 1:
            raise _invalid(f"input {key!r} is ragged: lists of sizes {sorted(lengths)[:5]} at "
                           f"level {len(shape) + 1}")
        shape.append(lengths.pop())
        items = list(itertools.chain.from_iterable(items))
        if not items:
            return shape, items


def _type_error(key: str, leaves: list[Any], allowed: tuple[type, ...],
                dtype: tf.DType) -> ServingError:
    bad = next(value for value in leaves if type(value) not in allowed)
    return _invalid(f"input {key!r}: JSON Value: {_json_text(bad)} Type: {_json_type(bad)} "
                    f"is not of expected type: {dtype.name}")


def _json_bytes(key: str, value: str | dict) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError as error:  # A lone surrogate escape such as "\ud800".
            raise _invalid(f"input {key!r}: string {_json_text(value)} is not valid Unicode: "
                           f"{error.reason}") from error
    if not _is_b64(value):
        raise _invalid(f"input {key!r}: JSON Value: {_json_text(value)} not formatted "
                       f"correctly for base64 data; expected {{\"b64\": \"<base64>\"}}")
    encoded = value["b64"]
    try:
        # Like absl's Base64Unescape: the standard alphabet, padding optional.
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as error:  # ValueError: non-ASCII characters.
        raise _invalid(f"input {key!r}: Unable to base64 decode {_json_text(encoded)}: "
                       f"{error}") from error


def _json_leaves(key: str, leaves: list[Any], dtype: tf.DType) -> np.ndarray:
    """JSON scalars as a flat array of `dtype`, with TF Serving's rules (json_tensor.cc):
    strings (or b64 objects) for strings, true/false for bools, integer literals within range
    for integers, numbers that fit without loss for floats. Nothing is cast: 3.0 is not an
    int64, true is not a number, "5" is not a number. Checks run per column, not per value,
    where they can (this is the REST hot path)."""
    kinds = set(map(type, leaves))
    target = np.dtype(dtype.as_numpy_dtype)
    if target.kind == "O":  # DT_STRING
        if not kinds <= {str, dict}:
            raise _type_error(key, leaves, (str, dict), dtype)
        if kinds == {str}:
            try:
                return np.array([value.encode() for value in leaves], dtype=object)
            except UnicodeEncodeError:
                pass  # The slow path below names the string.
        return np.array([_json_bytes(key, value) for value in leaves], dtype=object)
    if target.kind == "b":
        if not kinds <= {bool}:
            raise _type_error(key, leaves, (bool,), dtype)
        return np.array(leaves, dtype=bool)
    if target.kind in "iu":
        if not kinds <= {int}:
            raise _type_error(key, leaves, (int,), dtype)
        low, high = np.iinfo(target).min, np.iinfo(target).max
        if leaves and (min(leaves) < low or max(leaves) > high):
            bad = next(v for v in leaves if not low <= v <= high)
            raise _invalid(f"input {key!r}: JSON Value: {_json_text(bad)} is out of range "
                           f"for {dtype.name} [{low}, {high}]")
        return np.array(leaves, dtype=target)
    if target.kind == "f" and target.itemsize in (2, 4, 8):  # float16, float32, float64
        if not kinds <= {int, float}:
            raise _type_error(key, leaves, (int, float), dtype)
        # Integers are exact up to 2**digits - 1; other finite numbers must be in range.
        exact = 2 ** (np.finfo(target).nmant + 1) - 1
        integers = [value for value in leaves if type(value) is int] if int in kinds else []
        bad = next((value for value in integers if abs(value) > exact), None)
        if bad is None:
            values = np.array(leaves, dtype=np.float64)
            finite = np.abs(values[np.isfinite(values)])
            if finite.size and finite.max() > np.finfo(target).max:
                bad = next(v for v in leaves if math.isfinite(v)
                           and abs(v) > np.finfo(target).max)
        if bad is not None:
            raise _invalid(f"input {key!r}: Cannot convert JSON value: {_json_text(bad)} to "
                           f"{dtype.name} without loss of precision.")
        return values.astype(target)
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                       f"input {key!r}: conversion of JSON values to {dtype.name}")


def _json_tensor(key: str, value: Any, spec: tf.TensorSpec) -> np.ndarray:
    """One input's JSON value (nested lists of scalars) as an array matching `spec`."""
    shape, leaves = _flatten(key, value, spec.shape.rank)
    if not _fits(spec.shape, shape):
        raise _invalid(f"input {key!r} must have shape {_dims(spec.shape)}; received "
                       f"{shape}")
    return _json_leaves(key, leaves, spec.dtype).reshape(shape)


def parse_predict_body(body: Mapping[str, Any], specs: Mapping[str, tf.TensorSpec]
                       ) -> tuple[dict[str, np.ndarray], bool]:
    """Decodes a REST predict body in row ("instances") or columnar ("inputs") format.

    Args:
        body: the parsed JSON object.
        specs: the signature's inputs, {name: tf.TensorSpec} (`LoadedModel.input_specs`).

    Returns:
        (inputs by name as arrays of the signature's dtypes, True when the request used the
        row format).

    Raises:
        ServingError: INVALID_ARGUMENT for neither or both formats, rows that do not name the
            inputs, ragged lists, or values of the wrong type or out of range.
    """
    if ("instances" in body) == ("inputs" in body):
        raise _invalid("JSON Value: request must have exactly one of 'instances' (row "
                       "format) or 'inputs' (columnar format)")
    names = sorted(specs)
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict) or _is_b64(columns):
            if len(names) != 1:
                raise _invalid(f"'inputs' is a plain value/list, but expecting an object "
                               f"keyed by {names}")
            columns = {names[0]: columns}
        _check_input_names(columns, names)
        return {key: _json_tensor(key, columns[key], specs[key]) for key in names}, False
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        raise _invalid("'instances' must be a non-empty list")
    named = [isinstance(row, dict) and not _is_b64(row) for row in rows]
    if any(named):
        if not all(named):
            raise _invalid("instances must be all objects keyed by input names or all "
                           "values, not a mix")
        keys = set(rows[0])
        if any(set(row) != keys for row in rows):
            raise _invalid("every instance must have the same keys")
        _check_input_names(keys, names)
        return {key: _json_tensor(key, [row[key] for row in rows], specs[key])
                for key in names}, True
    if len(names) != 1:
        raise _invalid(f"instances must be objects keyed by {names}")
    return {names[0]: _json_tensor(names[0], rows, specs[names[0]])}, True


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes)
                            else v, otypes=[object])(array).tolist()
    return array.tolist()


def format_predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """Encodes outputs as TF Serving does: "predictions" for rows, "outputs" for columns.

    Raises:
        ServingError: INVALID_ARGUMENT when rows are asked of outputs that do not share a
            batch dimension (TF Serving's answer too).
    """
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _json_value(next(iter(outputs.values())))}
        return {"outputs": {key: _json_value(value) for key, value in outputs.items()}}
    sizes = {key: value.shape[0] if value.ndim else None for key, value in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise _invalid(f"outputs have no common batch size for the row format: {sizes}; use "
                       "the columnar format ('inputs')")
    if len(outputs) == 1:
        return {"predictions": _json_value(next(iter(outputs.values())))}
    columns = {key: _json_value(value) for key, value in outputs.items()}
    count = next(iter(sizes.values()))
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


# ----------------------------------------------------------------------------- REST: HTTP

_ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)"
                    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<tail>/metadata|:predict)?", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class _Route:
    name: str
    version: int | None
    label: str
    tail: str  # "", "/metadata" or ":predict", lower case.

    @property
    def method(self) -> str:
        return "POST" if self.tail == ":predict" else "GET"


def _route(method: str, path: str) -> _Route:
    """The REST route of a request path (TF Serving's paths are case-insensitive).

    Raises:
        ServingError: INVALID_ARGUMENT, as TF Serving answers, for any other path or a
            version beyond int64.
    """
    match = _ROUTE.fullmatch(path)
    if not match:
        raise _invalid(f"Malformed request: {method} {path[:200]}")
    version = int(match["version"]) if match["version"] else None
    if version is not None and version > _INT64_MAX:
        raise _invalid(f"Failed to convert version: {match['version'][:40]} to numeric.")
    return _Route(match["name"], version, match["label"] or "", (match["tail"] or "").lower())


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


def _rest_predict(registry: ModelRegistry, route: _Route, data: bytes) -> bytes:
    """A REST predict request's body to its answer's body (runs on the worker pool)."""
    body = _parse_json(data)
    if not isinstance(body, dict):
        raise _invalid(f"JSON Value: {_json_text(body)} Is not object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _invalid(f"JSON Value: {_json_text(signature_name)} not formatted correctly. "
                       "'signature_name' key must be a string value.")
    model = registry.get(route.name, route.version, route.label)
    inputs, row_format = parse_predict_body(body, model.input_specs(signature_name))
    outputs = predict(model, signature_name, inputs)
    return json.dumps(format_predict_response(outputs, row_format)).encode()


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


class _RestApp:
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
            route = _route(method, path)
            if method != route.method:
                status, body = 405, error_body(f"Method {method} is not allowed on {path[:200]}; "
                                               f"use {route.method}")
                headers.append((b"allow", route.method.encode()))
            elif route.tail == ":predict":
                data = await _read_body(receive)
                if data is None:
                    return
                status, body = 200, await asyncio.get_running_loop().run_in_executor(
                    self.workers, _rest_predict, self.registry, route, data)
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


# ----------------------------------------------------------------------------- gRPC

# The repeated field of a TensorProto that holds each dtype's values (tensor.proto).
_VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val", types_pb2.DT_HALF: "half_val",
}


def _dtype_name(number: int) -> str:
    try:
        return types_pb2.DataType.Name(number)
    except ValueError:
        return f"an invalid dtype ({number})"


def tensor_from_proto(key: str, proto: Any, spec: tf.TensorSpec) -> np.ndarray:
    """A request's TensorProto as an array, checked against the signature input `spec`
    before anything is allocated: the dtype must be the input's (no casts; resource, variant
    and invalid enums never are), the shape a known, non-negative one compatible with the
    input's, at most `MAX_BODY_BYTES` once decoded, and the bytes of `tensor_content` or the
    count of repeated values must match it (one value may stand for all, as
    `tf.make_tensor_proto` writes a filled tensor).

    Raises:
        ServingError: INVALID_ARGUMENT for any mismatch.
    """
    expected = spec.dtype.as_datatype_enum
    if proto.dtype != expected:
        raise _invalid(f"input {key!r}: expects {types_pb2.DataType.Name(expected)} but "
                       f"{_dtype_name(proto.dtype)} is provided")
    if expected not in _VALUE_FIELD:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           f"input {key!r}: decoding {spec.dtype.name} tensors")
    if proto.tensor_shape.unknown_rank:
        raise _invalid(f"input {key!r}: the tensor's shape must be known")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    itemsize = np.dtype(spec.dtype.as_numpy_dtype).itemsize
    limit = MAX_BODY_BYTES // itemsize
    if any(size < 0 or size > limit for size in dims) or math.prod(dims) > limit:
        raise _invalid(f"input {key!r}: shape {dims[:8]} must have sizes >= 0 and at most "
                       f"{limit} elements")
    if not _fits(spec.shape, dims):
        raise _invalid(f"input {key!r} must have shape {_dims(spec.shape)}; received {dims}")
    count = math.prod(dims)
    field = _VALUE_FIELD[expected]
    if proto.tensor_content:
        if field == "string_val" or len(proto.tensor_content) != count * itemsize:
            raise _invalid(f"input {key!r}: tensor_content holds {len(proto.tensor_content)} "
                           f"bytes; shape {dims} of {spec.dtype.name} needs {count * itemsize}"
                           + (" (strings go in string_val)" if field == "string_val" else ""))
    else:
        values = getattr(proto, field)
        if len(values) != count and not (len(values) == 1 and count > 0):
            raise _invalid(f"input {key!r}: {len(values)} values for shape {dims} of "
                           f"{count} elements")
        if field == "int_val" and values and (min(values) < spec.dtype.min
                                              or max(values) > spec.dtype.max):
            raise _invalid(f"input {key!r}: values out of range for {spec.dtype.name}")
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise _invalid(f"input {key!r}: {error}") from error


def _spec_model(registry: ModelRegistry, spec: Any) -> LoadedModel:
    """The model a gRPC ModelSpec names: by version, by label, or the newest.

    Raises:
        ServingError: TF Serving's code for an unknown model, version or label.
    """
    choice = spec.WhichOneof("version_choice")
    return registry.get(spec.name, spec.version.value if choice == "version" else None,
                        spec.version_label if choice == "version_label" else "")


def _predict(registry: ModelRegistry, request: predict_pb2.PredictRequest
             ) -> predict_pb2.PredictResponse:
    model = _spec_model(registry, request.model_spec)
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    specs = model.input_specs(signature_name)
    _check_input_names(request.inputs, specs)
    outputs = predict(model, signature_name, {
        key: tensor_from_proto(key, request.inputs[key], spec) for key, spec in specs.items()})
    wanted = list(request.output_filter) or list(outputs)
    unknown = sorted(set(wanted) - set(outputs))
    if unknown or len(set(wanted)) != len(wanted):
        raise _invalid(f"output_filter must name distinct outputs of {sorted(outputs)}; "
                       f"received {list(request.output_filter)}")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model.name
    response.model_spec.version.value = model.version
    response.model_spec.signature_name = signature_name
    for key in wanted:
        response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
    return response


def _metadata(registry: ModelRegistry, request: get_model_metadata_pb2.GetModelMetadataRequest
              ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if list(request.metadata_field) != ["signature_def"]:
        raise _invalid("Metadata field signature_def is the only one supported; received "
                       f"{list(request.metadata_field)[:5]}")
    model = _spec_model(registry, request.model_spec)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in model.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(value)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model.name
    response.model_spec.version.value = model.version
    response.metadata["signature_def"].Pack(signature_map)
    return response


def _model_status(registry: ModelRegistry, request: get_model_status_pb2.GetModelStatusRequest
                  ) -> get_model_status_pb2.GetModelStatusResponse:
    spec = request.model_spec
    choice = spec.WhichOneof("version_choice")
    statuses = registry.status(spec.name, spec.version.value if choice == "version" else None,
                               spec.version_label if choice == "version_label" else "")
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
        entry.status.error_code = status.error_code.value[0]
        entry.status.error_message = status.error_message
    return response


def _grpc_method(registry: ModelRegistry, handler: Callable, request_type: type
                 ) -> grpc.RpcMethodHandler:
    """A unary method taking the request's bytes, so that a malformed message is the
    client's INVALID_ARGUMENT rather than grpc's INTERNAL "Exception deserializing request"."""
    def call(data: bytes, context: grpc.ServicerContext) -> bytes:
        request = request_type()
        try:
            parsed = request.MergeFromString(data)
        except protobuf_message.DecodeError as error:
            parsed, reason = -1, str(error)
        else:
            reason = f"an end-group tag at byte {parsed} of {len(data)}"  # The parser stops.
        if parsed != len(data):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"could not parse a {request_type.DESCRIPTOR.full_name}: {reason}")
        try:
            return handler(registry, request).SerializeToString()
        except ServingError as error:
            context.abort(error.code, error.message)

    return grpc.unary_unary_rpc_method_handler(call)


def _grpc_handlers(registry: ModelRegistry) -> list[grpc.GenericRpcHandler]:
    predictions = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    models = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
    return [
        grpc.method_handlers_generic_handler(predictions.full_name, {
            "Predict": _grpc_method(registry, _predict, predict_pb2.PredictRequest),
            "GetModelMetadata": _grpc_method(registry, _metadata,
                                             get_model_metadata_pb2.GetModelMetadataRequest)}),
        grpc.method_handlers_generic_handler(models.full_name, {
            "GetModelStatus": _grpc_method(registry, _model_status,
                                           get_model_status_pb2.GetModelStatusRequest)}),
    ]


def _default_workers() -> int:
    """Two workers per core the process may run on: a TensorFlow call releases the GIL, so a
    second thread per core parses and encodes while the first computes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 * (cores or 1)


_RUNNING: set["ModelServer"] = set()
"""Started servers not yet stopped."""


class ModelServer:
    """REST and gRPC front ends over one `ModelRegistry`, sharing one worker pool for their
    TensorFlow calls.

    Args:
        registry: the loaded models.
        host: interface to bind; loopback by default.
        rest_port: 0 picks a free port (see `rest_port`).
        grpc_port: 0 picks a free port.
        workers: threads running predictions (REST) and handlers (gRPC); None sizes the pool
            for the cores this process may use.
        http_limits: read timeouts and size caps of every REST connection; the body cap is
            also the largest gRPC message.

    Example:
        server = ModelServer(ModelRegistry(base, ("ranker",)), rest_port=8501, grpc_port=8500)
        server.start()
        ...
        server.stop()
    """

    def __init__(self, registry: ModelRegistry, host: str = "127.0.0.1", rest_port: int = 0,
                 grpc_port: int = 0, workers: int | None = None,
                 http_limits: HttpLimits = HttpLimits(max_body_bytes=MAX_BODY_BYTES)) -> None:
        require(workers is None or workers >= 1, "workers", ">= 1 or None", workers)
        self.registry = registry
        self.host = host
        self._workers = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers or _default_workers(), thread_name_prefix="model-server")
        self._rest = BackgroundServer(_RestApp(registry, self._workers), http_limits, host,
                                      rest_port)
        self._grpc = grpc.server(
            self._workers, handlers=_grpc_handlers(registry),
            options=[("grpc.max_receive_message_length", http_limits.max_body_bytes),
                     ("grpc.so_reuseport", 0)])  # A taken port is an error, not shared.
        self.grpc_port = self._grpc.add_insecure_port(f"{host}:{grpc_port}")
        self.rest_port = self._rest.port

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def start(self) -> "ModelServer":
        self._grpc.start()
        self._rest.start()
        _RUNNING.add(self)  # Serves until stopped, held or not: a collected grpc.Server stops.
        return self

    def stop(self) -> None:
        _RUNNING.discard(self)
        self.registry.close()
        self._rest.stop()
        self._grpc.stop(grace=1.0).wait()
        self._workers.shutdown()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_models(base_dir: str, models: tuple[str, ...] = SERVED_MODELS, rest_port: int = 0,
                 grpc_port: int = 0, host: str = "127.0.0.1", poll_seconds: float = 0.0,
                 num_versions: int = 1, batching: bool = False,
                 labels: dict[str, dict[str, int]] | None = None) -> ModelServer:
    """Loads (and warms up) every model pushed under `base_dir` and starts serving it;
    `poll_seconds` > 0 also picks up versions pushed later (`recs serve-models`); with
    `batching`, models whose version holds `batching_params.pbtxt` batch concurrent requests
    (`serving.batching`); `labels` ({model: {label: version}}, e.g.
    {"ranker": {"stable": 3, "canary": 4}}) serves those versions under those labels too.

    Raises:
        FileNotFoundError: a model has no servable version.
    """
    registry = ModelRegistry(base_dir, models, num_versions=num_versions, labels=labels,
                             batching=batching)
    registry.load()
    if poll_seconds > 0:
        registry.start_polling(poll_seconds)
    return ModelServer(registry, host=host, rest_port=rest_port, grpc_port=grpc_port).start()


class LocalClient:
    """A `serving.client.PredictClient` over a registry in this process: the same signatures,
    checks and batching as the servers, without HTTP or gRPC (benchmarks' in-process peer,
    tests).

    Args:
        registry: the loaded models.
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def predict(self, model: str, inputs: Mapping[str, Any], signature: str = "",
                version: int | None = None, timeout: float | None = None, label: str = ""
                ) -> dict[str, np.ndarray]:
        return self.predict_versioned(model, inputs, signature, version, timeout, label)[0]

    def predict_versioned(self, model: str, inputs: Mapping[str, Any], signature: str = "",
                          version: int | None = None, timeout: float | None = None,
                          label: str = "") -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs and the version that computed them (by number, label, or the newest).

        Raises:
            serving.client.ModelServerError: the registry refused the request.
        """
        from serving.client import ModelServerError, check_version_choice

        check_version_choice(version, label)
        try:
            loaded = self.registry.get(model, version, label)
            arrays = {key: np.asarray(value, dtype=object)
                      if np.asarray(value).dtype.kind in "SUO" else np.asarray(value)
                      for key, value in inputs.items()}
            return predict(loaded, signature, arrays), loaded.version
        except ServingError as error:
            raise ModelServerError(error.code.name, error.message) from error

    def available_versions(self, model: str, timeout: float | None = None, label: str = ""
                           ) -> list[int]:
        """Loaded versions of `model`; with `label`, the one it points to ([] if none)."""
        try:
            if label:
                return [status.version for status in self.registry.status(model, label=label)
                        if status.state == "AVAILABLE"]
            return self.registry.versions(model)
        except ServingError:
            return []
