"""The recommendation service (`recs serve`): an HTTP JSON API over the recommender.

    POST /v1/recommendations  {"user_id", "k", "context": {"device_type", "hour"}, "diversity"}
        -> profile -> query embedding -> ScaNN candidates -> ranker -> filter -> re-rank
        -> {"request_id", "items", "model_versions", "fallback", "timings_ms"}
    GET  /healthz   liveness: the process answers
    GET  /readyz    readiness: the model server serves both models (503 otherwise)
    GET  /metrics   Prometheus: latency per stage, requests by outcome, fallbacks, candidates
    GET  /openapi.json  the API's OpenAPI spec (also checked into serving/openapi.json)

When the model server is slow or down the answer comes from the popularity list within the
model budget, flagged in `fallback`; bad input gets a 4xx with {"error": "..."}, never a 5xx.
Every served list is logged as one JSON line (logger `recs.served`, and `served_log` if set)
for the feedback loop.
"""

import json
import logging
import threading
import time
import uuid
from typing import Literal

import numpy as np

from recs import features as F
from recs.experiments import Assigner
from serving.client import ModelServerError
from serving.config import ServiceConfig
from serving.recommender import Recommender, ServedList, UnknownUserError

try:
    import fastapi
    import prometheus_client
    import pydantic
    from fastapi import responses
except ImportError as error:  # pragma: no cover - the lock file installs them
    raise ImportError("the recommendation service needs fastapi, uvicorn and prometheus-client: "
                      "pip install fastapi uvicorn prometheus-client") from error

API_VERSION = "1.0.0"
SERVED_LOGGER = logging.getLogger("recs.served")
_STAGES = ("profile", "retrieval", "ranking", "total")


class Context(pydantic.BaseModel):
    """Where and when the user asks; the hour defaults to the current UTC hour."""

    model_config = pydantic.ConfigDict(extra="forbid")
    device_type: Literal[F.DEVICE_TYPES] = "tv"  # type: ignore[valid-type]
    hour: int | None = pydantic.Field(default=None, ge=0, le=F.HOURS_PER_DAY - 1)


class Profile(pydantic.BaseModel):
    """A new user's profile, used only when the store has none for the user (cold start)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    age: int = pydantic.Field(ge=0, le=120)
    country: str = pydantic.Field(min_length=1, max_length=64)
    subscription_tier: str = pydantic.Field(min_length=1, max_length=64)
    preferred_genres: list[str] = pydantic.Field(default=[], max_length=F.MAX_PREFERRED_GENRES)


class RecommendationRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    user_id: str = pydantic.Field(min_length=1, max_length=128, pattern=r"^[\w.:-]+$")
    k: int = pydantic.Field(default=10, ge=1, le=100)
    context: Context = Context()
    profile: Profile | None = None
    diversity: float = pydantic.Field(
        default=0.0, ge=0.0, le=1.0,
        description="0 keeps the ranker's order; towards 1 each further title of an "
                    "already-shown genre is discounted by that factor.")


class Item(pydantic.BaseModel):
    title_id: str
    genre: str
    score: float | None = pydantic.Field(
        description="The ranker's engagement probability; null in a popularity fallback.")
    retrieval_score: float | None
    propensity: float = pydantic.Field(
        description="Probability the policy had of showing this title in this slot.")
    explored: bool


class RecommendationResponse(pydantic.BaseModel):
    request_id: str
    user_id: str
    items: list[Item]
    model_versions: dict[str, int | None]
    experiments: dict[str, str] = pydantic.Field(
        description="The user's arm in each running A/B test.")
    fallback: str | None = pydantic.Field(
        description="Why the list came from the popularity fallback; null when it did not.")
    candidates: int
    timings_ms: dict[str, float]


class ErrorResponse(pydantic.BaseModel):
    error: str


class ModelStatus:
    """Which versions of the service's models the model server has AVAILABLE, refreshed at
    most every `refresh_s` seconds so that readiness probes do not hammer it."""

    def __init__(self, recommender: Recommender, models: tuple[str, ...], refresh_s: float,
                 timeout_s: float = 1.0) -> None:
        self._clients = {model: (recommender.retrieval_client
                                 if model == recommender.retrieval_model else recommender.client)
                         for model in models}
        self._timeout_s = timeout_s
        self._models = models
        self._refresh_s = refresh_s
        self._checked = -float("inf")
        self._versions: dict[str, int | None] = {model: None for model in models}
        self._lock = threading.Lock()

    def versions(self) -> dict[str, int | None]:
        with self._lock:
            if time.monotonic() - self._checked >= self._refresh_s:
                for model in self._models:
                    try:
                        available = self._clients[model].available_versions(model, self._timeout_s)
                    except ModelServerError:
                        available = []
                    self._versions[model] = max(available) if available else None
                self._checked = time.monotonic()
            return dict(self._versions)

    def ready(self) -> bool:
        return all(version is not None for version in self.versions().values())


class _Metrics:
    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.latency = prometheus_client.Histogram(
            "recs_stage_latency_seconds", "Latency of each stage of a recommendation request.",
            ["stage"], registry=self.registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0))
        self.requests = prometheus_client.Counter(
            "recs_requests", "Recommendation requests by outcome.", ["outcome"],
            registry=self.registry)
        self.fallbacks = prometheus_client.Counter(
            "recs_fallbacks", "Lists served from the popularity fallback.", ["reason"],
            registry=self.registry)
        self.candidates = prometheus_client.Histogram(
            "recs_candidates", "Candidates reaching the ranker per request.",
            registry=self.registry, buckets=(0, 10, 50, 100, 200, 500, 1000))


def _error(status: int, message: str) -> responses.JSONResponse:
    return responses.JSONResponse(status_code=status, content={"error": message})


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


class _BodyLimit:
    """ASGI middleware: refuses bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _error(413, f"request body must be at most {self.limit} bytes; "
                                     f"declared {declared.decode(errors='replace')}")(
                scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _error(413, f"request body must be at most {self.limit} bytes")(
                scope, receive, send)


class _TooLarge(Exception):
    pass


def _served_line(request_id: str, request: RecommendationRequest, hour: int,
                 served: ServedList, fallback: str | None, arms: dict[str, str]) -> str:
    return json.dumps({
        "ts": time.time(), "request_id": request_id, "user_id": request.user_id,
        "device_type": request.context.device_type, "hour": hour, "k": request.k,
        "fallback": fallback, "model_versions": served.versions, "experiments": arms,
        "items": [{"title_id": item.title_id, "score": item.score, "position": position,
                   "propensity": item.propensity, "explored": item.explored}
                  for position, item in enumerate(served.items)]})


def create_app(recommender: Recommender, config: ServiceConfig,
               status: ModelStatus | None = None) -> fastapi.FastAPI:
    """Builds the service's ASGI app around a recommender.

    Args:
        recommender: talks to the model server and the profile store.
        config: timeouts, limits and the served-list log.
        status: model readiness and versions; built from the recommender's client if None.

    Returns:
        A FastAPI app; serve it with uvicorn (`recs serve` does).
    """
    status = status or ModelStatus(recommender, (config.retrieval_model, config.ranker_model),
                                   config.status_refresh_s, config.model_timeout_ms / 1000.0)
    metrics = _Metrics()
    assigner = Assigner(list(config.experiments), config.holdout)
    log_lock = threading.Lock()
    app = fastapi.FastAPI(
        title="recs recommendation service", version=API_VERSION,
        description="Two-tower retrieval (ScaNN) and a deep ranker behind one call.",
        responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})

    @app.exception_handler(fastapi.exceptions.RequestValidationError)
    async def invalid(_, error: fastapi.exceptions.RequestValidationError):
        metrics.requests.labels("invalid").inc()
        return _error(422, _validation_message(error.errors()))

    @app.exception_handler(fastapi.HTTPException)
    async def http_error(_, error: fastapi.HTTPException):
        return _error(error.status_code, str(error.detail))

    def write_served(line: str) -> None:
        SERVED_LOGGER.info(line)
        if config.served_log:
            with log_lock, open(config.served_log, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    @app.post("/v1/recommendations", response_model=RecommendationResponse,
              responses={404: {"model": ErrorResponse}})
    def recommendations(request: RecommendationRequest):
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        hour = (request.context.hour if request.context.hour is not None
                else time.gmtime().tm_hour)
        if request.k > config.max_k:
            metrics.requests.labels("invalid").inc()
            return _error(422, f"k must be at most {config.max_k}; received {request.k}")
        fallback = None
        arms = assigner.arms(request.user_id)
        settings = {"diversity": request.diversity, "exploration": config.exploration}
        for arm in arms.values():
            settings.update(arm.settings)
        try:
            served = recommender.recommend_detailed(
                request.user_id, k=request.k, device_type=request.context.device_type,
                hour=hour, diversity=settings["diversity"],
                timeout=config.model_timeout_ms / 1000.0,
                exploration=settings["exploration"],
                profile=None if request.profile is None else {
                    **request.profile.model_dump(),
                    F.PREFERRED_GENRES: "|".join(request.profile.preferred_genres)},
                # Seeded by the request id, so a logged list can be replayed exactly.
                rng=np.random.default_rng(int(request_id[:16], 16)))
        except UnknownUserError as error:
            metrics.requests.labels("unknown_user").inc()
            return _error(404, str(error))
        except ModelServerError as error:
            fallback = ("model_server_timeout" if error.status in ("DEADLINE_EXCEEDED", "TIMEOUT")
                        else "model_server_error")
            metrics.fallbacks.labels(fallback).inc()
            served = recommender.popular(request.user_id, request.k)
        served.stage_ms["total"] = 1000.0 * (time.perf_counter() - started)
        for stage, ms in served.stage_ms.items():
            metrics.latency.labels(stage).observe(ms / 1000.0)
        metrics.candidates.observe(served.candidates)
        metrics.requests.labels("fallback" if fallback else "ok").inc()
        versions = status.versions() if fallback is None else {}
        served.versions.update({model: version for model, version in versions.items()
                                if served.versions.get(model) is None})
        arm_names = {name: arm.name for name, arm in arms.items()}
        write_served(_served_line(request_id, request, hour, served, fallback, arm_names))
        return RecommendationResponse(
            request_id=request_id, user_id=request.user_id,
            items=[Item(title_id=item.title_id, genre=item.genre, score=item.score,
                        retrieval_score=item.retrieval_score, propensity=item.propensity,
                        explored=item.explored) for item in served.items],
            model_versions=served.versions, experiments=arm_names, fallback=fallback,
            candidates=served.candidates,
            timings_ms={stage: round(ms, 3) for stage, ms in served.stage_ms.items()})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    def readyz():
        versions = status.versions()
        if all(version is not None for version in versions.values()):
            return {"status": "ready", "model_versions": versions}
        missing = sorted(model for model, version in versions.items() if version is None)
        return _error(503, f"model server has no AVAILABLE version of {missing}")

    @app.get("/metrics", response_class=responses.PlainTextResponse)
    def prometheus_metrics():
        return responses.Response(prometheus_client.generate_latest(metrics.registry),
                                  media_type=prometheus_client.CONTENT_TYPE_LATEST)

    app.add_middleware(_BodyLimit, limit=config.max_body_bytes)
    return app


def openapi_spec(app: fastapi.FastAPI) -> str:
    """The app's OpenAPI document as stable JSON (what `serving/openapi.json` holds)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


class ServiceServer:
    """Runs an app under uvicorn on a background thread (tests, the demo, benchmarks).

    Args:
        app: the ASGI app from `create_app`.
        host: interface to bind.
        port: 0 picks a free port (see `url` after `start`).

    Example:
        with ServiceServer(create_app(recommender, ServiceConfig())) as server:
            urllib.request.urlopen(server.url + "/healthz")
    """

    def __init__(self, app: fastapi.FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                     access_log=False))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServiceServer":
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the recommendation service did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._socket.close()

    def __enter__(self) -> "ServiceServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
