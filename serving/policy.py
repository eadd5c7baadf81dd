"""Online policy: what one recommendation request gets, between the HTTP handler and the
recommender.

    serving/service.py (HTTP: parse, validate, answer)
      -> OnlinePolicy.answer(Ask): the user's A/B arms and their settings, exploration, the
         model budget, the popularity fallback when the model server fails, the served-list log
        -> serving/recommender.py (profile -> retrieve -> rank -> filter)
          -> serving/client.py (TF Serving's REST or gRPC API)

`ModelStatus` keeps the served versions up to date off the request path (a background
refresh), and tells the policy when a new retrieval version appears, so that its catalogue
snapshot (titles new in that version) replaces the old one without a restart. It also reads
which version each version label the experiments route to points at: TF Serving's REST
answers do not name the version that computed them, and for a labelled call the newest
version is not it.
"""

import dataclasses
import json
import logging
import threading
import time
import uuid
from typing import Callable, Mapping

import numpy as np

from recs.contract.models import CATALOGUE_ASSET, asset_path, version_dir
from recs.types import JsonDict
from serving.client import ModelServerError, PredictClient
from serving.config import ServiceConfig
from serving.experiments import Assigner, ModelTarget, Route
from serving.recommender import (Recommender, ServedList, UnknownUserError,
                                 load_catalogue_file)

SERVED_LOGGER = logging.getLogger("recs.served")
_LOG = logging.getLogger("recs.service")
MODEL_SERVER_TIMEOUT = "model_server_timeout"
MODEL_SERVER_ERROR = "model_server_error"
NO_PROFILE = "no_profile"
"""Why a list came from the popularity fallback: the model server timed out or failed, or
nothing is known of the user (no profile in the store or the request), so the models have
nothing to go on. A new user with a profile is served by the models, whose cold-start prior
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


class _Status:
    """Reads of the newest AVAILABLE version per model, kept in `_versions`, and of the
    version each (model, label) points to, in `_labelled`; models in `_optional` (the one-call
    recommender, which the service can do without, and models only arms route to) never make
    the service unready."""

    _versions: dict[str, int | None]
    _labelled: dict[tuple[str, str], int | None]
    _optional: frozenset[str] = frozenset()

    def versions(self) -> dict[str, int | None]:
        return dict(self._versions)

    def version_of(self, target: ModelTarget) -> int | None:
        """The version a call to `target` (name filled in) reaches: its pinned number, the
        version its label points to, or the newest AVAILABLE one; None when not known."""
        if target.version is not None:
            return target.version
        if target.label:
            return self._labelled.get((target.name, target.label))
        return self._versions.get(target.name)

    def missing(self) -> list[str]:
        """Required models with no AVAILABLE version: the service is not ready while any
        is."""
        return sorted(model for model, version in self._versions.items()
                      if version is None and model not in self._optional)

    def ready(self) -> bool:
        return not self.missing()


class ModelStatus(_Status):
    """The newest AVAILABLE version of each model on the model server, refreshed every
    `refresh_s` seconds on a daemon thread, so that requests and readiness probes read a
    value and never wait for the model server.

    Args:
        clients: model name -> the client of the server that serves it.
        refresh_s: seconds between refreshes.
        timeout_s: budget of each status call.
        on_change: called with (model, version) when a model's newest version changes.
        optional: models whose absence leaves the service ready.
        labels: model -> version labels whose versions to read too (those the experiments
            route to); each model must be in `clients`.
    """

    def __init__(self, clients: dict[str, PredictClient], refresh_s: float,
                 timeout_s: float = 1.0,
                 on_change: Callable[[str, int], None] | None = None,
                 optional: tuple[str, ...] = (),
                 labels: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._clients = clients
        self._optional = frozenset(optional)
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._on_change = on_change
        self._versions: dict[str, int | None] = {model: None for model in clients}
        self._labelled: dict[tuple[str, str], int | None] = {
            (model, label): None for model, names in (labels or {}).items() for label in names}
        self._stop = threading.Event()
        self.refresh()  # Once at start-up, so the first request already has versions.
        self._thread = threading.Thread(target=self._poll, name="model-status", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        """Asks the model server once (a failed call reads as no AVAILABLE version)."""
        for model, client in self._clients.items():
            try:
                available = client.available_versions(model, self._timeout_s)
            except ModelServerError:
                available = []
            newest = max(available) if available else None
            changed = newest is not None and newest != self._versions[model]
            self._versions = {**self._versions, model: newest}  # Readers see whole dicts.
            if changed and self._on_change is not None:
                self._on_change(model, newest)
        for model, label in self._labelled:
            try:
                # REST: GET /v1/models/{model}/labels/{label}; gRPC: GetModelStatus with
                # model_spec.version_label. Either answers the one version it points to.
                pointed = self._clients[model].available_versions(model, self._timeout_s,
                                                                  label=label)
            except ModelServerError:
                pointed = []
            self._labelled = {**self._labelled, (model, label): max(pointed, default=None)}

    def _poll(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
        calls = len(self._clients) + len(self._labelled)
        self._thread.join(timeout=self._refresh_s + self._timeout_s * calls + 1)


class FixedStatus(_Status):
    """Model status that never asks a model server: for the OpenAPI document and for tests
    that stand in for the recommender.

    Args:
        versions: model -> newest AVAILABLE version.
        labelled: (model, label) -> the version the label points to.
    """

    def __init__(self, versions: dict[str, int | None],
                 labelled: dict[tuple[str, str], int | None] | None = None) -> None:
        self._versions = dict(versions)
        self._labelled = dict(labelled or {})

    def close(self) -> None:
        """Nothing runs in the background."""


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
                clients[target.name] = (recommender.client if role == "ranker"
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
        the model server fails, the budget runs out or the user has no profile at all.

        The user's arms (one per layer at most) are combined: settings in layer order, and
        the routes of all of them, which `ServiceConfig` guarantees never disagree.
        """
        request_id = uuid.uuid4().hex
        arms = self.assigner.arms(ask.user_id)
        settings = {"diversity": ask.diversity, "exploration": self.config.exploration}
        route, policy = Route(), "models"
        for arm in arms.values():
            settings.update(arm.settings)
            route = route.merged(arm.route)
            if arm.policy == "popularity":
                policy = arm.policy
        hour = ask.hour if ask.hour is not None else time.gmtime().tm_hour
        fallback = None
        if policy == "popularity":
            served = self.recommender.popular(ask.user_id, ask.k)
        else:
            try:
                served = self.recommender.recommend_detailed(
                    ask.user_id, k=ask.k, device_type=ask.device_type, hour=hour,
                    diversity=settings["diversity"],
                    timeout=self.config.model_timeout_ms / 1000.0,
                    exploration=settings["exploration"], profile=ask.profile,
                    # Seeded by the request id, so a logged list can be replayed exactly.
                    rng=np.random.default_rng(int(request_id[:16], 16)), route=route)
            except ModelServerError as error:
                fallback = (MODEL_SERVER_TIMEOUT if error.status == "DEADLINE_EXCEEDED"
                            else MODEL_SERVER_ERROR)
                served = self.recommender.popular(ask.user_id, ask.k)
            except UnknownUserError:
                fallback = NO_PROFILE
                served = self.recommender.popular(ask.user_id, ask.k)
            if fallback is None:
                self._fill_versions(served)
        answer = Answer(request_id, served, fallback,
                        {name: arm.name for name, arm in arms.items()}, policy)
        self._log(answer, ask, hour)
        return answer

    def _fill_versions(self, served: ServedList) -> None:
        """REST answers do not name the version: the status tells the one each call reached
        (the version its label pointed to at the last refresh, or the newest)."""
        called = {target.name: target for target in served.routes.values()}
        served.versions.update({
            model: self.status.version_of(called.get(model, ModelTarget(model)))
            for model, version in served.versions.items() if version is None})

    def _log(self, answer: Answer, ask: Ask, hour: int) -> None:
        line = json.dumps({
            "ts": time.time(), "request_id": answer.request_id, "user_id": ask.user_id,
            "device_type": ask.device_type, "hour": hour, "k": ask.k,
            "fallback": answer.fallback, "policy": answer.policy,
            "model_versions": answer.served.versions,
            "routes": {role: str(target) for role, target in answer.served.routes.items()},
            "experiments": answer.experiments,
            "items": [{"title_id": item.title_id, "score": item.score, "position": position,
                       "propensity": item.propensity, "explored": item.explored}
                      for position, item in enumerate(answer.served.items)]})
        SERVED_LOGGER.info(line)
        if self.config.served_log:
            with self._log_lock, open(self.config.served_log, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def close(self) -> None:
        self.status.close()
