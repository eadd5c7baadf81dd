"""TF Serving's RESTful API client (columnar "inputs" format): the same code talks to the local
model server and to a real `tensorflow/serving` deployment. Needs only NumPy and urllib3.
"""

import base64
import json
from typing import Any

import numpy as np

from recs.contract.signatures import SERVING_DEFAULT
from serving.clients.base import ClientBase, ModelServerError, check_version_choice
from serving.types import Inputs


def _json_column(value: np.ndarray | list) -> Any:
    """An input as TF Serving's JSON: bytes as {"b64": ...} (serialized tf.Examples), text and
    numbers as themselves."""
    items = np.asarray(value, dtype=object) if np.asarray(value).dtype.kind in "SO" else None
    if items is None:
        return np.asarray(value).tolist()
    return np.vectorize(lambda v: {"b64": base64.b64encode(v).decode()}
                        if isinstance(v, bytes) else v, otypes=[object])(items).tolist()


class RestClient(ClientBase):
    """TF Serving's RESTful API, columnar ("inputs") format.

    Args:
        base_url: e.g. `http://localhost:8501`.
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, connections: int = 32) -> None:
        import urllib3

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._output_names: dict[tuple[str, int | None, str, str], str] = {}
        # Keep-alive connections: a new TCP connection (and a new server thread) per call
        # would cost more than a small model call.
        self._pool = urllib3.PoolManager(maxsize=connections, block=False, retries=False)

    def _model_url(self, model: str, version: int | None, label: str = "") -> str:
        check_version_choice(version, label)
        url = f"{self.base_url}/v1/models/{model}"
        if label:
            return f"{url}/labels/{label}"
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

    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None,
                          label: str = "") -> tuple[dict[str, np.ndarray], int | None]:
        """TF Serving's REST predict response does not name the version: None unless pinned
        by number (a label's version is read from `available_versions(model, label=...)`)."""
        body: dict[str, Any] = {"inputs": {key: _json_column(value)
                                           for key, value in inputs.items()}}
        if signature:
            body["signature_name"] = signature
        outputs = self._call(f"{self._model_url(model, version, label)}:predict", body,
                             timeout)["outputs"]
        if not isinstance(outputs, dict):
            # TF Serving drops the name of a signature's only output; recover it from metadata
            # so that REST and gRPC callers see the same keys.
            outputs = {self._only_output_name(model, version, signature, label): outputs}
        return {key: np.asarray(value) for key, value in outputs.items()}, version

    def _only_output_name(self, model: str, version: int | None, signature: str,
                          label: str = "") -> str:
        key = (model, version, label, signature or SERVING_DEFAULT)
        if key not in self._output_names:
            signatures = self.metadata(model, version, label)["metadata"]["signature_def"][
                "signature_def"]
            (self._output_names[key],) = signatures[key[3]]["outputs"]
        return self._output_names[key]

    def status(self, model: str, version: int | None = None,
               timeout: float | None = None, label: str = "") -> dict[str, Any]:
        return self._call(self._model_url(model, version, label), timeout=timeout)

    def available_versions(self, model: str, timeout: float | None = None, label: str = ""
                           ) -> list[int]:
        return sorted(int(status["version"]) for status in
                      self.status(model, timeout=timeout, label=label).get(
                          "model_version_status", [])
                      if status.get("state") == "AVAILABLE")

    def metadata(self, model: str, version: int | None = None, label: str = ""
                 ) -> dict[str, Any]:
        return self._call(f"{self._model_url(model, version, label)}/metadata")
