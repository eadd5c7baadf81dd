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
