"""Online policy: what one recommendation request gets, between the HTTP handler and the
recommender.

    serving/api/service.py (HTTP: parse, validate, answer)
      -> OnlinePolicy.answer(Ask):
           the user's A/B arms (online/experiments.py): settings and model routes
           -> candidates: online/recommender.py (profile -> retrieve -> rank), or the
              popularity list for a popularity arm
           -> the list: online/list_policy.py (genre re-rank, exploration slots, top k)
           -> the popularity fallback when the model server fails or nothing is known of
              the user
           -> the served-list log
      model versions: online/status.py, refreshed off the request path
"""

import dataclasses
import json
import logging
import threading
import time
import uuid

import numpy as np

from recs.contract import served as served_record
from recs.contract.models import CATALOGUE_ASSET, asset_path, version_dir
from recs.types import JsonDict
from serving.clients.base import ModelServerError
from serving.config import ServiceConfig
from serving.online.experiments import Assigner, ModelTarget, Route
from serving.online.list_policy import ListSettings, choose
from serving.online.recommender import (Recommender, ServedList, UnknownUserError,
                                        load_catalogue_file)
from serving.online.status import FixedStatus, ModelStatus
from serving.online.store import is_redis_url
from serving.types import RANKER_ROLE, StoreUnavailableError

SERVED_LOGGER = logging.getLogger("recs.served")
_LOG = logging.getLogger("recs.service")
MODEL_SERVER_TIMEOUT = "model_server_timeout"
MODEL_SERVER_ERROR = "model_server_error"
_TAIL_POOL = 200
"""How many of the least popular titles an arm's `tail_share` slots draw from."""
STORE_UNAVAILABLE = "store_unavailable"
NO_PROFILE = "no_profile"
"""Why a list came from the popularity fallback: the model server timed out or failed, the
profile store could not answer (its file swapped or locked, Redis away), or nothing is known
of the user (no profile in the store or the request), so the models have nothing to go on. A new user with a profile is served by the models, whose cold-start prior
backs off to their segment's popular titles (`recs.models.cold_start`)."""


@dataclasses.dataclass(frozen=True)
class Ask:
    """One recommendation request, validated.

    Attributes:
        user_id: who asks.
        k: titles wanted.
        device_type / hour: the context; `hour` None means the current UTC hour.
        diversity: the caller's genre re-rank; an arm's setting overrides it.
        profile: profile fields of a user the store does not know yet (cold start).
    """

    user_id: str
    k: int
    device_type: str
    hour: int | None = None
    diversity: float = 0.0
    profile: JsonDict | None = None


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the policy served and why."""

    request_id: str
    served: ServedList
    fallback: str | None
    experiments: dict[str, str]
    """The user's arm in each running experiment."""
    policy: str = "models"
    """How the list was chosen: by the models, or ("popularity") from the popularity list
    for a user in a popularity arm, with no model call and `fallback` None."""
    settings: ListSettings = ListSettings()
    """The list policy's settings for this user: the request's, then each arm's."""


class OnlinePolicy:
    """Serves `Ask`s with a recommender under the service's config.

    Args:
        recommender: retrieve, rank, filter.
        config: experiments, exploration, the model budget, the served-list log, where the
            catalogue snapshots are (`serving_dir`).
        status: model versions; by default one refreshed from the recommender's clients,
            reloading the catalogue when the retrieval model gets a new version.
    """

    def __init__(self, recommender: Recommender, config: ServiceConfig,
                 status: ModelStatus | FixedStatus | None = None) -> None:
        self.recommender = recommender
        self.config = config
        self.assigner = Assigner(list(config.experiments), config.holdout)
        self._log_lock = threading.Lock()
        self._store_down = False
        self.status = status or self._model_status()

    def _model_status(self) -> ModelStatus:
        """A status refreshed from the model servers this recommender calls, for the
        service's models and for the models and labels its experiments route to."""
        config, recommender = self.config, self.recommender
        clients = {config.retrieval_model: recommender.retrieval_client,
                   config.ranker_model: recommender.client}
        if config.recommender_model:
            clients[config.recommender_model] = recommender.retrieval_client
        optional = {config.recommender_model}
        labels: dict[str, set[str]] = {}
        for role, target in config.routed_targets():
            if target.name not in clients:
                # The ranker's server is `client`'s; the others are asked where retrieval is.
                clients[target.name] = (recommender.client if role == RANKER_ROLE
                                        else recommender.retrieval_client)
                optional.add(target.name)  # Only an arm's users need it.
            if target.label:
                labels.setdefault(target.name, set()).add(target.label)
        return ModelStatus(clients, config.status_refresh_s, config.model_timeout_ms / 1000.0,
                           self._new_version, optional=tuple(sorted(optional)),
                           labels={model: tuple(sorted(names))
                                   for model, names in labels.items()})

    def _new_version(self, model: str, version: int) -> None:
        """A new retrieval version may index titles the served catalogue lacks: read its
        snapshot (when the service can see the serving directory)."""
        if model != self.config.retrieval_model or not self.config.serving_dir:
            return
        path = asset_path(version_dir(self.config.serving_dir, model, version),
                          CATALOGUE_ASSET)
        try:
            catalogue = load_catalogue_file(path)
        except (OSError, ValueError) as error:
            _LOG.warning("kept the catalogue: %s version %d has no readable snapshot at %s "
                         "(%s)", model, version, path, error)
            return
        if set(catalogue) != set(self.recommender.catalogue):
            self.recommender.replace_catalogue(catalogue)
            _LOG.info("catalogue of %s version %d: %d titles", model, version, len(catalogue))

    def answer(self, ask: Ask) -> Answer:
        """The list for `ask`: from the models (routed by the user's arms), from the
        popularity list for a user in a popularity arm, or from the popularity fallback when
        the model server fails, the budget runs out, the profile store cannot answer or the
        user has no profile at all.

        The user's arms (one per layer at most) are combined: settings in layer order, and
        the routes of all of them, which `ServiceConfig` guarantees never disagree.
        """
        request_id = uuid.uuid4().hex
        arms = self.assigner.arms(ask.user_id)
        options = {"diversity": ask.diversity, "exploration": self.config.exploration}
        route, policy = Route(), "models"
        for arm in arms.values():
            options.update(arm.settings)
            route = route.merged(arm.route)
            if arm.policy == "popularity":
                policy = arm.policy
        settings = ListSettings(**options)
        hour = ask.hour if ask.hour is not None else time.gmtime().tm_hour
        fallback = None
        if policy == "popularity":
            served = self.recommender.popular(ask.user_id, ask.k)
        else:
            try:
                ranked = self.recommender.ranked(
                    ask.user_id, device_type=ask.device_type, hour=hour,
                    timeout=self.config.model_timeout_ms / 1000.0, profile=ask.profile,
                    route=route, limit=settings.candidates_needed(ask.k))
            except ModelServerError as error:
                fallback = (MODEL_SERVER_TIMEOUT if error.status == "DEADLINE_EXCEEDED"
                            else MODEL_SERVER_ERROR)
                served = self.recommender.popular(ask.user_id, ask.k)
            except UnknownUserError:
                fallback = NO_PROFILE
                served = self.recommender.popular(ask.user_id, ask.k)
            except StoreUnavailableError as error:
                fallback = STORE_UNAVAILABLE
                # The store is not asked again for the user's finished titles: one wait
                # for it per request at most.
                served = self.recommender.popular(ask.user_id, ask.k, exclude_finished=False)
                self._store_state(error)
            else:
                tail = (self.recommender.least_popular(ask.user_id, _TAIL_POOL)
                        if settings.tail_share > 0 else [])
                # Seeded by the request id, so a logged list can be replayed exactly; made
                # only for a list that draws.
                rng = (np.random.default_rng(int(request_id[:16], 16)) if settings.draws
                       else None)
                served = dataclasses.replace(ranked, items=choose(
                    ranked.items, ask.k, settings, rng, tail))
                self._fill_versions(served)
        if fallback != STORE_UNAVAILABLE:
            self._store_state(None)
        answer = Answer(request_id, served, fallback,
                        {name: arm.name for name, arm in arms.items()}, policy, settings)
        self._log(answer, ask, hour)
        return answer

    def _store_state(self, error: StoreUnavailableError | None) -> None:
        """Logs the store going away and coming back, once each, not once per request."""
        if error is not None and not self._store_down:
            _LOG.warning("profile store unavailable, answering from popularity: %s", error)
        elif error is None and self._store_down:
            _LOG.warning("profile store answering again")
        self._store_down = error is not None

    def unready(self) -> str | None:
        """Why the service should not take traffic now, or None when it is ready: a required
        model has no AVAILABLE version, or this replica's own SQLite store cannot answer. A
        shared store (Redis) being away leaves it ready: every replica would go unready at
        once and nobody would get even the popularity fallback (`store_health` says it)."""
        if not self.status.ready():
            return f"model server has no AVAILABLE version of {self.status.missing()}"
        health = self.store_health()
        if health is not None and not is_redis_url(self.config.store):
            return health
        return None

    def store_health(self) -> str | None:
        """Why the profile store cannot answer now, or None when it answers."""
        try:
            self.recommender.store.ping()
        except StoreUnavailableError as error:
            return str(error)
        return None

    def _fill_versions(self, served: ServedList) -> None:
        """REST answers do not name the version: the status tells the one each call reached
        (the version its label pointed to at the last refresh, or the newest)."""
        called = {target.name: target for target in served.routes.values()}
        served.versions.update({
            model: self.status.version_of(called.get(model, ModelTarget(model)))
            for model, version in served.versions.items() if version is None})

    def _log(self, answer: Answer, ask: Ask, hour: int) -> None:
        if not self.config.served_log and not SERVED_LOGGER.isEnabledFor(logging.INFO):
            return  # Nobody reads the line: not built on the request path.
        S = served_record
        row = {S.TS: time.time(), S.REQUEST_ID: answer.request_id, S.USER_ID: ask.user_id,
               S.DEVICE_TYPE: ask.device_type, S.HOUR: hour, S.K: ask.k,
               S.FALLBACK: answer.fallback, S.POLICY: answer.policy,
               S.MODEL_VERSIONS: dict(answer.served.versions),
               S.ROUTES: {role: str(target) for role, target in answer.served.routes.items()},
               S.EXPERIMENTS: dict(answer.experiments),
               S.ITEMS: [{S.TITLE_ID: item.title_id, S.SCORE: item.score, S.POSITION: position,
                          S.PROPENSITY: item.propensity, S.EXPLORED: item.explored}
                         for position, item in enumerate(answer.served.items)]}
        # Not validated here (a per-request cost on the hot path): the readers parse each line
        # with the contract's rules and dead-letter what breaks them.
        line = json.dumps(row)
        SERVED_LOGGER.info(line)
        if self.config.served_log:
            with self._log_lock, open(self.config.served_log, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def close(self) -> None:
        self.status.close()
