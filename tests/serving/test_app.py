"""`recs serve`: the service runs on the guarded HTTP stack of `serving.http`, and its policy
is closed with the server."""

from serving import http as guarded_http
from serving.config import ServiceConfig


def test_recs_serve_runs_on_the_guarded_http_stack(monkeypatch):
    import types

    import uvicorn

    from serving import app as service_app

    started = {}

    class Server:
        def __init__(self, config: uvicorn.Config) -> None:
            started["config"] = config

        def run(self) -> None:
            started["ran"] = True

    def unguarded(*args, **kwargs):
        raise AssertionError("recs serve must run on serving.http.uvicorn_config")

    monkeypatch.setattr(uvicorn, "Server", Server)
    monkeypatch.setattr(uvicorn, "run", unguarded)
    app = types.SimpleNamespace(state=types.SimpleNamespace(
        policy=types.SimpleNamespace(close=lambda: started.setdefault("closed", True))))
    monkeypatch.setattr(service_app, "build_app", lambda config: app)
    config = ServiceConfig(header_timeout_s=2.0, max_body_bytes=4096)
    service_app.run_service(config, "127.0.0.1", 8080, embedded_model_server=False)
    uvicorn_config = started["config"]
    assert started["ran"] and (uvicorn_config.app, uvicorn_config.port) == (app, 8080)
    assert started["closed"]  # The policy's status thread is stopped with the server.
    assert issubclass(uvicorn_config.http, guarded_http.GuardedHttpToolsProtocol)
    assert uvicorn_config.http.limits == config.http_limits()


def _run_service_with_a_stand_in_server(monkeypatch, config: ServiceConfig):
    """The uvicorn config `run_service(config)` would serve with."""
    import types

    import uvicorn

    from serving import app as service_app

    started = {}

    class Server:
        def __init__(self, config: uvicorn.Config) -> None:
            started["config"] = config

        def run(self) -> None:
            pass

    monkeypatch.setattr(uvicorn, "Server", Server)
    app = types.SimpleNamespace(state=types.SimpleNamespace(
        policy=types.SimpleNamespace(close=lambda: None)))
    monkeypatch.setattr(service_app, "build_app", lambda config: app)
    service_app.run_service(config, "127.0.0.1", 8443, embedded_model_server=False)
    return started["config"]


def test_recs_serve_serves_tls_only_when_the_config_asks(monkeypatch, pki):
    import ssl

    from serving.security import ServerTls

    assert not _run_service_with_a_stand_in_server(monkeypatch, ServiceConfig()).is_ssl
    secured = _run_service_with_a_stand_in_server(monkeypatch, ServiceConfig(
        tls=ServerTls(pki.server_cert, pki.server_key)))
    assert secured.is_ssl
    context = secured.ssl_context_factory(secured, None)
    assert isinstance(context, ssl.SSLContext) and context.minimum_version >= \
        ssl.TLSVersion.TLSv1_2


def test_each_model_server_client_gets_the_tls_and_the_token_meant_for_it(monkeypatch,
                                                                          token_file):
    from serving import app as service_app
    from serving.online.store import SqliteProfileStore
    from serving.security import ClientTls, TokenSource

    made = []
    monkeypatch.setattr(service_app, "client", lambda *args: made.append(args) or object())
    monkeypatch.setattr(service_app, "load_catalogue", lambda *args: {})
    monkeypatch.setattr(service_app, "_store", lambda config: SqliteProfileStore(":memory:"))
    tls = ClientTls(ca_file="ca.crt")
    ranker_token, retrieval_token = TokenSource(env="RANKER_TOKEN"), TokenSource(file=token_file)
    service_app.build_recommender(ServiceConfig(
        model_server="http://tf-serving:8501", retrieval_server="https://scann:8501",
        model_server_tls=tls, model_server_token=ranker_token,
        retrieval_server_token=retrieval_token))
    assert made == [("http://tf-serving:8501", "rest", tls, ranker_token),
                    ("https://scann:8501", "rest", tls, retrieval_token)]


def test_a_client_sends_the_first_token_of_its_source(token_file):
    from serving.app import client
    from serving.security import TokenSource
    from tests.serving._tls import TOKENS

    rest = client("http://127.0.0.1:8501", "rest", token=TokenSource(file=token_file))
    assert rest._connections.headers["Authorization"] == f"Bearer {TOKENS[0]}"
    grpc_client = client("127.0.0.1:8500", "grpc", token=TokenSource(file=token_file))
    assert grpc_client._metadata == (("authorization", f"Bearer {TOKENS[0]}"),)
    assert client("http://127.0.0.1:8501", "rest")._connections.headers == {
        "Content-Type": "application/json"}
