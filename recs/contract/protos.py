"""TensorProtos of the serving protocol, byte for byte.

Kept apart from the rest of the contract because it needs TensorFlow's protos: the gRPC client,
the model server and the warmup-request writer import it; a REST-only process does not.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2


def string_tensor_proto(values: list[bytes], shape: list[int]) -> tensor_pb2.TensorProto:
    """A DT_STRING TensorProto holding `values` byte for byte.

    `tf.make_tensor_proto` goes through NumPy's fixed-width bytes, which drops trailing NUL
    bytes; a serialized tf.Example often ends in one.
    """
    return tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=values,
                                  tensor_shape=tf.TensorShape(shape).as_proto())


def tensor_proto(value: np.ndarray | list) -> tensor_pb2.TensorProto:
    """A TensorProto of `value`; strings keep every byte (see `string_tensor_proto`)."""
    if np.asarray(value).dtype.kind not in "SUO":
        return tf.make_tensor_proto(np.asarray(value))
    items = np.asarray(value, dtype=object)
    return string_tensor_proto([v.encode() if isinstance(v, str) else bytes(v)
                                for v in items.ravel()], list(items.shape))
