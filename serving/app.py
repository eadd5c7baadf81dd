"""The service assembled from a `ServiceConfig`: clients, profile store, catalogue, recommender,
policy and app. `recs serve`, `recs recommend`, the demo, the tests and the benchmarks build
the service here, one way."""

import dataclasses
from typing import TYPE_CHECKING

from recs.contract.models import RANKER, RETRIEVAL
from serving.clients.rest import RestClient
from serving.config import ServiceConfig
from serving.online.policy import FixedStatus, OnlinePolicy
from serving.online.recommender import Recommender, load_catalogue
from serving.online.store import (CachedProfileStore, ProfileStore, SqliteProfileStore,
                                  is_redis_url, open_store)
from serving.security import ClientTls, TokenSource
from serving.types import PredictClient

if TYPE_CHECKING:  # Annotations only: the model server loads TensorFlow.
    from serving.model_server.server import ModelServer


def client(target: str, protocol: str, tls: ClientTls = ClientTls(),
           token: TokenSource = TokenSource()) -> PredictClient:
    """A REST (`http://host:8501`) or gRPC (`host:8500`) client of TF Serving's API; over TLS
    for an `https://` target, with `tls`'s CA, sending `token`'s first token if it has one.

    Raises:
        ValueError: a TLS or token file cannot be read, or a token is malformed.
    """
    tokens = token.read()
    first = tokens[0] if tokens else ""
    if protocol == "rest":
        return RestClient(target, tls=tls, token=first)
    from serving.clients.grpc_client import GrpcClient  # Loads gRPC and TensorFlow's protos.

    return GrpcClient(target, tls=tls, token=first)


def build_recommender(config: ServiceConfig) -> Recommender:
    """The recommender `config` describes: its model servers, profile store and the
    catalogue snapshot of the newest retrieval version under `config.serving_dir`.

    Raises:
        FileNotFoundError: no retrieval version has been pushed to `config.serving_dir`.
        ValueError: a model-server TLS or token file cannot be read.
    """
    return Recommender(
        client(config.model_server, config.protocol, config.model_server_tls,
               config.model_server_token), _store(config),
        load_catalogue(config.serving_dir, config.retrieval_model),
        retrieval_model=config.retrieval_model, ranker_model=config.ranker_model,
        recommender_model=config.recommender_model,
        retrieval_client=(client(config.retrieval_server, config.protocol,
                                 config.model_server_tls, config.retrieval_server_token)
                          if config.retrieval_server else None))


def _store(config: ServiceConfig) -> ProfileStore:
    """The profile store, behind the read cache `config.profile_cache_s` asks for, listening
    for the consumer's changes when there is a Redis to hear them on."""
    store = open_store(config.store, timeout_s=config.store_timeout_ms / 1000.0)
    if not config.profile_cache_s:
        return store
    cached = CachedProfileStore(store, config.profile_cache_s)
    changes = config.profile_changes or (config.store if is_redis_url(config.store) else "")
    if changes:
        cached.listen_for_changes(changes)
    return cached


def build_app(config: ServiceConfig):
    """The recommendation service's app as `config` describes it."""
    from serving.api.service import create_app

    return create_app(OnlinePolicy(build_recommender(config), config))


def openapi_document() -> str:
    """The service's OpenAPI spec; it depends only on the API, not on models or data."""
    from serving.api.service import create_app, openapi_spec

    recommender = Recommender(client=None, store=SqliteProfileStore(":memory:"), catalogue={})
    status = FixedStatus({RETRIEVAL: None, RANKER: None})
    return openapi_spec(create_app(OnlinePolicy(recommender, ServiceConfig(), status)))


def _on_embedded(config: ServiceConfig, server: "ModelServer") -> ServiceConfig:
    """`config` pointed at a model server started in this process (`serve_models` of
    `ModelServingConfig.local`): both roles on it, plain text on loopback, no token."""
    return dataclasses.replace(
        config, model_server=server.rest_url if config.protocol == "rest"
        else server.grpc_target, retrieval_server="", model_server_tls=ClientTls(),
        model_server_token=TokenSource(), retrieval_server_token=TokenSource())


def run_service(config: ServiceConfig, host: str, port: int,
                embedded_model_server: bool) -> None:
    """`recs serve`: the HTTP service on the guarded stack of `serving.http` (uvloop,
    httptools, the config's header, body and keep-alive limits, TLS when `config.tls` is set)
    until interrupted; `embedded_model_server` first starts a local model server over
    `config.serving_dir` (plain text on loopback) and points the service at it.

    Raises:
        ValueError: a TLS or token file cannot be read, or holds no valid certificate or
            token.
    """
    import uvicorn

    from serving.http import uvicorn_config
    from serving.model_server import serve_models
    from serving.model_server.config import ModelServingConfig

    server = None
    if embedded_model_server:
        server = serve_models(ModelServingConfig.local(config.serving_dir, poll_seconds=5.0))
        config = _on_embedded(config, server)
        print(f"model server: REST {server.rest_url}  gRPC {server.grpc_target}", flush=True)
    app = build_app(config)
    try:
        uvicorn.Server(uvicorn_config(app, config.http_limits(), host, port,
                                      log_level="info", tls=config.tls)).run()
    finally:
        app.state.policy.close()
        if server is not None:
            server.stop()


def recommend_once(config: ServiceConfig, user_id: str, k: int, device_type: str, hour: int,
                   embedded_model_server: bool):
    """Recommendations for one user (`recs recommend`); with `embedded_model_server`, over a
    model server started in-process for the call.

    Returns:
        The `serving.online.recommender.Recommendation`s, best first.

    Raises:
        serving.online.recommender.UnknownUserError: no profile for `user_id`.
        ValueError: `k` or `hour` out of range.
    """
    from serving.model_server import serve_models
    from serving.model_server.config import ModelServingConfig

    server = (serve_models(ModelServingConfig.local(config.serving_dir))
              if embedded_model_server else None)
    if server is not None:
        config = _on_embedded(config, server)
    recommender = build_recommender(config)
    try:
        return recommender.recommend(user_id, k=k, device_type=device_type, hour=hour)
    finally:
        recommender.store.close()
        if server is not None:
            server.stop()
