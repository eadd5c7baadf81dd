"""The guarded HTTP stack: slow, oversized and malformed requests are cut at the connection
with the {"error"} envelope; well-formed ones reach the application, kept alive."""

import json
import socket
import time

import pytest

from serving.http import BackgroundServer, HttpLimits

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial

LIMITS = HttpLimits(header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=1.0,
                    max_header_bytes=2048, max_body_bytes=4096)


async def _echo_length(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps({"length": len(body)}).encode()})


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(_echo_length, LIMITS) as running:
        yield running


def _exchange(server, *pieces: bytes, pause_s: float = 0.0) -> tuple[int, dict]:
    """Sends `pieces` (pausing between them), reads to the end; (status, JSON body)."""
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        for piece in pieces:
            try:
                connection.sendall(piece)
            except BrokenPipeError:  # The server cut us off: read its answer.
                break
            time.sleep(pause_s)
        data = b""
        while not (b"\r\n\r\n" in data and data.rstrip().endswith(b"}")):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n")[1]
    return int(head.split()[1]), json.loads(body)


def _post(length: str, body: bytes = b"abc") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + length.encode() + b"\r\n\r\n" + body


def _chunked(chunks: int) -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"400\r\n" + b"a" * 1024 + b"\r\n") * chunks + b"0\r\n\r\n")


def test_a_well_formed_request_reaches_the_application(server):
    assert _exchange(server, _post("3")) == (200, {"length": 3})
    assert _exchange(server, _chunked(2)) == (200, {"length": 2048})


@pytest.mark.parametrize("request_bytes, status, message", [
    (_post("-5"), 400, "malformed HTTP request"),
    (_post("abc"), 400, "malformed HTTP request"),
    (b"\x00\x01 garbage\r\n\r\n", 400, "malformed HTTP request"),
    (_post("99999"), 413, "declared 99999"),
    (_chunked(6), 413, "at most 4096 bytes"),                      # streamed past the cap
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 5000 + b"\r\n\r\n", 431, "over 2048"),
])
def test_malformed_and_oversized_requests_get_the_error_envelope(server, request_bytes, status,
                                                                  message):
    answer_status, body = _exchange(server, request_bytes)
    assert answer_status == status and message in body["error"]


def test_an_idle_connection_and_a_slow_head_or_body_are_cut(server):
    started = time.monotonic()
    assert _exchange(server) == (408, {"error": "the request head did not arrive within 0.5 s"})
    assert time.monotonic() - started < 3
    slow_head = [b"GET / HTTP/1.1\r\n"] + [b"X: y\r\n"] * 10
    assert _exchange(server, *slow_head, pause_s=0.2)[0] == 408
    status, body = _exchange(server, _post("10", b"abc"))
    assert status == 408 and "request body" in body["error"]


def test_a_kept_alive_connection_serves_requests_then_closes_when_idle(server):
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        for _ in range(2):
            connection.sendall(_post("2", b"ab"))
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert connection.recv(4096) == b""  # Closed by the keep-alive timeout.
        assert time.monotonic() - started < 4


def test_limits_are_validated():
    with pytest.raises(ValueError, match="header_timeout_s must be > 0"):
        HttpLimits(header_timeout_s=0)
    with pytest.raises(ValueError, match="max_body_bytes must be >= 1024"):
        HttpLimits(max_body_bytes=10)
