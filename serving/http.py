"""The HTTP stack of the model server's REST API and of the recommendation service.

Both run on uvicorn with its C parser (httptools) and event loop (uvloop). uvicorn closes idle
keep-alive connections but has no limit on how long a client may take to send a request, nor
on the size of its head or body: a client that opens a socket and never writes, sends its
headers a byte a minute, or streams an endless chunked body would hold a connection (and
memory) for ever. `GuardedHttpToolsProtocol` adds those limits at the connection, before any
application code runs:

    connection opened / request begins --(head within header_timeout_s, <= max_header_bytes)-->
    head complete --(body within body_timeout_s, <= max_body_bytes)--> application

A client over a limit gets TF Serving's error envelope, `{"error": "..."}`, with 408 (too
slow), 413 (body too large) or 431 (head too large), and the connection is closed. Malformed
requests (a non-numeric or negative Content-Length, a broken request line) get 400 in the same
envelope instead of uvicorn's plain-text answer. asyncio and uvloop set TCP_NODELAY on every
accepted socket, so a response written in two parts is never held back by Nagle's algorithm.

Both servers may also run over TLS (`serving.security.ServerTls`, given to `uvicorn_config`
or `BackgroundServer`) and behind `BearerGate`, which answers a request without an accepted
bearer token 401 in the same envelope before the application sees it.
"""

import asyncio
import dataclasses
import json
import logging
import socket
import threading
import time
from typing import Any, Callable

from recs.config import Config, require
from serving.security import BearerTokens, ServerTls

try:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError as error:  # pragma: no cover - the lock file installs them
    raise ImportError("the HTTP servers need uvicorn with httptools and uvloop: "
                      "pip install 'uvicorn[standard]'") from error

class _Refused(Exception):
    """Stops the parser inside a callback once the request was refused."""


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Payload Too Large",
            431: b"Request Header Fields Too Large"}


@dataclasses.dataclass(frozen=True)
class HttpLimits(Config):
    """What a client may take, in time and bytes, before its request reaches the application.

    Attributes:
        header_timeout_s: seconds from the connection (or the first byte of a request on a
            kept-alive connection) to the end of the request head.
        body_timeout_s: seconds from the end of the head to the end of the body.
        keep_alive_s: an idle kept-alive connection is closed after this.
        max_header_bytes: the request line and headers together.
        max_body_bytes: the body, whether its length is declared or it is streamed (chunked).
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s"):
            require(getattr(self, name) > 0, name, "> 0 seconds", getattr(self, name))
        require(self.max_header_bytes >= 1024, "max_header_bytes", ">= 1024",
                self.max_header_bytes)
        require(self.max_body_bytes >= 1024, "max_body_bytes", ">= 1024", self.max_body_bytes)


def error_body(message: str) -> bytes:
    """TF Serving's error envelope, the one every 4xx of both servers uses."""
    return json.dumps({"error": message}).encode()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read timeouts and size limits (see the module
    docstring). `limits` is set on the subclass `protocol_class` makes."""

    limits: HttpLimits = HttpLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._received = 0  # Bytes read on this connection.
        self._packet_start = 0
        self._head_start = 0  # Where the current request head began.
        self._head_bytes = 0  # Of the current head, as the parser hands it over.
        self._body_bytes = 0
        self._in_head = True
        self._arm(self.limits.header_timeout_s, "request head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, part, seconds)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, part: str, seconds: float) -> None:
        self._timer = None
        self._refuse(408, f"the {part} did not arrive within {seconds:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answers `status` (unless a response already started) and closes the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # The application sees http.disconnect.
            self.cycle.message_event.set()
            if self.cycle.response_started:
                self.transport.close()
                return
        body = error_body(message)
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"malformed HTTP request: {msg}")

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # Refused already: nothing more is parsed.
        self._packet_start = self._received
        self._received += len(data)
        # A refusal inside a parser callback raises, and lands in send_400_response.
        super().data_received(data)
        # httptools buffers a header until it is complete: count what arrives instead.
        if (self._in_head and not self.transport.is_closing()
                and self._received - self._head_start > self.limits.max_header_bytes):
            self._refuse(431, f"request head over {self.limits.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_start = self._packet_start  # Conservative: the packet it began in.
        self._head_bytes = 0
        self._body_bytes = 0
        if self._timer is None:
            self._arm(self.limits.header_timeout_s, "request head")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"request head over {self.limits.max_header_bytes} bytes")
            raise _Refused()

    def on_headers_complete(self) -> None:
        self._in_head = False
        # httptools has already refused a Content-Length that is not a non-negative integer.
        declared = next((int(value) for name, value in self.headers
                         if name == b"content-length"), 0)
        if declared > self.limits.max_body_bytes:
            self._refuse(413, f"request body must be at most {self.limits.max_body_bytes} "
                              f"bytes; declared {declared}")
            raise _Refused()
        self._arm(self.limits.body_timeout_s, "request body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._refuse(413, f"request body must be at most {self.limits.max_body_bytes} "
                              "bytes")
            raise _Refused()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


class BearerGate:
    """ASGI middleware: an HTTP request that `is_open` does not let through needs a bearer
    token that `tokens` accepts; otherwise it is answered 401 with `WWW-Authenticate: Bearer`
    and `{"error": "..."}`, before the application reads its body.

    Args:
        app: the ASGI application behind the gate.
        tokens: the accepted tokens.
        is_open: (method, path) -> True for a request that needs no token (health probes).
        on_refused: called once per refused request (a metric).
    """

    def __init__(self, app: Any, tokens: BearerTokens, is_open: Callable[[str, str], bool],
                 on_refused: Callable[[], None] | None = None) -> None:
        self.app = app
        self.tokens = tokens
        self.is_open = is_open
        self.on_refused = on_refused

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        # Lifespan events pass; neither server routes websockets.
        if scope["type"] != "http" or self.is_open(scope["method"], scope["path"]):
            return await self.app(scope, receive, send)
        authorization = next((value for name, value in scope["headers"]
                              if name == b"authorization"), None)
        reason = self.tokens.refusal(authorization)
        if reason is None:
            return await self.app(scope, receive, send)
        if self.on_refused is not None:
            self.on_refused()
        challenge = b'Bearer realm="recs"' + (b', error="invalid_token"' if authorization
                                              else b"")
        body = error_body(reason)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge)]})
        await send({"type": "http.response.body", "body": body})


class _MalformedRequests(logging.Filter):
    """Drops uvicorn's warning for each malformed request: the client already got its 400 in
    the envelope, and hostile traffic would otherwise fill the log a line per request."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


_QUIET = _MalformedRequests()


def protocol_class(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """A `GuardedHttpToolsProtocol` bound to `limits`, for `uvicorn.Config(http=...)`."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def uvicorn_config(app: Any, limits: HttpLimits, host: str = "127.0.0.1", port: int = 0,
                   log_level: str = "warning", tls: ServerTls = ServerTls(),
                   **options: Any) -> uvicorn.Config:
    """uvicorn's config for `app` on the guarded protocol and uvloop, over TLS when `tls` is
    enabled; `options` go to `uvicorn.Config` unchanged (e.g. `workers`).

    Raises:
        ValueError: `tls` names files that are not a certificate and its key.
    """
    logging.getLogger("uvicorn.error").addFilter(_QUIET)  # Idempotent: a set of filters.
    if tls.enabled:
        # Built here, so that a bad file fails in the caller rather than in the server's
        # thread.
        context = tls.context()
        options["ssl_context_factory"] = lambda _config, _default: context
    return uvicorn.Config(app, host=host, port=port, http=protocol_class(limits), loop="uvloop",
                          timeout_keep_alive=max(1, round(limits.keep_alive_s)),
                          log_level=log_level, access_log=False, lifespan="off", **options)


class BackgroundServer:
    """Runs an ASGI app under uvicorn on a daemon thread (tests, the demo, benchmarks, and the
    model server's REST side).

    Args:
        app: an ASGI application.
        limits: read timeouts and size limits of every connection.
        host: interface to bind.
        port: 0 picks a free port (see `port` and `url`).
        tls: the server's certificate and key (and client CA); disabled serves plain HTTP.

    Raises:
        ValueError: `tls` names files that are not a certificate and its key.

    Example:
        with BackgroundServer(app, HttpLimits()) as server:
            urllib.request.urlopen(server.url + "/healthz")
    """

    def __init__(self, app: Any, limits: HttpLimits, host: str = "127.0.0.1", port: int = 0,
                 tls: ServerTls = ServerTls()) -> None:
        config = uvicorn_config(app, limits, host, port, tls=tls)  # Checks the TLS files.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config.port = self.port
        self._scheme = "https" if tls.enabled else "http"
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> "BackgroundServer":
        """Starts serving; returns once the socket accepts connections.

        Raises:
            RuntimeError: the server did not start within `timeout_s`.
        """
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True,
                                        name=f"http-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._socket.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
