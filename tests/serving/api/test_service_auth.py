"""The service's bearer tokens, the access of /metrics and the docs, and TLS: a request
without an accepted token is 401 in the error envelope, the probes stay open, and HTTPS is a
real handshake with a test CA (mutual TLS included). No models: every user is unknown, so an
admitted request gets the empty popularity list."""

import http.client
import json
import ssl

import fastapi
import pytest
from fastapi.testclient import TestClient

from serving.api.service import RECOMMENDATIONS_PATH, ServiceServer, create_app
from serving.config import ServiceConfig
from serving.online.policy import OnlinePolicy
from serving.online.recommender import Recommender
from serving.online.status import FixedStatus
from serving.online.store import SqliteProfileStore
from serving.security import ServerTls, TokenSource
from tests.serving._tls import TOKENS

ASK = {"user_id": "ghost"}
DOCS = ("/openapi.json", "/docs", "/redoc")


def _app(**overrides) -> fastapi.FastAPI:
    recommender = Recommender(client=None, store=SqliteProfileStore(":memory:"), catalogue={})
    return create_app(OnlinePolicy(recommender, ServiceConfig(**overrides),
                                   status=FixedStatus({"retrieval": 1, "ranker": 1})))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def locked(token_file):
    """The service requiring `TOKENS`; /metrics behind the token, the docs closed."""
    with TestClient(_app(tokens=TokenSource(file=token_file), metrics_access="token",
                         docs_access="closed")) as client:
        yield client


def test_by_default_nothing_asks_for_a_token():
    with TestClient(_app()) as client:
        assert client.post(RECOMMENDATIONS_PATH, json=ASK).status_code == 200
        for path in ("/metrics", "/healthz", "/readyz", *DOCS):
            assert client.get(path).status_code == 200, path
    assert not ServiceConfig().tls.enabled and not ServiceConfig().tokens.enabled


def test_a_request_without_an_accepted_token_is_refused_in_the_envelope(locked):
    missing = locked.post(RECOMMENDATIONS_PATH, json=ASK)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="recs"'
    assert missing.json() == {"error": "this endpoint needs a bearer token: send "
                                       "Authorization: Bearer <token>"}
    wrong = locked.post(RECOMMENDATIONS_PATH, json=ASK, headers=_bearer(TOKENS[0] + "x"))
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="recs", error="invalid_token"'
    assert wrong.json() == {"error": "the bearer token is not accepted"}
    # An unknown route tells nothing either, until the caller has a token.
    assert locked.get("/v2/nothing").status_code == 401
    assert locked.get("/v2/nothing", headers=_bearer(TOKENS[0])).status_code == 404


def test_each_token_of_a_rotation_is_accepted(locked):
    for token in TOKENS:
        answer = locked.post(RECOMMENDATIONS_PATH, json=ASK, headers=_bearer(token))
        assert answer.status_code == 200 and answer.json()["fallback"] == "no_profile"


def test_the_probes_need_no_token(locked):
    assert locked.get("/healthz").json() == {"status": "ok"}
    assert locked.get("/readyz").status_code == 200


def test_refusals_are_counted_in_the_metrics(locked):
    for _ in range(3):
        locked.post(RECOMMENDATIONS_PATH, json=ASK)
    text = locked.get("/metrics", headers=_bearer(TOKENS[1])).text
    assert 'recs_requests_total{outcome="unauthorized"} 3.0' in text


@pytest.mark.parametrize("access, without, with_token", [
    # Closed is 404 as any unknown route, so 401 first without a token.
    ("open", 200, 200), ("token", 401, 200), ("closed", 401, 404)])
def test_metrics_and_docs_are_open_behind_the_token_or_closed(access, without, with_token,
                                                              token_file):
    app = _app(tokens=TokenSource(file=token_file), metrics_access=access, docs_access=access)
    with TestClient(app) as client:
        for path in ("/metrics", *DOCS):
            assert client.get(path).status_code == without, path
            assert client.get(path, headers=_bearer(TOKENS[0])).status_code == with_token, path


def test_closed_docs_are_closed_without_tokens_too():
    with TestClient(_app(docs_access="closed", metrics_access="closed")) as client:
        for path in ("/metrics", *DOCS):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.json() == {"error": f"no route GET {path}"}  # No pointer to a spec.
        assert client.post(RECOMMENDATIONS_PATH, json=ASK).status_code == 200


def test_the_spec_says_which_operations_need_the_token(token_file):
    spec = _app(tokens=TokenSource(file=token_file)).openapi()
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http",
                                                               "scheme": "bearer"}
    recommend = spec["paths"][RECOMMENDATIONS_PATH]["post"]
    assert recommend["security"] == [{"bearer": []}] and "401" in recommend["responses"]
    for probe in ("/healthz", "/readyz", "/metrics"):  # /metrics is open by default.
        assert "security" not in spec["paths"][probe]["get"], probe


@pytest.mark.parametrize("fields, message", [
    ({"metrics_access": "token"}, "metrics_access must be 'open' or 'closed' while `tokens` "
                                  "is empty"),
    ({"docs_access": "private"}, r"docs_access must be one of \('open', 'token', 'closed'\)"),
])
def test_an_access_the_service_cannot_enforce_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ServiceConfig(**fields)


def test_an_unreadable_token_source_stops_the_app_from_being_built(tmp_path):
    with pytest.raises(ValueError, match="TokenSource.file must be a readable ASCII file"):
        _app(tokens=TokenSource(file=str(tmp_path / "missing")))


def _get(server: ServiceServer, path: str, context: ssl.SSLContext,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection(server.host, server.port, context=context,
                                             timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_service_serves_https_that_a_client_of_the_ca_verifies(pki, token_file):
    app = _app(tls=ServerTls(pki.server_cert, pki.server_key),
               tokens=TokenSource(file=token_file))
    with ServiceServer(app) as server:
        assert server.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=pki.ca)
        assert _get(server, "/healthz", trusting) == (200, {"status": "ok"})
        assert _get(server, "/v2/nothing", trusting)[0] == 401
        assert _get(server, "/v2/nothing", trusting, _bearer(TOKENS[0]))[0] == 404
        with pytest.raises(ssl.SSLCertVerificationError):
            _get(server, "/healthz", ssl.create_default_context(cafile=pki.other_ca))
        # Plain HTTP on the TLS port gets no answer from the application.
        plain = http.client.HTTPConnection(server.host, server.port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/healthz")
            plain.getresponse()
        plain.close()


def test_with_a_client_ca_the_service_requires_a_client_certificate(pki):
    app = _app(tls=ServerTls(pki.server_cert, pki.server_key, client_ca_file=pki.ca))
    with ServiceServer(app) as server:
        anonymous = ssl.create_default_context(cafile=pki.ca)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(server, "/healthz", anonymous)
        known = ssl.create_default_context(cafile=pki.ca)
        known.load_cert_chain(pki.client_cert, pki.client_key)
        assert _get(server, "/healthz", known) == (200, {"status": "ok"})
