"""TensorProtos of the serving protocol, byte for byte.

Kept apart from the rest of the contract because it needs TensorFlow's protos: the gRPC client,
the model server and the warmup-request writer import it; a REST-only process does not.
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from recs.contract.models import SAVED_MODEL_FILE

_CONTENT = {np.dtype(dtype): tf.as_dtype(dtype).as_datatype_enum
            for dtype in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                          np.int64, np.uint8, np.uint32, np.uint64)}
"""NumPy dtypes whose tensors of more than one element `tf.make_tensor_proto` writes as raw
little-endian bytes in `tensor_content`, and their DataType enums."""
_STRING = types_pb2.DT_STRING
VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val", types_pb2.DT_HALF: "half_val",
}
"""The repeated field of a TensorProto that holds each dtype's values (tensor.proto)."""
_VALUE_FIELD = {enum: field for enum, field in VALUE_FIELD.items()
                if enum not in (types_pb2.DT_STRING, types_pb2.DT_HALF)}
"""The numbers whose field holds them as themselves (half_val holds float16 bits)."""
_DTYPE = {enum: np.dtype(tf.as_dtype(enum).as_numpy_dtype) for enum in _VALUE_FIELD}
_NUMBER = {dtype: enum for enum, dtype in _DTYPE.items()}


def _set_shape(proto: tensor_pb2.TensorProto, shape: tuple[int, ...] | list[int]) -> None:
    proto.tensor_shape.SetInParent()  # A scalar's shape is present and empty.
    dims = proto.tensor_shape.dim
    for size in shape:
        dims.add(size=size)


def string_tensor_proto(values: list[bytes], shape: list[int]) -> tensor_pb2.TensorProto:
    """A DT_STRING TensorProto holding `values` byte for byte.

    `tf.make_tensor_proto` goes through NumPy's fixed-width bytes, which drops trailing NUL
    bytes; a serialized tf.Example often ends in one.
    """
    proto = tensor_pb2.TensorProto(dtype=_STRING, string_val=values)
    _set_shape(proto, shape)
    return proto


def array_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """The TensorProto of an array, byte for byte what `tf.make_tensor_proto` writes for it
    (numbers in `tensor_content`, strings in `string_val`) without its per-call cost: the
    request and response path encodes every input and output with it.

    Raises:
        TypeError: an object array holding something other than bytes or text.
    """
    if array.dtype.kind in "SUO":
        values = [value.encode() if isinstance(value, str) else value
                  for value in array.ravel().tolist()]
        if not all(isinstance(value, bytes) for value in values):
            raise TypeError(f"expected bytes or text for a string tensor; received "
                            f"{sorted({type(v).__name__ for v in values})}")
        return string_tensor_proto(values, array.shape)
    if array.size > 1 and array.dtype in _CONTENT:
        # Native byte order is little-endian on every platform TensorFlow serves from.
        proto = tensor_pb2.TensorProto(dtype=_CONTENT[array.dtype],
                                       tensor_content=np.ascontiguousarray(array).tobytes())
    elif array.size <= 1 and array.dtype in _NUMBER:  # Its value in the dtype's field.
        proto = tensor_pb2.TensorProto(dtype=_NUMBER[array.dtype])
        getattr(proto, _VALUE_FIELD[proto.dtype]).extend(array.ravel().tolist())
    else:
        return tf.make_tensor_proto(array)  # Many bools, float16 scalars, rare kinds.
    _set_shape(proto, array.shape)
    return proto


def proto_array(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The array a TensorProto holds, as `tf.make_ndarray` reads it (strings as an object
    array of bytes; a writable copy), without its per-call cost. Any layout but the plain
    ones (numbers in `tensor_content` or one value per element, strings one per element) is
    left to `tf.make_ndarray`.
    """
    shape = [dim.size for dim in proto.tensor_shape.dim]
    count = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == _STRING and len(proto.string_val) == count:
        array = np.empty(count, dtype=object)
        array[:] = list(proto.string_val)
        return array.reshape(shape)
    dtype = _DTYPE.get(proto.dtype)
    if dtype is not None:  # Not float16, whose half_val holds bits.
        if proto.tensor_content:
            if len(proto.tensor_content) == count * dtype.itemsize:
                return np.frombuffer(proto.tensor_content, dtype).reshape(shape).copy()
        else:
            values = getattr(proto, _VALUE_FIELD[proto.dtype])
            if len(values) == count:
                return np.array(values, dtype=dtype).reshape(shape)
    return tf.make_ndarray(proto)


def tensor_proto(value: np.ndarray | list, dtype: tf.DType | None = None
                 ) -> tensor_pb2.TensorProto:
    """A TensorProto of `value`, as `dtype` when given: numbers are converted within their kind
    only (float64 to float32, never a float to an integer: TF Serving feeds a tensor as it is
    sent and refuses another dtype); strings keep every byte (see `string_tensor_proto`).

    Raises:
        TypeError: `value` cannot become `dtype` without changing kind.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "SUO":
        if dtype is not None and dtype != tf.string:
            array = array.astype(dtype.as_numpy_dtype, casting="same_kind", copy=False)
        return array_proto(array)
    items = np.asarray(value, dtype=object)
    return string_tensor_proto([v.encode() if isinstance(v, str) else bytes(v)
                                for v in items.ravel().tolist()], list(items.shape))


def signature_defs(saved_model_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of a SavedModel as TF Serving reads them (from `saved_model.pb`,
    without loading the model), internal ones (`__saved_model_init_op`) left out."""
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, SAVED_MODEL_FILE), "rb") as handle:
        proto.ParseFromString(handle.read())
    return {key: value for key, value in proto.meta_graphs[0].signature_def.items()
            if not key.startswith("__")}
