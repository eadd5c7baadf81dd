"""gRPC: TensorProtos checked against a signature's specs before anything is allocated, and
TF Serving's services over a toy servable (no trained world)."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.model_server.errors import MAX_BODY_BYTES, ServingError
from serving.model_server.grpc_api import tensor_from_proto

FLOATS = tf.TensorSpec([None, 2], tf.float32)


def _proto(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


def test_a_tensor_matching_its_spec_is_decoded():
    array = tensor_from_proto("x", tf.make_tensor_proto(np.ones((3, 2), np.float32)), FLOATS)
    assert array.shape == (3, 2) and array.dtype == np.float32
    # One value stands for all, as tf.make_tensor_proto writes a filled tensor.
    filled = tensor_from_proto("x", _proto(types_pb2.DT_FLOAT, [2, 2], float_val=[7.0]), FLOATS)
    assert filled.tolist() == [[7.0, 7.0], [7.0, 7.0]]


@pytest.mark.parametrize("proto, message", [
    (_proto(types_pb2.DT_DOUBLE, [1, 2], double_val=[1, 2]), "expects DT_FLOAT but DT_DOUBLE"),
    (_proto(999, [1, 2]), "an invalid dtype (999)"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.
                            TensorShapeProto(unknown_rank=True)), "shape must be known"),
    (_proto(types_pb2.DT_FLOAT, [1, 3], float_val=[1, 2, 3]), "must have shape [-1,2]"),
    (_proto(types_pb2.DT_FLOAT, [-1, 2]), "sizes >= 0"),
    (_proto(types_pb2.DT_FLOAT, [MAX_BODY_BYTES, 2], float_val=[1]), "at most"),
    (_proto(types_pb2.DT_FLOAT, [2, 2], float_val=[1, 2, 3]), "3 values for shape [2, 2]"),
    (_proto(types_pb2.DT_FLOAT, [1, 2], tensor_content=b"\x00" * 7), "holds 7 bytes"),
])
def test_a_tensor_not_matching_its_spec_is_invalid_argument_naming_the_input(proto, message):
    with pytest.raises(ServingError) as raised:
        tensor_from_proto("x", proto, FLOATS)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'x'" in raised.value.message and message in raised.value.message


def test_ints_out_of_range_and_strings_in_tensor_content_are_refused():
    with pytest.raises(ServingError, match="out of range for int8"):
        tensor_from_proto("n", _proto(types_pb2.DT_INT8, [1], int_val=[300]),
                          tf.TensorSpec([None], tf.int8))
    with pytest.raises(ServingError, match="strings go in string_val"):
        tensor_from_proto("s", _proto(types_pb2.DT_STRING, [1], tensor_content=b"ab"),
                          tf.TensorSpec([None], tf.string))


def test_predict_and_model_status_over_grpc(toy_server):
    with grpc.insecure_channel(toy_server.grpc_target) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "toy"
        request.model_spec.signature_name = "double"
        request.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([1, 5], np.int64)))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30)
        assert tf.make_ndarray(response.outputs["doubled"]).tolist() == [2, 10]
        assert response.model_spec.version.value == 1
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "toy"
        answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status,
                                                                                timeout=30)
        assert [(s.version, s.state) for s in answer.model_version_status] == [
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
        request.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        with pytest.raises(grpc.RpcError) as raised:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                               timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
