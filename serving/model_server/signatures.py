"""Running a servable's signatures on NumPy inputs: inputs checked against the signature
(names, dtypes, shapes; nothing cast across kinds), batched with concurrent requests when the
model is, and warmup replayed before a version takes traffic."""

import os
from typing import Any

import grpc
import numpy as np
import tensorflow as tf

from recs.contract.models import ASSETS_EXTRA, WARMUP_FILE
from recs.contract.signatures import SERVING_DEFAULT
from serving.model_server.batching import Overloaded, ShapeMismatch
from serving.model_server.errors import CODE_BY_NUMBER, ServingError, invalid_argument
from serving.model_server.servable import LoadedModel
from serving.model_server.specs import check_input_names, shape_fits, shape_text


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
        raise invalid_argument(f"input {key!r} must be {dtype.name}; received {array.dtype.name}")
    return array if dtype == tf.string else array.astype(dtype.as_numpy_dtype, copy=False)


def _checked_inputs(function: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs as arrays of the signature's dtypes and shapes.

    Raises:
        ServingError: INVALID_ARGUMENT for inputs that do not match its names, dtypes or
            shapes (see `_input_array`).
    """
    expected = function.structured_input_signature[1]
    check_input_names(inputs, expected)
    arrays = {}
    for key, spec in expected.items():
        array = _input_array(key, inputs[key], spec)
        if not shape_fits(spec.shape, array.shape):
            raise invalid_argument(f"input {key!r} must have shape {shape_text(spec.shape)}; "
                                   f"received {list(array.shape)}")
        arrays[key] = array
    return arrays


def _flat_inputs(function: Any) -> tuple[str, ...] | None:
    """The input names of a signature in the order its graph takes them, when it can be
    called with them as a list (every signature of a SavedModel TensorFlow 2.16 loads can);
    None otherwise."""
    order = getattr(function, "_arg_keywords", None)
    expected = function.structured_input_signature[1]
    if (order is None or not hasattr(function, "_call_flat")
            or sorted(order) != sorted(expected) or function.structured_input_signature[0]):
        return None
    return tuple(order)


def _call(function: Any, signature_name: str, arrays: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    expected = function.structured_input_signature[1]
    tensors = {}
    for key, array in arrays.items():
        try:
            tensors[key] = tf.constant(array, dtype=expected[key].dtype)
        except (TypeError, ValueError) as error:  # e.g. an object array holding numbers
            raise invalid_argument(f"input {key!r} must be {expected[key].dtype.name} of shape "
                                   f"{shape_text(expected[key].shape)}: {error}") from error
    order = _flat_inputs(function)
    try:
        if order is None:
            outputs = function(**tensors)
        else:
            # The inputs as the list the graph takes: the keyword call's binding of names
            # to its function type costs about as much Python as the rest of a request.
            outputs = function._call_flat([tensors[key] for key in order],
                                          function.captured_inputs)
    except tf.errors.OpError as error:
        raise ServingError(CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN),
                           error.message) from error
    except UnicodeDecodeError as error:
        # TensorFlow quotes the offending (binary) input in its message and fails to decode it.
        raise invalid_argument(f"input could not be parsed by signature {signature_name!r}: "
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
    batcher = model.batcher(signature_name or SERVING_DEFAULT,
                            lambda batch: _call(function, signature_name, batch))
    if batcher is None:
        return _call(function, signature_name, arrays)
    try:
        return batcher.run(arrays)
    except ShapeMismatch as error:
        raise invalid_argument(str(error)) from error
    except Overloaded as error:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, str(error)) from error


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
