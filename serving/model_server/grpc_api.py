"""TF Serving's gRPC services (PredictionService: Predict, GetModelMetadata; ModelService:
GetModelStatus) over a registry: request bytes -> message (a malformed one is
INVALID_ARGUMENT) -> each input's TensorProto decoded against its spec -> the signature ->
response; with tokens, `TokenInterceptor` checks each call's bearer token first."""

import math
from typing import Any, Callable

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import message as protobuf_message
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2, predict_pb2, prediction_service_pb2)

from recs.contract.protos import VALUE_FIELD, array_proto, proto_array
from recs.contract.signatures import SERVING_DEFAULT
from serving.model_server.errors import MAX_BODY_BYTES, ServingError, invalid_argument
from serving.model_server.memory import release_after
from serving.model_server.registry import ModelRegistry
from serving.model_server.servable import LoadedModel
from serving.model_server.signatures import predict
from serving.model_server.specs import check_input_names, shape_fits, shape_text
from serving.security import BearerTokens


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
        raise invalid_argument(f"input {key!r}: expects {types_pb2.DataType.Name(expected)} but "
                               f"{_dtype_name(proto.dtype)} is provided")
    if expected not in VALUE_FIELD:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           f"input {key!r}: decoding {spec.dtype.name} tensors")
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"input {key!r}: the tensor's shape must be known")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    itemsize = np.dtype(spec.dtype.as_numpy_dtype).itemsize
    limit = MAX_BODY_BYTES // itemsize
    if any(size < 0 or size > limit for size in dims) or math.prod(dims) > limit:
        raise invalid_argument(f"input {key!r}: shape {dims[:8]} must have sizes >= 0 and at most "
                               f"{limit} elements")
    if not shape_fits(spec.shape, dims):
        raise invalid_argument(f"input {key!r} must have shape {shape_text(spec.shape)}; "
                               f"received {dims}")
    count = math.prod(dims)
    field = VALUE_FIELD[expected]
    if proto.tensor_content:
        if field == "string_val" or len(proto.tensor_content) != count * itemsize:
            raise invalid_argument(
                f"input {key!r}: tensor_content holds {len(proto.tensor_content)} bytes; shape "
                f"{dims} of {spec.dtype.name} needs {count * itemsize}"
                + (" (strings go in string_val)" if field == "string_val" else ""))
    else:
        values = getattr(proto, field)
        if len(values) != count and not (len(values) == 1 and count > 0):
            raise invalid_argument(f"input {key!r}: {len(values)} values for shape {dims} of "
                                   f"{count} elements")
        if field == "int_val" and values and (min(values) < spec.dtype.min
                                              or max(values) > spec.dtype.max):
            raise invalid_argument(f"input {key!r}: values out of range for {spec.dtype.name}")
    try:
        return proto_array(proto)
    except (TypeError, ValueError) as error:
        raise invalid_argument(f"input {key!r}: {error}") from error


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
    signature_name = request.model_spec.signature_name or SERVING_DEFAULT
    specs = model.input_specs(signature_name)
    check_input_names(request.inputs, specs)
    outputs = predict(model, signature_name, {
        key: tensor_from_proto(key, request.inputs[key], spec) for key, spec in specs.items()})
    wanted = list(request.output_filter) or list(outputs)
    unknown = sorted(set(wanted) - set(outputs))
    if unknown or len(set(wanted)) != len(wanted):
        raise invalid_argument(f"output_filter must name distinct outputs of {sorted(outputs)}; "
                               f"received {list(request.output_filter)}")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model.name
    response.model_spec.version.value = model.version
    response.model_spec.signature_name = signature_name
    for key in wanted:
        response.outputs[key].CopyFrom(array_proto(outputs[key]))
    return response


def _metadata(registry: ModelRegistry, request: get_model_metadata_pb2.GetModelMetadataRequest
              ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if list(request.metadata_field) != ["signature_def"]:
        raise invalid_argument("Metadata field signature_def is the only one supported; received "
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
        finally:
            del request
            release_after(len(data))

    return grpc.unary_unary_rpc_method_handler(call)


def grpc_handlers(registry: ModelRegistry) -> list[grpc.GenericRpcHandler]:
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


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses a call whose `authorization` metadata holds no accepted bearer token
    (`Bearer <token>`) with UNAUTHENTICATED, before its request is parsed.

    Stock TF Serving has no such check: the token is this server's. A deployment of stock
    `tensorflow_model_server` encrypts gRPC with its `--ssl_config_file` and leaves who may
    call it to a service mesh or an ingress.

    Args:
        tokens: the accepted tokens.
    """

    def __init__(self, tokens: BearerTokens) -> None:
        self.tokens = tokens

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails
                          ) -> grpc.RpcMethodHandler | None:
        authorization = next((value for key, value in details.invocation_metadata
                              if key == "authorization"), None)
        reason = self.tokens.refusal(authorization)
        if reason is None:
            return continuation(details)

        def refuse(_request: bytes, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

        return grpc.unary_unary_rpc_method_handler(refuse)  # Every method here is unary.
