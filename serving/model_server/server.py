"""The model server's life cycle: REST and gRPC front ends over one registry, sharing one
worker pool, started and stopped together, both over TLS and behind bearer tokens when asked."""

import concurrent.futures
import logging
import os

import grpc

from recs.config import require
from serving.http import BackgroundServer, BearerGate, HttpLimits
from serving.model_server.config import ModelServingConfig
from serving.model_server.errors import MAX_BODY_BYTES
from serving.model_server.grpc_api import TokenInterceptor, grpc_handlers
from serving.model_server.registry import ModelRegistry
from serving.model_server.rest_api import RestApp, is_status_request
from serving.security import BearerTokens, ServerTls

_LOG = logging.getLogger("recs.model_server")


def _default_workers() -> int:
    """Two workers per core the process may run on: a TensorFlow call releases the GIL, so a
    second thread per core parses and encodes while the first computes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 * (cores or 1)


def set_thread_pools(intra_op: int, inter_op: int) -> None:
    """Sizes TensorFlow's thread pools of this process (0 leaves one as it is). They can be
    sized only before TensorFlow runs its first op; a process that already has (a test, a
    notebook) keeps its pools, with a warning.
    """
    import tensorflow as tf

    for size, setter, getter in (
            (intra_op, tf.config.threading.set_intra_op_parallelism_threads,
             tf.config.threading.get_intra_op_parallelism_threads),
            (inter_op, tf.config.threading.set_inter_op_parallelism_threads,
             tf.config.threading.get_inter_op_parallelism_threads)):
        if size and getter() != size:
            try:
                setter(size)
            except RuntimeError as error:  # The context exists: its pools are made.
                _LOG.warning("kept TensorFlow's thread pools (%s): %s", setter.__name__, error)


_RUNNING: set["ModelServer"] = set()
"""Started servers not yet stopped."""


class ModelServer:
    """REST and gRPC front ends over one `ModelRegistry`, sharing one worker pool for their
    TensorFlow calls.

    Args:
        registry: the loaded models.
        host: interface to bind; loopback by default.
        rest_port: 0 picks a free port (see `rest_port`).
        grpc_port: 0 picks a free port.
        workers: threads running predictions (REST) and handlers (gRPC); None sizes the pool
            for the cores this process may use.
        http_limits: read timeouts and size caps of every REST connection; the body cap is
            also the largest gRPC message.
        tls: certificate and key of both ports (and a client CA for mutual TLS); disabled
            serves plain text.
        tokens: bearer tokens required on both ports (REST model status, the readiness
            probe's, stays open); None requires none. TF Serving has no such check: see
            `grpc_api.TokenInterceptor`.

    Raises:
        ValueError: `tls` names files that are not a certificate and its key.

    Example:
        server = ModelServer(ModelRegistry(base, ("ranker",)), rest_port=8501, grpc_port=8500)
        server.start()
        ...
        server.stop()
    """

    def __init__(self, registry: ModelRegistry, host: str = "127.0.0.1", rest_port: int = 0,
                 grpc_port: int = 0, workers: int | None = None,
                 http_limits: HttpLimits = HttpLimits(max_body_bytes=MAX_BODY_BYTES),
                 tls: ServerTls = ServerTls(), tokens: BearerTokens | None = None) -> None:
        require(workers is None or workers >= 1, "workers", ">= 1 or None", workers)
        self.registry = registry
        self.host = host
        self._scheme = "https" if tls.enabled else "http"
        grpc_credentials = None
        if tls.enabled:  # Read before anything starts: a bad file leaves nothing running.
            cert, key, client_ca = tls.pems()
            grpc_credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=client_ca,
                require_client_auth=client_ca is not None)
        self._workers = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers or _default_workers(), thread_name_prefix="model-server")
        rest_app = RestApp(registry, self._workers)
        self._rest = BackgroundServer(
            rest_app if tokens is None else BearerGate(rest_app, tokens, is_status_request),
            http_limits, host, rest_port, tls=tls)
        self._grpc = grpc.server(
            self._workers, handlers=grpc_handlers(registry),
            interceptors=[TokenInterceptor(tokens)] if tokens is not None else None,
            options=[("grpc.max_receive_message_length", http_limits.max_body_bytes),
                     ("grpc.so_reuseport", 0)])  # A taken port is an error, not shared.
        address = f"{host}:{grpc_port}"
        self.grpc_port = (self._grpc.add_insecure_port(address) if grpc_credentials is None
                          else self._grpc.add_secure_port(address, grpc_credentials))
        self.rest_port = self._rest.port

    @property
    def rest_url(self) -> str:
        return f"{self._scheme}://{self.host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        """`host:port`, or `https://host:port` over TLS (as `GrpcClient` reads a target)."""
        prefix = "https://" if self._scheme == "https" else ""
        return f"{prefix}{self.host}:{self.grpc_port}"

    def start(self) -> "ModelServer":
        self._grpc.start()
        self._rest.start()
        _RUNNING.add(self)  # Serves until stopped, held or not: a collected grpc.Server stops.
        return self

    def stop(self) -> None:
        _RUNNING.discard(self)
        self.registry.close()
        self._rest.stop()
        self._grpc.stop(grace=1.0).wait()
        self._workers.shutdown()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_models(config: ModelServingConfig) -> ModelServer:
    """Loads (and warms up) the models `config` names under its `base_dir` and starts serving
    them; `poll_seconds` > 0 also picks up versions pushed later (`recs serve-models`); with
    `enable_batching`, models whose version holds `batching_params.pbtxt` batch concurrent
    requests (`serving.model_server.batching`); `labels` ({model: {label: version}}, e.g.
    {"ranker": {"stable": 3, "canary": 4}}) serves those versions under those labels too.

    `tls` and `tokens` secure both ports (`ModelServer`).

    Example:
        server = serve_models(ModelServingConfig.local(base_dir))

    Raises:
        FileNotFoundError: a model has no servable version.
        ValueError: a TLS or token file cannot be read or holds no valid certificate or
            token (found before any model loads).
    """
    tokens = BearerTokens(config.tokens.read()) if config.tokens.enabled else None
    if config.tls.enabled:
        config.tls.context()  # Refuses a missing file or a mismatched key now, not later.
    set_thread_pools(config.intra_op_threads, config.inter_op_threads)
    registry = ModelRegistry(config.base_dir, config.models, num_versions=config.num_versions,
                             labels=config.labels, batching=config.enable_batching)
    registry.load()
    if config.poll_seconds > 0:
        registry.start_polling(config.poll_seconds)
    return ModelServer(registry, host=config.host, rest_port=config.rest_port,
                       grpc_port=config.grpc_port, tls=config.tls, tokens=tokens).start()
