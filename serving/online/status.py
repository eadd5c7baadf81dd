"""Which version of each model the model servers have, read off the request path.

`ModelStatus` keeps the served versions up to date (a background refresh) and tells the
policy when a new retrieval version appears, so that its catalogue snapshot (titles new in
that version) replaces the old one without a restart. It also reads which version each
version label the experiments route to points at: TF Serving's REST answers do not name the
version that computed them, and for a labelled call the newest version is not it.
"""

import threading
from typing import Callable, Mapping

from serving.clients.base import ModelServerError
from serving.online.experiments import ModelTarget
from serving.types import PredictClient


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
