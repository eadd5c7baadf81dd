"""The REST client's connections: kept alive per thread, a connection the server closed while
idle is replaced once, a server that never answers is DEADLINE_EXCEEDED (raw sockets, no
model)."""

import json
import socket
import threading

import pytest

from serving.clients.base import ModelServerError
from serving.clients.rest import RestClient

ANSWER = json.dumps({"model_version_status": [{"version": "3", "state": "AVAILABLE"}]})


def _serve(handle, connections: int) -> tuple[int, list[bytes]]:
    """A loopback server taking `connections` connections, each handled by `handle(socket,
    requests)`; returns its port and the request heads it read."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[bytes] = []

    def run() -> None:
        with listener:
            for _ in range(connections):
                connection, _ = listener.accept()
                with connection:
                    handle(connection, seen)

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], seen


def _answer_once_then_close(connection: socket.socket, seen: list[bytes]) -> None:
    seen.append(connection.recv(65536).split(b"\r\n")[0])
    # Keep-alive by HTTP/1.1's default, then closed while idle, as servers do.
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       + f"Content-Length: {len(ANSWER)}\r\n\r\n{ANSWER}".encode())


def test_a_kept_alive_connection_the_server_closed_is_replaced_once():
    port, seen = _serve(_answer_once_then_close, connections=2)
    client = RestClient(f"http://127.0.0.1:{port}/prefix", timeout=5)
    assert client.available_versions("toy") == [3]
    assert client.available_versions("toy", label="stable") == [3]
    assert seen == [b"GET /prefix/v1/models/toy HTTP/1.1",
                    b"GET /prefix/v1/models/toy/labels/stable HTTP/1.1"]


def test_a_server_that_never_answers_is_deadline_exceeded():
    stalled = threading.Event()
    port, _ = _serve(lambda connection, seen: stalled.wait(10), connections=1)
    with pytest.raises(ModelServerError) as raised:
        RestClient(f"http://127.0.0.1:{port}", timeout=0.3).available_versions("toy")
    stalled.set()
    assert raised.value.status == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("url", ["localhost:8501", "ftp://host", "http://"])
def test_a_base_url_must_be_http_with_a_host(url):
    with pytest.raises(ValueError, match="base_url must be http"):
        RestClient(url)


def test_a_token_rides_in_the_authorization_header_of_every_request():
    heads: list[bytes] = []

    def answer(connection: socket.socket, seen: list[bytes]) -> None:
        for _ in range(2):  # Two requests on the kept-alive connection.
            heads.append(connection.recv(65536).split(b"\r\n\r\n")[0].lower())
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               + f"Content-Length: {len(ANSWER)}\r\n\r\n{ANSWER}".encode())

    port, _ = _serve(answer, connections=1)
    client = RestClient(f"http://127.0.0.1:{port}", timeout=5,
                        token="a-token-of-0123456789")
    assert client.available_versions("toy") == [3]
    assert client.available_versions("toy") == [3]
    assert all(b"\r\nauthorization: bearer a-token-of-0123456789" in head for head in heads)
    assert len(heads) == 2


@pytest.mark.parametrize("token", ["short", "a-token-with\r\nx-injected: header"])
def test_a_token_that_is_weak_or_could_break_the_header_is_refused(token):
    with pytest.raises(ValueError, match="token must be a token of at least 16 characters"):
        RestClient("http://127.0.0.1:8501", token=token)
