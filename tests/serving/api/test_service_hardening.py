"""The service against hostile clients (issue 19): strict types, one error envelope for every
4xx, the connection limits of `serving.http` (sizes, read and keep-alive timeouts), one bound
on `k`, and load shedding. No models: the recommender is an empty store and catalogue (every
user unknown, so a body the schema accepts gets the empty popularity list, 200 with fallback
"no_profile") or a stand-in that holds requests in flight."""

import http.client
import json
import socket
import threading
from concurrent import futures

import fastapi
import pytest
from fastapi.testclient import TestClient

from serving.api.service import RECOMMENDATIONS_PATH, ServiceServer, create_app
from serving.config import ServiceConfig
from serving.online.policy import OnlinePolicy
from serving.online.recommender import Recommendation, Recommender, ServedList
from serving.online.status import FixedStatus
from serving.online.store import SqliteProfileStore

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial

GHOST = "ghost"
PROFILE = {"age": 31, "country": "de", "subscription_tier": "premium"}
BOTH = {"retrieval": 1, "ranker": 1}
"""Both models AVAILABLE: readiness then reflects the store alone."""


class _Gated:
    """Stands in for the Recommender: each answer waits until `gate` is set, so requests stay
    in flight for as long as a test needs them there."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()
        self.store = SqliteProfileStore(":memory:")  # Readiness asks it.

    def ranked(self, user_id: str, **_) -> ServedList:
        self.entered.release()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return ServedList([Recommendation("t000001", 0.5, 0.2, "drama")],
                          {"retrieval": 1, "ranker": 1},
                          {"profile": 0.1, "retrieval": 0.1, "ranking": 0.1}, 1)


def _empty_app(**overrides) -> fastapi.FastAPI:
    recommender = Recommender(client=None, store=SqliteProfileStore(":memory:"), catalogue={})
    return create_app(OnlinePolicy(recommender, ServiceConfig(**overrides),
                                   status=FixedStatus(BOTH)))


@pytest.fixture(scope="module")
def api():
    with TestClient(_empty_app()) as client:
        yield client


@pytest.mark.parametrize("body, field", [
    ({"user_id": GHOST, "k": True}, "k"),
    ({"user_id": GHOST, "k": "5"}, "k"),
    ({"user_id": GHOST, "k": 5.5}, "k"),
    ({"user_id": GHOST, "diversity": "0.5"}, "diversity"),
    ({"user_id": GHOST, "diversity": True}, "diversity"),
    ({"user_id": GHOST, "context": {"hour": True}}, "context.hour"),
    ({"user_id": GHOST, "context": {"hour": "8"}}, "context.hour"),
    ({"user_id": GHOST, "context": {"hour": 8.5}}, "context.hour"),
    ({"user_id": GHOST, "profile": {**PROFILE, "age": False}}, "profile.age"),
    ({"user_id": GHOST, "profile": {**PROFILE, "age": "31"}}, "profile.age"),
])
def test_numbers_and_booleans_are_strict(api, body, field):
    response = api.post(RECOMMENDATIONS_PATH, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(f"{field}: Input should be a valid")


@pytest.mark.parametrize("body", [{"user_id": GHOST, "k": 5}, {"user_id": GHOST, "diversity": 1},
                                  {"user_id": GHOST, "context": {"hour": 8}},
                                  {"user_id": GHOST, "k": 5.0, "context": {"hour": 8.0}}])
def test_json_integers_are_numbers_and_integral_numbers_integers(api, body):
    # Past validation, to the store: the ghost is unknown there. 5.0 is an integer as JSON
    # Schema, and so the OpenAPI spec, has it.
    response = api.post(RECOMMENDATIONS_PATH, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["fallback"] == "no_profile"


@pytest.mark.parametrize("raw", [
    b'{"user_id": "ghost", "diversity": NaN}',
    b'{"user_id": "ghost", "diversity": Infinity}',
    b'{"user_id": "ghost", "diversity": -Infinity}',
    b'{"user_id": "ghost", "diversity": 1e400}',
    b'{"user_id": "ghost", "k": ' + b"9" * 5000 + b"}",  # Beyond Python's int-parsing limit.
    b"[" * 5000 + b"]" * 5000,  # Beyond the standard library's recursion limit.
    b'{"user_id": "ghost\\ud800"}',
    b'{"user_id": "gh\xffost"}',
    b"\xef\xbb\xbf" + b'{"user_id": "ghost"}',
    b'{"user_id": ',
])
def test_a_body_that_is_not_json_gets_400(api, raw):
    response = api.post(RECOMMENDATIONS_PATH, content=raw,
                        headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("the request body is not valid JSON (RFC 8259)")


def test_framework_errors_carry_the_error_envelope(api):
    response = api.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {
        "error": "no route GET /v2/nothing; the API is described at /openapi.json"}
    response = api.get(RECOMMENDATIONS_PATH)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json() == {
        "error": "GET is not allowed on /v1/recommendations; allowed: POST"}
    response = api.delete("/healthz")
    assert response.status_code == 405 and "DELETE is not allowed" in response.json()["error"]


def test_k_has_one_bound_the_config_s_and_the_spec_states_it():
    with pytest.raises(ValueError, match=r"max_k must be an int in \[1, 100\] \(the "
                                         r"recommender's ceiling\); received 1000"):
        ServiceConfig(max_k=1000)
    with pytest.raises(ValueError, match=r"default_k must be an int in \[1, max_k=5\]; "
                                         r"received 10"):
        ServiceConfig(max_k=5)
    app = _empty_app(max_k=20, default_k=5)
    with TestClient(app) as client:
        response = client.post(RECOMMENDATIONS_PATH, json={"user_id": GHOST, "k": 21})
        assert response.status_code == 422
        assert response.json()["error"] == "k: Input should be less than or equal to 20"
        assert client.post(RECOMMENDATIONS_PATH,
                           json={"user_id": GHOST, "k": 20}).status_code == 200
    k = app.openapi()["components"]["schemas"]["RecommendationRequest"]["properties"]["k"]
    assert (k["maximum"], k["default"]) == (20, 5)


# Over a real connection: the limits live in serving.http, below the app.

_SHORT = {"header_timeout_s": 0.3, "body_timeout_s": 0.3, "keep_alive_s": 1.0,
          "max_body_bytes": 4096, "max_header_bytes": 2048}
_WAIT_S = 30.0  # An upper bound on an answer, never a measured time.


def _exchange(server: ServiceServer, *parts: bytes) -> tuple[int | None, dict, bytes]:
    """Sends `parts` on a new connection; reads until the server closes it. Returns the
    status (None if the server closed without answering), headers and body."""
    with socket.create_connection((server.host, server.port), timeout=_WAIT_S) as connection:
        for part in parts:
            connection.sendall(part)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    if not head:
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _call(server: ServiceServer, method: str, path: str, body: bytes | None = None
          ) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=_WAIT_S)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, \
            response.read()
    finally:
        connection.close()


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/recommendations HTTP/1.1\r\nHost: service\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.fixture
def short():
    with ServiceServer(_empty_app(**_SHORT)) as server:
        yield server


def _assert_envelope(answer: tuple[int | None, dict, bytes], status: int, text: str) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert text in json.loads(body)["error"]


def test_oversized_bodies_get_413_whether_declared_or_chunked(short):
    body = b'{"user_id": "ghost"' + b" " * 5000 + b"}"
    _assert_envelope(_exchange(short, _post(body)), 413, "at most 4096 bytes")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000))
    chunked = (b"POST /v1/recommendations HTTP/1.1\r\nHost: service\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    _assert_envelope(_exchange(short, chunked, chunks + b"0\r\n\r\n"), 413,
                     "at most 4096 bytes")


def test_partial_requests_and_idle_sockets_are_closed(short):
    _assert_envelope(_exchange(short), 408, "request head did not arrive")
    _assert_envelope(_exchange(short, b"POST /v1/recommendations HTTP/1.1\r\nHost: s\r\n"),
                     408, "request head did not arrive")
    partial = _post(b'{"user_id": "ghost", "k": 3}')[:-10]
    _assert_envelope(_exchange(short, partial), 408, "request body did not arrive")
    # A kept-alive connection is answered, then closed once idle.
    status, _, body = _exchange(short, b"GET /healthz HTTP/1.1\r\nHost: s\r\n\r\n")
    assert status == 200 and body == b'{"status":"ok"}'


def test_a_huge_head_gets_431_and_broken_http_gets_400(short):
    _assert_envelope(_exchange(short, _post(b"{}", extra=b"X-Big: " + b"v" * 3000 + b"\r\n")),
                     431, "request head over 2048 bytes")
    _assert_envelope(_exchange(short, b"GARBAGE\r\n\r\n"), 400, "malformed HTTP request")


def test_requests_over_the_limit_are_shed_while_probes_still_answer():
    gated = _Gated()
    config = ServiceConfig(max_in_flight=2, retry_after_s=3)
    body = b'{"user_id": "u1", "k": 1}'
    with ServiceServer(create_app(OnlinePolicy(gated, config,
                                               status=FixedStatus(BOTH)))) as server, \
            futures.ThreadPoolExecutor(max_workers=2) as pool:
        try:
            held = [pool.submit(_call, server, "POST", RECOMMENDATIONS_PATH, body)
                    for _ in range(2)]
            for _ in held:
                assert gated.entered.acquire(timeout=_WAIT_S)
            status, headers, answer = _call(server, "POST", RECOMMENDATIONS_PATH, body)
            assert (status, headers["retry-after"]) == (503, "3")
            assert json.loads(answer) == {"error": "the service is at its limit of 2 "
                                                   "requests in flight; retry after 3 s"}
            for probe in ("/healthz", "/readyz", "/metrics"):
                assert _call(server, "GET", probe)[0] == 200
        finally:
            gated.gate.set()
        assert [future.result()[0] for future in held] == [200, 200]
        assert _call(server, "POST", RECOMMENDATIONS_PATH, body)[0] == 200  # Slots freed.
        metrics = _call(server, "GET", "/metrics")[2].decode()
    assert 'recs_requests_total{outcome="shed"} 1.0' in metrics
    assert 'recs_requests_total{outcome="ok"} 3.0' in metrics


def test_a_slow_body_holds_no_slot():
    gated = _Gated()
    gated.gate.set()
    config = ServiceConfig(max_in_flight=1, body_timeout_s=30.0)
    with ServiceServer(create_app(OnlinePolicy(gated, config,
                                               status=FixedStatus(BOTH)))) as server, \
            socket.create_connection((server.host, server.port), timeout=_WAIT_S) as slow:
        slow.sendall(_post(b'{"user_id": "u1", "k": 1}')[:-5])
        # A round trip on the event loop after the slow head: it has been read by now.
        assert _call(server, "GET", "/healthz")[0] == 200
        assert _call(server, "POST", RECOMMENDATIONS_PATH, b'{"user_id": "u2"}')[0] == 200


@pytest.mark.parametrize("headers, data, status, message", [
    ({"Content-Type": "application/json"}, b"", 400, "the request body is empty"),
    ({"Content-Type": "application/json"}, b"  \n", 400, "the request body is empty"),
    ({"Content-Type": "text/plain"}, b'{"user_id": "ghost"}', 415, "received 'text/plain'"),
    ({}, b'{"user_id": "ghost"}', 415, "Content-Type: application/json"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"user_id=ghost", 415,
     "received 'application/x-www-form-urlencoded'"),
])
def test_an_empty_body_is_400_and_a_body_not_sent_as_json_is_415(api, headers, data, status,
                                                                  message):
    response = api.post(RECOMMENDATIONS_PATH, content=data, headers=headers)
    assert response.status_code == status and message in response.json()["error"]
    ok = api.post(RECOMMENDATIONS_PATH, content=b'{"user_id": "ghost"}',
                  headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("body, message", [
    ({"user_id": "gh\u00f6st"}, "user_id: String should match pattern"),  # ECMA \w is ASCII.
    ({"user_id": "\u0663\u0663"}, "user_id: String should match pattern"),
    ({"user_id": GHOST, "profile": {**PROFILE, "country": "D\u0000E"}},
     "profile.country: String should match pattern"),
    ({"user_id": GHOST, "profile": {**PROFILE, "age": 121}}, "profile.age"),
])
def test_ids_and_profiles_follow_the_contract_the_spec_states(api, body, message):
    response = api.post(RECOMMENDATIONS_PATH, json=body)
    assert response.status_code == 422 and message in response.json()["error"], response.text


def test_a_store_swapped_for_junk_gets_the_fallback_and_unready_then_recovers(tmp_path):
    import os

    path = tmp_path / "profiles.db"
    good = SqliteProfileStore(str(path))
    good.upsert_profiles([{"user_id": "u1", "age": 30, "country": "de",
                           "subscription_tier": "basic", "preferred_genres": ""}])
    good.close()
    os.link(path, tmp_path / "backup.db")
    catalogue = {"t1": {"title_id": "t1", "genre": "drama", "popularity": 1.0}}
    store = SqliteProfileStore(str(path), busy_timeout_s=0.1, check_every_s=0.0,
                               retry_after_s=0.0)
    class Down:
        """A model server that is away: the recovered request falls back for that reason."""

        def predict_versioned(self, *args, **kwargs):
            from serving.clients import ModelServerError

            raise ModelServerError("UNAVAILABLE", "away")

    app = create_app(OnlinePolicy(Recommender(client=Down(), store=store, catalogue=catalogue),
                                  ServiceConfig(), status=FixedStatus(BOTH)))
    with TestClient(app) as api:
        assert api.get("/readyz").status_code == 200
        (tmp_path / "junk").write_bytes(b"not a database " * 64)
        os.replace(tmp_path / "junk", path)
        answers = [api.post(RECOMMENDATIONS_PATH, json={"user_id": "u1", "k": 1})
                   for _ in range(3)]
        assert {(a.status_code, a.json()["fallback"]) for a in answers} == {
            (200, "store_unavailable")}
        assert [i["title_id"] for i in answers[0].json()["items"]] == ["t1"]
        ready = api.get("/readyz")
        assert ready.status_code == 503 and "profile store" in ready.json()["error"]
        metrics = api.get("/metrics").text
        assert 'recs_fallbacks_total{reason="store_unavailable"} 3.0' in metrics
        os.replace(tmp_path / "backup.db", path)  # Restored: no restart needed.
        assert api.get("/readyz").status_code == 200
        recovered = api.post(RECOMMENDATIONS_PATH, json={"user_id": "u1", "k": 1})
        # The profile is read again; the models (away here) are asked.
        assert recovered.json()["fallback"] == "model_server_error"


def test_a_crash_is_counted_in_the_metrics():
    class Broken(Recommender):
        def ranked(self, user_id, **options):
            raise KeyError("a bug")

    app = create_app(OnlinePolicy(Broken(client=None, store=SqliteProfileStore(":memory:"),
                                         catalogue={}), ServiceConfig(), status=FixedStatus(BOTH)))
    with TestClient(app, raise_server_exceptions=False) as api:
        assert api.post(RECOMMENDATIONS_PATH, json={"user_id": "u1"}).status_code == 500
        assert 'recs_requests_total{outcome="error"} 1.0' in api.get("/metrics").text
