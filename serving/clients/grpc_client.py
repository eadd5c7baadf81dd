"""TF Serving's gRPC API client (`PredictionService`, `ModelService`).

Imported on demand (`serving.clients.GrpcClient`): TF Serving's protos load TensorFlow.
"""

from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from recs.contract.protos import proto_array, tensor_proto
from recs.contract.signatures import SERVING_DEFAULT
from serving.clients.base import ClientBase, ModelServerError, check_version_choice
from serving.security import ClientTls, check_token
from serving.types import Inputs

TLS_PREFIX = "https://"
"""A target written `https://host:port` is reached over TLS (as OTLP's gRPC exporters
read an endpoint); `host:port` over plain text."""


class GrpcClient(ClientBase):
    """TF Serving's gRPC `PredictionService` and `ModelService`.

    Args:
        target: `host:port`, e.g. `localhost:8500`; `https://host:port` for TLS.
        timeout: seconds per call.
        tls: over TLS, the CA the server's certificate must chain to (the system's when
            empty) and the client certificate for mutual TLS.
        token: a bearer token sent as `authorization` metadata with every call, for a
            `recs serve-models` that requires one; "" sends none.

    Raises:
        ValueError: `token` is malformed, or a TLS file cannot be read.
    """

    def __init__(self, target: str, timeout: float = 5.0, tls: ClientTls = ClientTls(),
                 token: str = "") -> None:
        if token:
            check_token(token, "token")
        if target.startswith(TLS_PREFIX):
            root, key, chain = tls.pems()
            self._channel = grpc.secure_channel(
                target.removeprefix(TLS_PREFIX),
                grpc.ssl_channel_credentials(root, key, chain))
        else:
            self._channel = grpc.insecure_channel(target)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.timeout = timeout
        self._input_dtypes: dict[tuple[str, int | None, str, str], dict[str, tf.DType]] = {}

    def _dtypes(self, model: str, version: int | None, signature: str, label: str = ""
                ) -> dict[str, tf.DType]:
        """The signature's input dtypes, read once from GetModelMetadata: TF Serving feeds a
        tensor as it is sent, so float64 values for a DT_FLOAT input are refused."""
        key = (model, version, label, signature or SERVING_DEFAULT)
        if key not in self._input_dtypes:
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            _spec(request.model_spec, model, version, label)
            try:
                response = self._predictions.GetModelMetadata(request, timeout=self.timeout,
                                                               metadata=self._metadata)
            except grpc.RpcError as error:
                raise ModelServerError(error.code().name, error.details()) from error
            signatures = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            inputs = signatures.signature_def[key[3]].inputs
            self._input_dtypes[key] = {name: tf.dtypes.as_dtype(info.dtype)
                                       for name, info in inputs.items()}
        return self._input_dtypes[key]

    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None,
                          label: str = "") -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs and the version that computed them, which gRPC answers name."""
        request = predict_pb2.PredictRequest()
        _spec(request.model_spec, model, version, label)
        request.model_spec.signature_name = signature
        dtypes = self._dtypes(model, version, signature, label)
        for key, value in inputs.items():
            try:
                request.inputs[key].CopyFrom(tensor_proto(value, dtypes.get(key)))
            except TypeError as error:
                # Refused here as the server would refuse it, so that every client answers a
                # value of the wrong kind alike.
                raise ModelServerError("INVALID_ARGUMENT", f"input {key!r}: {error}") from error
        try:
            response = self._predictions.Predict(request, timeout=timeout or self.timeout,
                                                 metadata=self._metadata)
        except grpc.RpcError as error:
            raise ModelServerError(error.code().name, error.details()) from error
        outputs = {key: proto_array(value) for key, value in response.outputs.items()}
        return outputs, response.model_spec.version.value or None

    def status(self, model: str, timeout: float | None = None, label: str = ""
               ) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        _spec(request.model_spec, model, None, label)
        try:
            return self._models.GetModelStatus(request, timeout=timeout or self.timeout,
                                               metadata=self._metadata)
        except grpc.RpcError as error:
            raise ModelServerError(error.code().name, error.details()) from error

    def available_versions(self, model: str, timeout: float | None = None, label: str = ""
                           ) -> list[int]:
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return sorted(status.version for status in
                      self.status(model, timeout, label).model_version_status
                      if status.state == available)

    def close(self) -> None:
        self._channel.close()


def _spec(spec: Any, model: str, version: int | None, label: str) -> None:
    """Fills a ModelSpec: by version number, by version label, or neither (the newest)."""
    check_version_choice(version, label)
    spec.name = model
    if label:
        spec.version_label = label
    elif version is not None:
        spec.version.value = version
