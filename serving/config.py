"""Typed configuration of the recommendation service (`ServiceConfig`): its model servers,
store, experiments, budgets and HTTP limits. The model server's own config, shared with the
deployment's TF Serving files, is `serving.model_server.config.ModelServingConfig`.
"""

import dataclasses

from recs.config import Config, require
from recs.contract.layout import DEMO_ROOT, RunLayout
from recs.contract.models import (RANKER, RECOMMENDER, RETRIEVAL)
from serving.http import HttpLimits
from serving.online.experiments import Assigner, Experiment, ModelTarget
from serving.security import ClientTls, ServerTls, TokenSource
from serving.types import MODEL_ROLES, RANKER_ROLE, RECOMMENDER_ROLE, RETRIEVAL_ROLE

MAX_K = 100
"""The longest list the recommender builds; `ServiceConfig.max_k` may lower it."""

PROTOCOLS = ("rest", "grpc")
ACCESS = ("open", "token", "closed")
"""How `/metrics` and the API docs are reached: by anyone, with a bearer token, or not at all
(404)."""
ARM_SETTINGS = ("diversity", "exploration", "tail_share")
"""What an experiment arm may change in the service (`serving.online.list_policy.ListSettings`):
the genre re-rank, the exploration slots, and a share of slots given to the catalogue's least
popular titles (an arm worse by construction, whose effect an experiment must detect)."""


@dataclasses.dataclass(frozen=True)
class ServiceConfig(Config):
    """The recommendation service (`recs serve`).

    Attributes:
        model_server: TF Serving's REST base URL (`http://host:8501`) or gRPC `host:port`.
        protocol: "rest" or "grpc", matching `model_server`.
        retrieval_server: where the retrieval model is served when not on `model_server`:
            stock TF Serving cannot run the ScaNN model, so a deployment may serve it from
            `recs serve-models` and the ranker from `tensorflow/serving`. Empty = same.
        retrieval_model: served name of the retrieval model (ScaNN, or `retrieval_exact`
            behind a stock TF Serving).
        ranker_model: served name of the ranker.
        recommender_model: served name of the one-call recommender, asked on the retrieval
            server (`recommender` with ScaNN; `recommender_exact` behind a stock TF Serving);
            "" always makes two calls (retrieval, then the ranker).
        model_timeout_ms: budget for all model-server calls of one request; past it the
            service answers from the popularity list and says so.
        store_timeout_ms: how long one profile-store call may wait (a SQLite writer's lock,
            a Redis socket) before the request is answered from the popularity list
            (`store_unavailable`); it never eats the model budget for long.
        max_k: the largest list a caller may ask for, at most the recommender's own ceiling
            (`MAX_K`). It is the one bound on `k`: the request schema,
            and so the OpenAPI spec, of an app states the `max_k` it was created with.
        default_k: the list length when a request gives none; at most `max_k`.
        max_in_flight: recommendation requests admitted at once; one more is answered 503
            with `Retry-After` instead of waiting. None admits all, which lets a burst queue
            for the worker threads with no bound on its wait. A request counts once its body
            has arrived, so slow clients hold a connection, never a slot. The default is
            where shedding paid on a 2-core machine serving the tiny test world with the
            default model budget: a lower limit shed requests that the machine, unlimited,
            answered within the budget, and a higher one let queueing push the admitted
            requests' p99 past the budget at 25 and 50 concurrent clients
            (`python benchmarks/hostile/service.py --sweep` measures it). It stays below the
            40 worker threads, so readiness always finds a free one.
        retry_after_s: the `Retry-After` a shed request is given, in whole seconds.
        max_body_bytes: a larger request body, declared or streamed (chunked), is refused
            with 413 at the connection.
        max_header_bytes: a larger request line and headers are refused with 431.
        header_timeout_s: a request whose line and headers take longer (from the connection,
            or from its first byte on a kept-alive one) is answered 408 and closed.
        body_timeout_s: a body that takes longer after its headers is answered 408.
        keep_alive_s: an idle kept-alive connection is closed after this (whole seconds,
            at least 1: uvicorn's resolution).
        serving_dir: the models' base directory; the catalogue snapshot is read from the
            newest retrieval version's `assets.extra/`.
        store: the online profile store: a SQLite file path, or a `redis://` URL.
        profile_cache_s: how long the service reuses a user's profile, history and finished
            titles (`serving.online.store.CachedProfileStore`); 0 reads the store on every request.
        profile_changes: Redis URL of the consumer's profile-change channel, so that a cached
            user is dropped the moment the consumer changes them; empty uses `store` when it
            is a Redis URL (else a change shows within `profile_cache_s`).
        served_log: JSON-lines file of every served list (the feedback loop's input); empty
            logs through the `recs.served` logger only.
        status_refresh_s: how often model versions and readiness are re-read.
        exploration: epsilon of the exploration slots (0 = none); each shown title's
            propensity is logged either way.
        experiments: running A/B tests; an arm's `settings` may set `diversity`,
            `exploration` and `tail_share` for its users, its `models` route a role to another version, label
            or served model, and `policy="popularity"` serves it the popularity list. The
            response names each user's arms. Experiments in different layers (which share
            users) may not route one role to different targets, nor pair a popularity arm
            with an arm that routes a model: a user in both could get only one of them.
        holdout: share of users kept out of every experiment.
        tokens: where the bearer tokens the service accepts are read from (a file, or an
            environment variable; several tokens let one be replaced without downtime).
            Set, every request needs `Authorization: Bearer <token>` except `/healthz` and
            `/readyz` (the kubelet's probes) and what `metrics_access` and `docs_access`
            leave open; others get 401. Empty (the default) lets anyone in.
        tls: the service's certificate and key (and a client CA for mutual TLS); empty
            serves plain HTTP.
        metrics_access: "open", "token" (needs `tokens`) or "closed" (404): who may read
            `/metrics`.
        docs_access: the same for `/openapi.json`, `/docs` and `/redoc`.
        model_server_tls: the CA (and client certificate) used on `https://` model-server
            addresses; a gRPC address is reached over TLS when written `https://host:port`.
        model_server_token: the token (the source's first) sent to `model_server`, and to
            `retrieval_server` when that is empty. Stock TF Serving ignores it.
        retrieval_server_token: the token sent to `retrieval_server`, when that is set.
    """

    model_server: str = "http://127.0.0.1:8501"
    protocol: str = "rest"
    retrieval_server: str = ""
    retrieval_model: str = RETRIEVAL
    ranker_model: str = RANKER
    recommender_model: str = RECOMMENDER
    model_timeout_ms: int = 1000
    store_timeout_ms: int = 200
    max_k: int = MAX_K
    default_k: int = 10
    max_in_flight: int | None = 16
    retry_after_s: int = 1
    max_body_bytes: int = 16 * 1024
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    serving_dir: str = str(RunLayout(DEMO_ROOT).serving)
    store: str = str(RunLayout(DEMO_ROOT).store)
    profile_cache_s: float = 2.0
    profile_changes: str = ""
    served_log: str = ""
    status_refresh_s: float = 1.0
    exploration: float = 0.0
    experiments: tuple[Experiment, ...] = ()
    holdout: float = 0.0
    tokens: TokenSource = TokenSource()
    tls: ServerTls = ServerTls()
    metrics_access: str = "open"
    docs_access: str = "open"
    model_server_tls: ClientTls = ClientTls()
    model_server_token: TokenSource = TokenSource()
    retrieval_server_token: TokenSource = TokenSource()

    def __post_init__(self) -> None:
        require(self.protocol in PROTOCOLS, "protocol", f"one of {PROTOCOLS}", self.protocol)
        require(0.0 <= self.exploration <= 1.0, "exploration", "in [0, 1]", self.exploration)
        for experiment in self.experiments:
            for arm in experiment.arms:
                unknown = sorted(set(arm.settings) - set(ARM_SETTINGS))
                require(not unknown, f"settings of arm {arm.name!r}",
                        f"among {ARM_SETTINGS}", unknown)
                require(all(0.0 <= v <= 1.0 for v in arm.settings.values()),
                        f"settings of arm {arm.name!r}", "in [0, 1]", arm.settings)
                require(not arm.route.recommender.routed or bool(
                    arm.route.recommender.name or self.recommender_model),
                        f"models['recommender'] of arm {arm.name!r}",
                        "a model name, as recommender_model is '' (no one-call model)",
                        arm.models.get("recommender"))
        Assigner(list(self.experiments), self.holdout)  # Validates layers and holdout.
        self._check_overlapping_routes()
        require(bool(self.model_server), "model_server", "a URL or host:port",
                self.model_server)
        require(_is_int(self.model_timeout_ms) and self.model_timeout_ms > 0,
                "model_timeout_ms", "an int > 0", self.model_timeout_ms)
        require(_is_int(self.store_timeout_ms) and self.store_timeout_ms > 0,
                "store_timeout_ms", "an int > 0", self.store_timeout_ms)
        require(_is_int(self.max_k) and 1 <= self.max_k <= MAX_K, "max_k",
                f"an int in [1, {MAX_K}] (the recommender's ceiling)", self.max_k)
        require(_is_int(self.default_k) and 1 <= self.default_k <= self.max_k, "default_k",
                f"an int in [1, max_k={self.max_k}]", self.default_k)
        require(self.max_in_flight is None
                or (_is_int(self.max_in_flight) and self.max_in_flight >= 1),
                "max_in_flight", "None (no limit) or an int >= 1", self.max_in_flight)
        require(_is_int(self.retry_after_s) and self.retry_after_s >= 1, "retry_after_s",
                "an int >= 1 (Retry-After takes whole seconds)", self.retry_after_s)
        require(self.keep_alive_s >= 1, "keep_alive_s", ">= 1 second", self.keep_alive_s)
        self.http_limits()  # Validates the sizes and timeouts.
        require(_is_number(self.profile_cache_s) and self.profile_cache_s >= 0,
                "profile_cache_s", ">= 0 seconds", self.profile_cache_s)
        require(self.status_refresh_s > 0, "status_refresh_s", "> 0", self.status_refresh_s)
        self._check_security()

    def _check_security(self) -> None:
        for name, kind in (("tokens", TokenSource), ("tls", ServerTls),
                           ("model_server_tls", ClientTls), ("model_server_token", TokenSource),
                           ("retrieval_server_token", TokenSource)):
            require(isinstance(getattr(self, name), kind), name, f"a {kind.__name__}",
                    getattr(self, name))
        for name in ("metrics_access", "docs_access"):
            require(getattr(self, name) in ACCESS, name, f"one of {ACCESS}", getattr(self, name))
            require(getattr(self, name) != "token" or self.tokens.enabled, name,
                    "'open' or 'closed' while `tokens` is empty (no token to check)",
                    getattr(self, name))
        require(not self.retrieval_server_token.enabled or bool(self.retrieval_server),
                "retrieval_server_token", "empty while retrieval_server is (model_server_token "
                "is sent to the one server)", self.retrieval_server_token)
        servers = [self.model_server] + ([self.retrieval_server] if self.retrieval_server
                                          else [])
        require(not self.model_server_tls.configured
                or any(server.startswith("https://") for server in servers),
                "model_server_tls", "empty unless a model server is reached over TLS: write "
                "its address https://host:port", self.model_server_tls)

    def role_models(self) -> dict[str, str]:
        """{role: the served model name this service calls for it}."""
        return {RETRIEVAL_ROLE: self.retrieval_model, RANKER_ROLE: self.ranker_model,
                RECOMMENDER_ROLE: self.recommender_model}

    def routed_targets(self) -> list[tuple[str, ModelTarget]]:
        """Every (role, target) an arm routes to, names filled in, each once."""
        models = self.role_models()
        targets = {(role, target.resolved(models[role]))
                   for experiment in self.experiments for arm in experiment.arms
                   for role, target in arm.route.routed().items()}
        return sorted(targets, key=lambda entry: (entry[0], str(entry[1])))

    def _arm_claims(self, experiment: Experiment) -> dict[str, set[str]]:
        """{role: the targets the experiment's arms route it to}; a popularity arm claims
        every role, as it replaces all the models."""
        models = self.role_models()
        claims: dict[str, set[str]] = {}
        for arm in experiment.arms:
            routed = ({role: "popularity" for role in MODEL_ROLES} if arm.policy == "popularity"
                      else {role: str(target.resolved(models[role]))
                            for role, target in arm.route.routed().items()})
            for role, target in routed.items():
                claims.setdefault(role, set()).add(target)
        return claims

    def _check_overlapping_routes(self) -> None:
        """Experiments in different layers share users, and a user gets one target per role:
        two of them routing a role differently would serve one of the two arms a model it
        does not name. Experiments in one layer never share a user."""
        claims = [(experiment, self._arm_claims(experiment)) for experiment in self.experiments]
        for index, (first, first_claims) in enumerate(claims):
            for second, second_claims in claims[index + 1:]:
                if first.layer == second.layer:
                    continue
                for role in MODEL_ROLES:
                    targets = first_claims.get(role, set()) | second_claims.get(role, set())
                    require(not (role in first_claims and role in second_claims)
                            or len(targets) == 1,
                            f"routes of role {role!r} in experiments {first.name!r} (layer "
                            f"{first.layer!r}) and {second.name!r} (layer {second.layer!r})",
                            "one target, as their users overlap: put both experiments in one "
                            "layer, or route the role the same way in both", sorted(targets))

    def http_limits(self) -> HttpLimits:
        """The connection limits of `serving.http` that `recs serve` and `ServiceServer` run
        the app with.

        Raises:
            ValueError: a size or timeout out of range.
        """
        return HttpLimits(header_timeout_s=self.header_timeout_s,
                          body_timeout_s=self.body_timeout_s, keep_alive_s=self.keep_alive_s,
                          max_header_bytes=self.max_header_bytes,
                          max_body_bytes=self.max_body_bytes)


def _is_number(value: object) -> bool:
    """True for ints and floats, not bools."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    """True for ints, not bools: `max_k=True` is a mistake, not 1."""
    return isinstance(value, int) and not isinstance(value, bool)
