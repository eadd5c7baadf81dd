"""TensorProtos of the serving protocol, byte for byte.

Kept apart from the rest of the contract because it needs TensorFlow's protos: the gRPC client,
the model server and the warmup-request writer import it; a REST-only process does not.
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from recs.contract.models import SAVED_MODEL_FILE


def string_tensor_proto(values: list[bytes], shape: list[int]) -> tensor_pb2.TensorProto:
    """A DT_STRING TensorProto holding `values` byte for byte.

    `tf.make_tensor_proto` goes through NumPy's fixed-width bytes, which drops trailing NUL
    bytes; a serialized tf.Example often ends in one.
    """
    return tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=values,
                                  tensor_shape=tf.TensorShape(shape).as_proto())


def tensor_proto(value: np.ndarray | list, dtype: tf.DType | None = None
                 ) -> tensor_pb2.TensorProto:
    """A TensorProto of `value`, as `dtype` when given: numbers are converted within their kind
    only (float64 to float32, never a float to an integer: TF Serving feeds a tensor as it is
    sent and refuses another dtype); strings keep every byte (see `string_tensor_proto`).

    Raises:
        TypeError: `value` cannot become `dtype` without changing kind.
    """
    if np.asarray(value).dtype.kind not in "SUO":
        array = np.asarray(value)
        if dtype is not None and dtype != tf.string:
            array = array.astype(dtype.as_numpy_dtype, casting="same_kind")
        return tf.make_tensor_proto(array)
    items = np.asarray(value, dtype=object)
    return string_tensor_proto([v.encode() if isinstance(v, str) else bytes(v)
                                for v in items.ravel()], list(items.shape))


def signature_defs(saved_model_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of a SavedModel as TF Serving reads them (from `saved_model.pb`,
    without loading the model), internal ones (`__saved_model_init_op`) left out."""
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, SAVED_MODEL_FILE), "rb") as handle:
        proto.ParseFromString(handle.read())
    return {key: value for key, value in proto.meta_graphs[0].signature_def.items()
            if not key.startswith("__")}
