"""TF Serving's RESTful API client (columnar "inputs" format): the same code talks to the local
model server and to a real `tensorflow/serving` deployment. Needs only NumPy and the standard
library.
"""

import base64
import http.client
import json
import threading
import urllib.parse
from typing import Any

import numpy as np

from recs.contract.signatures import SERVING_DEFAULT
from serving.clients.base import ClientBase, ModelServerError, check_version_choice
from serving.security import ClientTls, check_token
from serving.types import Inputs


def _json_column(value: np.ndarray | list) -> Any:
    """An input as TF Serving's JSON: bytes as {"b64": ...} (serialized tf.Examples), text and
    numbers as themselves."""
    items = np.asarray(value, dtype=object) if np.asarray(value).dtype.kind in "SO" else None
    if items is None:
        return np.asarray(value).tolist()
    return np.vectorize(lambda v: {"b64": base64.b64encode(v).decode()}
                        if isinstance(v, bytes) else v, otypes=[object])(items).tolist()


class _Connections:
    """Kept-alive HTTP/1.1 connections to one server, one per calling thread (the standard
    library's `http.client`: a call costs about half of urllib3's pool, whose URL parsing and
    pool bookkeeping ran on every request of the service)."""

    def __init__(self, base_url: str, tls: ClientTls, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port]; received {base_url!r}.")
        # One context for every thread's connection: building one reads the CA files.
        self._context = tls.context() if parts.scheme == "https" else None
        self.host, self.port = parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.headers = headers
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = (
                http.client.HTTPConnection(self.host, self.port) if self._context is None
                else http.client.HTTPSConnection(self.host, self.port, context=self._context))
        return connection

    def request(self, method: str, path: str, body: bytes | None, timeout: float
                ) -> tuple[int, bytes]:
        """(status, body) of one request, each socket operation bounded by `timeout`.

        Raises:
            OSError, http.client.HTTPException: the server could not be reached or answered
                no HTTP (a timeout is a `TimeoutError`).
        """
        connection, path = self._connection(), self.prefix + path
        kept_alive = connection.sock is not None
        try:
            return _exchange(connection, method, path, body, self.headers, timeout)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not kept_alive:
                raise
        # The server had closed the idle connection: a new one (the closed one reconnects),
        # once.
        return _exchange(connection, method, path, body, self.headers, timeout)


def _exchange(connection: http.client.HTTPConnection, method: str, path: str,
              body: bytes | None, headers: dict[str, str], timeout: float
              ) -> tuple[int, bytes]:
    """One request and its whole answer on `connection`, each socket operation bounded by
    `timeout`; the connection is closed on any failure (half an answer would poison the next
    call) and when the server says it will close."""
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except BaseException:
        connection.close()
        raise
    if response.will_close:
        connection.close()
    return response.status, data


class RestClient(ClientBase):
    """TF Serving's RESTful API, columnar ("inputs") format.

    Args:
        base_url: e.g. `http://localhost:8501`, or `https://...` for TLS.
        timeout: seconds per request (each socket operation).
        tls: the CA that an `https://` server's certificate must chain to (the system's
            when empty) and the client certificate for mutual TLS; not used over `http://`.
        token: a bearer token sent with every request (`Authorization: Bearer ...`), for
            a `recs serve-models` that requires one; "" sends none.

    Raises:
        ValueError: `base_url` is not http(s)://host[:port], `token` is malformed, or a TLS
            file cannot be read.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, tls: ClientTls = ClientTls(),
                 token: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._output_names: dict[tuple[str, int | None, str, str], str] = {}
        headers = {"Content-Type": "application/json"}
        if token:
            check_token(token, "token")
            headers["Authorization"] = f"Bearer {token}"
        # Kept-alive connections: a new TCP connection (and a new server thread) per call
        # would cost more than a small model call.
        self._connections = _Connections(self.base_url, tls, headers)

    def _model_url(self, model: str, version: int | None, label: str = "") -> str:
        """The model's path on the server (the base URL's host is the connection's)."""
        check_version_choice(version, label)
        url = f"/v1/models/{model}"
        if label:
            return f"{url}/labels/{label}"
        return f"{url}/versions/{version}" if version is not None else url

    def _call(self, url: str, body: dict[str, Any] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
        try:
            status, data = self._connections.request(
                "GET" if body is None else "POST", url,
                None if body is None else json.dumps(body).encode(), timeout or self.timeout)
        except TimeoutError as error:
            raise ModelServerError("DEADLINE_EXCEEDED", str(error) or "timed out") from error
        except (OSError, http.client.HTTPException) as error:
            raise ModelServerError("UNAVAILABLE", f"{type(error).__name__}: {error}") from error
        text = data.decode(errors="replace")
        if status != 200:
            try:
                message = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                message = text
            raise ModelServerError(status, message)
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
