"""The recommendation service (`recs serve`): an HTTP JSON API over the online policy.

    POST /v1/recommendations  {"user_id", "k", "context": {"device_type", "hour"}, "diversity"}
        -> serving.online.policy (arms, exploration, fallback, served-list log)
        -> serving.online.recommender (profile -> retrieve -> rank -> filter -> re-rank)
        -> {"request_id", "items", "model_versions", "fallback", "timings_ms"}
    GET  /healthz   liveness: the process answers
    GET  /readyz    readiness: the model server serves both models and the profile store
                    answers (503 otherwise)
    GET  /metrics   Prometheus: latency per stage, requests by outcome, fallbacks, candidates
    GET  /openapi.json  the API's OpenAPI spec (also checked into serving/openapi.json), and
                    its pages /docs and /redoc

With `ServiceConfig.tokens` set, every request but the probes (/healthz, /readyz) needs
`Authorization: Bearer <token>` or is answered 401 with `WWW-Authenticate: Bearer`;
`metrics_access` and `docs_access` leave /metrics and the docs open, put them behind the token,
or close them (404). `ServiceConfig.tls` serves HTTPS (`ServiceServer`, `recs serve`).

When the model server is slow or down, the profile store cannot answer, or nothing is known of
the user (no profile in the store or the request), the answer is the popularity list, flagged
in `fallback` (`model_server_timeout`, `model_server_error`, `store_unavailable`,
`no_profile`); a new user who sends a profile is served by the models. Every 4xx, the framework's own included, carries
`{"error": "..."}`: 400 for a body that is not JSON (RFC 8259: no NaN or Infinity, valid
UTF-8), 422 for JSON the schema refuses (numbers and booleans are strict), 404 for an unknown
route, 405 for a wrong method; the connection layer (`serving.http`) answers 408, 413
and 431 in the same envelope. Past `ServiceConfig.max_in_flight` recommendation requests the
service sheds load with 503 and `Retry-After` rather than queueing. Every served list is
logged as one JSON line (logger `recs.served`, and `served_log` if set) for the feedback loop.
"""

import contextlib
import json
import time
from typing import Annotated, Any, Callable, Literal

from recs.contract import events
from recs.contract import features as F
from recs.contract import rows
from serving.config import MAX_K, ServiceConfig
from serving.http import BackgroundServer, BearerGate, error_body
from serving.online.policy import Ask, OnlinePolicy
from serving.security import BearerTokens

try:
    import fastapi
    import orjson
    import prometheus_client
    import pydantic
    from fastapi import responses
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect
except ImportError as error:  # pragma: no cover - the lock file installs them
    raise ImportError("the recommendation service needs fastapi, orjson and prometheus-client: "
                      "pip install fastapi orjson prometheus-client") from error

API_VERSION = "1.0.0"
RECOMMENDATIONS_PATH = "/v1/recommendations"
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
"""Open whatever `ServiceConfig.tokens` says: the kubelet's probes send no token."""
# Strict: JSON's true is not 1 and "5" is not 5.
_STRICT = pydantic.ConfigDict(extra="forbid", strict=True)


def _integral(value: object) -> object:
    # JSON Schema, which the OpenAPI spec's "integer" follows, counts 5.0 as the integer 5:
    # refusing it would make the spec untrue. 5.5, true and "5" are left for the strict check
    # to refuse.
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _integer(low: int, high: int) -> Any:
    """An integer field's type, bounded in [low, high]. The bounds come before the validator,
    or pydantic would write them into the spec as keywords no JSON Schema validator reads."""
    return Annotated[int, pydantic.Field(ge=low, le=high), pydantic.BeforeValidator(_integral)]


# No "|" (the query tower reads the genres joined by it) and no control character.
_Genre = pydantic.constr(min_length=1, max_length=rows.MAX_LABEL_CHARS,
                         pattern=rows.TEXT_PATTERN.replace("[^", "[^|").replace("*$", "+$"))


class Context(pydantic.BaseModel):
    """Where and when the user asks; the hour defaults to the current UTC hour."""

    model_config = _STRICT
    device_type: Literal[F.DEVICE_TYPES] = "tv"  # type: ignore[valid-type]
    hour: _integer(0, F.HOURS_PER_DAY - 1) | None = None  # type: ignore[valid-type]


class Profile(pydantic.BaseModel):
    """A new user's profile, used only when the store has none for the user (cold start)."""

    model_config = _STRICT
    age: _integer(rows.MIN_AGE, rows.MAX_AGE)  # type: ignore[valid-type]
    # A request states its country and tier ("" is the contract's "unknown", for stored rows).
    country: str = pydantic.Field(min_length=1, max_length=rows.MAX_LABEL_CHARS,
                                  pattern=rows.TEXT_PATTERN)
    subscription_tier: str = pydantic.Field(min_length=1, max_length=rows.MAX_LABEL_CHARS,
                                            pattern=rows.TEXT_PATTERN)
    preferred_genres: list[_Genre] = pydantic.Field(  # type: ignore[valid-type]
        default=[], max_length=F.MAX_PREFERRED_GENRES)

    @pydantic.model_validator(mode="after")
    def _follows_the_row_rules(self) -> "Profile":
        # The contract's rules beyond the schema (printable text): the store refuses the same.
        row = self.model_dump()
        row[F.PREFERRED_GENRES] = rows.GENRE_SEPARATOR.join(self.preferred_genres)
        rows.check_profile_row({F.USER_ID: "request", **row})
        return self


class RecommendationRequest(pydantic.BaseModel):
    """The body of `POST /v1/recommendations`.

    Types are strict: `k`, `context.hour` and `profile.age` are JSON integers (not `true`,
    `"5"` or `5.5`; `5.0` is the integer 5, as JSON Schema has it), `diversity` is a finite
    JSON number (an integer such as `1` is one), strings are strings, and unknown fields are
    refused.
    """

    model_config = _STRICT
    # ASCII only: the OpenAPI pattern is read as ECMA-262, whose \w is [A-Za-z0-9_].
    user_id: str = pydantic.Field(min_length=1, max_length=events.MAX_ID_CHARS,
                                  pattern=r"^[A-Za-z0-9_.:-]+$")
    k: _integer(1, MAX_K) = 10  # type: ignore[valid-type]  # `request_model` narrows it.
    context: Context = Context()
    profile: Profile | None = None
    diversity: float = pydantic.Field(
        default=0.0, ge=0.0, le=1.0, allow_inf_nan=False,
        description="0 keeps the ranker's order; towards 1 each further title of an "
                    "already-shown genre is discounted by that factor.")


def request_model(config: ServiceConfig) -> type[RecommendationRequest]:
    """`RecommendationRequest` with `k` in [1, `config.max_k`] and `config.default_k` as its
    default, so the bound the app enforces is the one its OpenAPI spec states."""
    return pydantic.create_model(
        "RecommendationRequest", __base__=RecommendationRequest,
        __doc__=RecommendationRequest.__doc__,
        k=(_integer(1, config.max_k),
           pydantic.Field(default=config.default_k, description="How many titles to return.")))


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
        description="Why the list came from the popularity fallback (model_server_timeout, "
                    "model_server_error, store_unavailable, no_profile); null when it did "
                    "not.")
    candidates: int
    timings_ms: dict[str, float]


class ErrorResponse(pydantic.BaseModel):
    error: str


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


def _error(status: int, message: str, headers: dict[str, str] | None = None
           ) -> responses.Response:
    # serving.http's envelope: json.dumps escapes what UTF-8 cannot encode (a lone
    # surrogate decoded from a URL), where JSONResponse would raise.
    return responses.Response(error_body(message), status_code=status, headers=headers,
                              media_type="application/json")


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


class _StrictJsonRequest(fastapi.Request):
    """Parses the body with orjson, which holds to RFC 8259 where the standard library does
    not: NaN and Infinity literals, numbers no double holds (1e400), invalid UTF-8, a
    byte-order mark and lone surrogate escapes are refused, and nesting is capped, so no body
    can raise RecursionError or Python's limit on the digits of an int."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = orjson.loads(await self.body())
            except orjson.JSONDecodeError as error:
                raise fastapi.HTTPException(
                    400, f"the request body is not valid JSON (RFC 8259): {error}") from error
        return self._json


def _is_json(media_type: str) -> bool:
    """application/json, or a JSON-based type (RFC 6839's +json suffix)."""
    kind = media_type.lower()
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


class _StrictJsonRoute(fastapi.routing.APIRoute):
    """A route whose handler reads the body as `_StrictJsonRequest` (FastAPI's documented
    way of changing how a route reads its request)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict_json_handler(request: fastapi.Request) -> responses.Response:
            strict = _StrictJsonRequest(request.scope, request.receive)
            if strict.method == "POST":
                media_type = strict.headers.get("content-type", "").split(";")[0].strip()
                if not _is_json(media_type):
                    raise fastapi.HTTPException(
                        415, f"the body must be JSON, sent as Content-Type: application/json; "
                             f"received {media_type[:80]!r}")
                try:
                    body = await strict.body()  # Kept: the handler reads it again.
                except ClientDisconnect as error:
                    raise fastapi.HTTPException(
                        400, "the client went away before its body ended") from error
                if not body.strip():
                    raise fastapi.HTTPException(400, "the request body is empty; send a JSON "
                                                     "object")
            return await handler(strict)

        return strict_json_handler


class _InFlightLimit:
    """ASGI middleware: at most `limit` requests to `path` in the application at once; one
    more is answered 503 with Retry-After at once instead of waiting for a worker thread.

    A request is admitted once its whole body has arrived (`serving.http` bounds its size and
    time), so a slow client holds its connection but never a slot. The count needs no lock:
    it changes only on the event loop.
    """

    def __init__(self, app: Any, path: str, limit: int, retry_after_s: int,
                 on_shed: Callable[[], None]) -> None:
        self.app = app
        self.path = path
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.on_shed = on_shed
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # The client left (or serving.http cut it off) before its body ended.
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if self.in_flight >= self.limit:
            self.on_shed()
            return await _error(
                503, f"the service is at its limit of {self.limit} requests in flight; "
                     f"retry after {self.retry_after_s} s",
                {"Retry-After": str(self.retry_after_s)})(scope, receive, send)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        self.in_flight += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.in_flight -= 1


_ERRORS = {status: {"model": ErrorResponse, "description": description}
           for status, description in (
               (400, "The body is empty or not JSON, or the HTTP request is malformed."),
               (408, "The request's head or body arrived too slowly."),
               (413, "The body is over ServiceConfig.max_body_bytes."),
               (415, "The body is not sent as Content-Type: application/json."),
               (422, "The JSON does not match the request schema."),
               (431, "The request's head is over ServiceConfig.max_header_bytes."))}


def _document_bearer(app: fastapi.FastAPI, open_paths: frozenset[str]) -> None:
    """States in the app's OpenAPI spec that its operations outside `open_paths` need a
    bearer token and may answer 401 (the gate is middleware, which FastAPI cannot see)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        spec = plain()  # FastAPI caches it: the additions below are made once.
        schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
        if "bearer" not in schemes:
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            for path, operations in spec["paths"].items():
                if path in open_paths:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    operation["responses"]["401"] = {
                        "description": "No bearer token, or one the service does not accept.",
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/ErrorResponse"}}}}
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(policy: OnlinePolicy) -> fastapi.FastAPI:
    """Builds the service's ASGI app: HTTP only, the policy decides what is served.

    The sizes and read timeouts of `policy.config` are enforced at the connection, by
    `serving.http`: run the app with `ServiceServer`, or with
    `serving.http.uvicorn_config(app, config.http_limits(), tls=config.tls)` as `recs serve`
    does. With `config.tokens` set, requests need a bearer token (see the module docstring).

    Args:
        policy: arms, fallbacks and the served-list log around a recommender
            (`serving.online.policy.OnlinePolicy(recommender, config)`).

    Returns:
        A FastAPI app; `app.state.http_limits` and `app.state.tls` hold the connection limits
        and TLS to serve it with.

    Raises:
        ValueError: `config.tokens` cannot be read or holds a malformed token.
    """
    config = policy.config
    tokens = BearerTokens(config.tokens.read()) if config.tokens.enabled else None
    metrics = _Metrics()
    request_type = request_model(config)
    @contextlib.asynccontextmanager
    async def lifespan(_):  # Run by TestClient and by servers with lifespan events on.
        yield
        policy.close()

    app = fastapi.FastAPI(
        title="recs recommendation service", version=API_VERSION,
        description="Two-tower retrieval (ScaNN) and a deep ranker behind one call.",
        responses=_ERRORS, lifespan=lifespan,
        # No spec, no docs pages: FastAPI adds /docs and /redoc only with a spec URL.
        **({"openapi_url": None} if config.docs_access == "closed" else {}))
    app.router.route_class = _StrictJsonRoute
    app.state.http_limits = config.http_limits()
    app.state.tls = config.tls
    app.state.policy = policy
    docs_paths = frozenset(path for path in (app.openapi_url, app.docs_url, app.redoc_url,
                                             app.swagger_ui_oauth2_redirect_url) if path)
    open_paths = (PROBE_PATHS | (docs_paths if config.docs_access == "open" else frozenset())
                  | ({"/metrics"} if config.metrics_access == "open" else frozenset()))

    @app.exception_handler(fastapi.exceptions.RequestValidationError)
    async def invalid(_, error: fastapi.exceptions.RequestValidationError):
        metrics.requests.labels("invalid").inc()
        return _error(422, _validation_message(error.errors()))

    # Starlette's own class: its router raises it for 404 and 405, FastAPI's subclass for 400.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: fastapi.Request, error: StarletteHTTPException):
        message = str(error.detail)
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}" + (
                f"; the API is described at {app.openapi_url}" if app.openapi_url else "")
        elif error.status_code == 405:
            message = (f"{request.method} is not allowed on {request.url.path}; allowed: "
                       f"{(error.headers or {}).get('Allow', '')}")
        if error.status_code in (400, 415):
            metrics.requests.labels("invalid").inc()
        return _error(error.status_code, message, dict(error.headers or {}))

    @app.exception_handler(Exception)
    async def crashed(_, error: Exception):
        # The envelope even for a bug; Starlette re-raises the error after this so that the
        # server logs its traceback.
        metrics.requests.labels("error").inc()
        return _error(500, f"internal error: {type(error).__name__}")

    shed_response = {"model": ErrorResponse, "description": (
        "Shedding load: ServiceConfig.max_in_flight requests are in flight; retry after "
        "Retry-After seconds."), "headers": {"Retry-After": {
            "description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}}

    @app.post(RECOMMENDATIONS_PATH, response_model=RecommendationResponse,
              responses={503: shed_response} if config.max_in_flight else None)
    def recommendations(request: request_type):  # type: ignore[valid-type]
        started = time.perf_counter()
        profile = None if request.profile is None else {
            **request.profile.model_dump(),
            F.PREFERRED_GENRES: "|".join(request.profile.preferred_genres)}
        answer = policy.answer(Ask(
            user_id=request.user_id, k=request.k, device_type=request.context.device_type,
            hour=request.context.hour, diversity=request.diversity, profile=profile))
        served = answer.served
        served.stage_ms["total"] = 1000.0 * (time.perf_counter() - started)
        for stage, ms in served.stage_ms.items():
            metrics.latency.labels(stage).observe(ms / 1000.0)
        metrics.candidates.observe(served.candidates)
        if answer.fallback:
            metrics.fallbacks.labels(answer.fallback).inc()
        metrics.requests.labels("fallback" if answer.fallback else "ok").inc()
        # The response model's shape, written directly: FastAPI would validate and encode the
        # answer field by field again, a cost of its own on every request (the spec still
        # comes from `response_model`; a test holds the two together).
        return responses.Response(orjson.dumps({
            "request_id": answer.request_id, "user_id": request.user_id,
            "items": [{"title_id": item.title_id, "genre": item.genre, "score": item.score,
                       "retrieval_score": item.retrieval_score,
                       "propensity": item.propensity, "explored": item.explored}
                      for item in served.items],
            "model_versions": served.versions, "experiments": answer.experiments,
            "fallback": answer.fallback, "candidates": served.candidates,
            "timings_ms": {stage: round(ms, 3) for stage, ms in served.stage_ms.items()}}),
            media_type="application/json")

    # /healthz and /metrics are coroutines, so that they run on the event loop and answer even
    # while every worker thread is busy with a recommendation; /readyz asks the store, so it
    # runs on a worker thread.
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse,
                                         "description": "A model has no AVAILABLE version, or the profile store cannot "
                        "answer."}})
    def readyz():  # A worker thread: it asks the profile store once.
        reason = policy.unready()
        if reason is None:
            return {"status": "ready", "model_versions": policy.status.versions(),
                    "store": policy.store_health() or "ok"}
        return _error(503, reason)

    if config.metrics_access != "closed":
        @app.get("/metrics", response_class=responses.PlainTextResponse)
        async def prometheus_metrics():
            return responses.Response(prometheus_client.generate_latest(metrics.registry),
                                      media_type=prometheus_client.CONTENT_TYPE_LATEST)

    if config.max_in_flight is not None:
        app.add_middleware(_InFlightLimit, path=RECOMMENDATIONS_PATH,
                           limit=config.max_in_flight, retry_after_s=config.retry_after_s,
                           on_shed=metrics.requests.labels("shed").inc)
    if tokens is not None:
        # Added last, so outermost: a refused request never reads its body nor holds a slot.
        app.add_middleware(BearerGate, tokens=tokens,
                           is_open=lambda _method, path: path in open_paths,
                           on_refused=metrics.requests.labels("unauthorized").inc)
        _document_bearer(app, open_paths)
    return app


def openapi_spec(app: fastapi.FastAPI) -> str:
    """The app's OpenAPI document as stable JSON (what `serving/openapi.json` holds)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


class ServiceServer(BackgroundServer):
    """Runs an app from `create_app` on a background thread (tests, the demo, benchmarks),
    with the connection limits and TLS of the config the app was created with
    (`serving.http`: header, body and keep-alive timeouts, header and body sizes).

    Args:
        app: the ASGI app from `create_app`.
        host: interface to bind.
        port: 0 picks a free port (see `url` after `start`).

    Example:
        with ServiceServer(create_app(OnlinePolicy(recommender, ServiceConfig()))) as server:
            urllib.request.urlopen(server.url + "/healthz")
    """

    def __init__(self, app: fastapi.FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, app.state.http_limits, host, port, tls=app.state.tls)
        self._policy = app.state.policy

    def stop(self) -> None:
        super().stop()
        self._policy.close()
