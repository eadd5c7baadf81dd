"""Clients of TF Serving's REST and gRPC APIs; the same code talks to the local model server
and to a real `tensorflow/serving` deployment.
"""

import base64
import json
from typing import Any, Mapping, Protocol

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from recs.export import string_tensor_proto

Inputs = Mapping[str, np.ndarray | list]


def tensor_proto(value: np.ndarray | list) -> Any:
    """A TensorProto of `value`; strings keep every byte (serialized tf.Examples end in NUL
    bytes, which NumPy's fixed-width bytes would drop)."""
    if np.asarray(value).dtype.kind not in "SUO":
        return tf.make_tensor_proto(np.asarray(value))
    items = np.asarray(value, dtype=object)
    return string_tensor_proto([v.encode() if isinstance(v, str) else bytes(v)
                                for v in items.ravel()], list(items.shape))


def _json_column(value: np.ndarray | list) -> Any:
    """An input as TF Serving's JSON: bytes as {"b64": ...} (serialized tf.Examples), text and
    numbers as themselves."""
    items = np.asarray(value, dtype=object) if np.asarray(value).dtype.kind in "SO" else None
    if items is None:
        return np.asarray(value).tolist()
    return np.vectorize(lambda v: {"b64": base64.b64encode(v).decode()}
                        if isinstance(v, bytes) else v, otypes=[object])(items).tolist()


class ModelServerError(RuntimeError):
    """The model server refused or failed a request; `status` is HTTP or a gRPC code name."""

    def __init__(self, status: int | str, message: str) -> None:
        super().__init__(f"model server answered {status}: {message}")
        self.status = status
        self.message = message


class PredictClient(Protocol):
    """What the recommendation service needs from a model server."""

    def predict(self, model: str, inputs: Inputs, signature: str = "",
                version: int | None = None, timeout: float | None = None
                ) -> dict[str, np.ndarray]:
        ...

    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None
                          ) -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs and the version that computed them (None when the protocol omits it)."""
        ...

    def available_versions(self, model: str, timeout: float | None = None) -> list[int]:
        ...


class RestClient:
    """TF Serving's RESTful API, columnar ("inputs") format.

    Args:
        base_url: e.g. `http://localhost:8501`.
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, connections: int = 32) -> None:
        import urllib3

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._output_names: dict[tuple[str, int | None, str], str] = {}
        # Keep-alive connections: a new TCP connection (and a new server thread) per call
        # would cost more than a small model call.
        self._pool = urllib3.PoolManager(maxsize=connections, block=False, retries=False)

    def _model_url(self, model: str, version: int | None) -> str:
        url = f"{self.base_url}/v1/models/{model}"
        return f"{url}/versions/{version}" if version is not None else url

    def _call(self, url: str, body: dict[str, Any] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
        import urllib3

        try:
            response = self._pool.request(
                "GET" if body is None else "POST", url,
                body=None if body is None else json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                timeout=urllib3.Timeout(total=timeout or self.timeout))
        except urllib3.exceptions.NewConnectionError as error:
            # Checked first: urllib3 1.26 derives it from ConnectTimeoutError.
            raise ModelServerError("UNAVAILABLE", str(error)) from error
        except (urllib3.exceptions.TimeoutError, TimeoutError) as error:
            raise ModelServerError("DEADLINE_EXCEEDED", str(error)) from error
        except (urllib3.exceptions.HTTPError, ConnectionError) as error:
            raise ModelServerError("UNAVAILABLE", str(error)) from error
        text = response.data.decode(errors="replace")
        if response.status != 200:
            try:
                message = json.loads(text).get("error", text)
            except ValueError:
                message = text
            raise ModelServerError(response.status, message)
        return json.loads(text)

    def predict(self, model: str, inputs: Inputs, signature: str = "",
                version: int | None = None, timeout: float | None = None
                ) -> dict[str, np.ndarray]:
        return self.predict_versioned(model, inputs, signature, version, timeout)[0]

    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None
                          ) -> tuple[dict[str, np.ndarray], int | None]:
        """TF Serving's REST predict response does not name the version: None unless pinned."""
        body: dict[str, Any] = {"inputs": {key: _json_column(value)
                                           for key, value in inputs.items()}}
        if signature:
            body["signature_name"] = signature
        outputs = self._call(f"{self._model_url(model, version)}:predict", body,
                             timeout)["outputs"]
        if not isinstance(outputs, dict):
            # TF Serving drops the name of a signature's only output; recover it from metadata
            # so that REST and gRPC callers see the same keys.
            outputs = {self._only_output_name(model, version, signature): outputs}
        return {key: np.asarray(value) for key, value in outputs.items()}, version

    def _only_output_name(self, model: str, version: int | None, signature: str) -> str:
        key = (model, version, signature or "serving_default")
        if key not in self._output_names:
            signatures = self.metadata(model, version)["metadata"]["signature_def"][
                "signature_def"]
            (self._output_names[key],) = signatures[key[2]]["outputs"]
        return self._output_names[key]

    def status(self, model: str, version: int | None = None,
               timeout: float | None = None) -> dict[str, Any]:
        return self._call(self._model_url(model, version), timeout=timeout)

    def available_versions(self, model: str, timeout: float | None = None) -> list[int]:
        return sorted(int(status["version"]) for status in
                      self.status(model, timeout=timeout).get("model_version_status", [])
                      if status.get("state") == "AVAILABLE")

    def metadata(self, model: str, version: int | None = None) -> dict[str, Any]:
        return self._call(f"{self._model_url(model, version)}/metadata")


class GrpcClient:
    """TF Serving's gRPC `PredictionService` and `ModelService`.

    Args:
        target: `host:port`, e.g. `localhost:8500`.
        timeout: seconds per call.
    """

    def __init__(self, target: str, timeout: float = 5.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.timeout = timeout

    def predict(self, model: str, inputs: Inputs, signature: str = "",
                version: int | None = None, timeout: float | None = None
                ) -> dict[str, np.ndarray]:
        return self.predict_versioned(model, inputs, signature, version, timeout)[0]

    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None
                          ) -> tuple[dict[str, np.ndarray], int | None]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tensor_proto(value))
        try:
            response = self._predictions.Predict(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise ModelServerError(error.code().name, error.details()) from error
        outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
        return outputs, response.model_spec.version.value or None

    def status(self, model: str, timeout: float | None = None
               ) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        try:
            return self._models.GetModelStatus(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise ModelServerError(error.code().name, error.details()) from error

    def available_versions(self, model: str, timeout: float | None = None) -> list[int]:
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return sorted(status.version for status in
                      self.status(model, timeout).model_version_status
                      if status.state == available)

    def close(self) -> None:
        self._channel.close()
