"""TensorProtos of the serving protocol: the request path's codec writes what
`tf.make_tensor_proto` writes and reads what `tf.make_ndarray` reads."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from recs.contract.protos import array_proto, proto_array, tensor_proto

ARRAYS = [
    np.array([1.5, -2.25, 3.0], np.float32), np.array([[1, 2], [3, 4]], np.int32),
    np.array([7], np.int64), np.array(7.5), np.array([], np.float32), np.zeros((0, 3), np.int64),
    np.array([True, False, True]), np.array([1, 65535], np.uint16), np.array([2 ** 63], np.uint64),
    np.array([0.5, 1.5], np.float16), np.array([0.5], np.float16), np.array([[1, 2]], np.int8),
    np.array([b"a\x00", b"", b"\xff"], dtype=object), np.array(["x", "\u00e9t\u00e9"]),
    np.array([[b"ab"], [b"c"]], dtype=object), np.array([3 + 1j], np.complex64),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_arrays_encode_as_tensorflow_writes_them_and_decode_as_it_reads_them(array):
    expected = tf.make_tensor_proto(array)
    proto = array_proto(array)
    assert proto.SerializeToString() == expected.SerializeToString()
    decoded, reference = proto_array(proto), tf.make_ndarray(expected)
    assert decoded.dtype == reference.dtype and decoded.shape == reference.shape
    assert decoded.tolist() == reference.tolist()
    decoded.flat[:1] = decoded.flat[:1]  # A writable copy, as make_ndarray gives.


def _proto(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


@pytest.mark.parametrize("proto", [
    _proto(types_pb2.DT_FLOAT, [2, 2], float_val=[7.0]),  # One value stands for all.
    _proto(types_pb2.DT_INT64, [3], int64_val=[1, 2]),  # The last value repeats.
    _proto(types_pb2.DT_STRING, [3], string_val=[b"z"]),
    _proto(types_pb2.DT_INT32, [2], int_val=[5, -6]),
    _proto(types_pb2.DT_DOUBLE, [1, 2], tensor_content=np.array([1.0, 2.0]).tobytes()),
    _proto(types_pb2.DT_BOOL, [2], bool_val=[True, False]),
    _proto(types_pb2.DT_HALF, [1], half_val=[15360]),  # float16 1.0 as its bits.
])
def test_every_layout_a_client_may_send_reads_as_make_ndarray_reads_it(proto):
    decoded, reference = proto_array(proto), tf.make_ndarray(proto)
    assert decoded.dtype == reference.dtype and decoded.shape == reference.shape
    assert decoded.tolist() == reference.tolist()


def test_values_are_converted_within_their_kind_only():
    assert tensor_proto([1.5, 2.5], tf.float32).dtype == types_pb2.DT_FLOAT
    assert tensor_proto([3], tf.int64).int64_val == [3]
    assert tensor_proto(["u1"], tf.string).string_val == [b"u1"]
    with pytest.raises(TypeError):
        tensor_proto([1.5], tf.int64)  # A float never becomes an integer.
    with pytest.raises(TypeError, match="bytes or text"):
        array_proto(np.array([b"a", 3], dtype=object))
