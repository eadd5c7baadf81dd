"""The version manager: which versions of each model are loaded, polling the base directory
for new ones, version labels, and the status TF Serving reports for each version."""

import logging
import os
import threading

import grpc
import tensorflow as tf

from recs.contract.models import not_versions, versions_on_disk
from recs.contract.protos import signature_defs
from recs.export import load_saved_model
from serving.model_server.batching import read_params
from serving.model_server.errors import CODE_BY_NUMBER, ServingError, invalid_argument
from serving.model_server.servable import LoadedModel, VersionStatus
from serving.model_server.signatures import warm_up

_LOG = logging.getLogger("recs.model_server")

def _load_failure(error: Exception) -> ServingError:
    """A load error as the status TF Serving would report: TensorFlow's and our own errors
    keep their code; anything else is UNKNOWN, named by its class."""
    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.OpError):
        return ServingError(CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN),
                            error.message)
    return ServingError(grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}")


class ModelRegistry:
    """Serves the versions of each named model under a TF Serving base directory.

    Like TF Serving's `latest` version policy, the newest `num_versions` versions on disk are
    loaded, plus any version a label points to. `refresh()` (or the poller) loads new versions,
    replays their warmup requests, and only then makes them visible and unloads the versions
    the policy no longer keeps; requests already running on an unloaded version finish on it.
    A version that fails to load is retried at each refresh, logged once per distinct error,
    and reported by `status` until it loads or the policy no longer wants it.

    Args:
        base_dir: holds `<model_name>/<version>/saved_model.pb`.
        model_names: the models to serve.
        num_versions: versions kept per model.
        labels: {model: {label: version}}, e.g. {"ranker": {"stable": 1, "canary": 2}}.
    """

    def __init__(self, base_dir: str, model_names: tuple[str, ...], num_versions: int = 1,
                 labels: dict[str, dict[str, int]] | None = None, batching: bool = False
                 ) -> None:
        if num_versions < 1:
            raise ValueError(f"num_versions must be >= 1; received {num_versions}.")
        self.batching = batching
        self.base_dir = base_dir
        self.model_names = tuple(model_names)
        self.num_versions = num_versions
        self.labels = {name: dict(value) for name, value in (labels or {}).items()}
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._failures: dict[tuple[str, int], ServingError] = {}
        self._not_versions: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def load_errors(self) -> dict[str, str]:
        """`<model>/<version>` -> why it failed to load; retried at the next refresh."""
        with self._lock:
            return {f"{name}/{version}": failure.message
                    for (name, version), failure in self._failures.items()}

    def _wanted(self, name: str, on_disk: list[int]) -> list[int]:
        labelled = set(self.labels.get(name, {}).values()) & set(on_disk)
        return sorted(set(on_disk[-self.num_versions:]) | labelled)

    def _load_version(self, name: str, version: int) -> LoadedModel:
        path = os.path.join(self.base_dir, name, str(version))
        model = LoadedModel(name=name, version=version, path=path,
                            saved_model=load_saved_model(path),
                            signature_defs=signature_defs(path),
                            batching=read_params(path) if self.batching else None)
        warm_up(model)
        return model

    def _record_failure(self, name: str, version: int, error: Exception) -> None:
        failure = _load_failure(error)
        with self._lock:
            previous = self._failures.get((name, version))
            self._failures[(name, version)] = failure
        if previous is None or previous.message != failure.message:
            # Once per distinct error: the poller retries every few seconds.
            _LOG.error("model %s version %d failed to load (%s): %s", name, version,
                       failure.code.name, failure.message)

    @property
    def not_versions(self) -> dict[str, list[str]]:
        """{model: entries of its directory skipped because their names are not versions}
        at the last refresh (`recs serve-models` and the model server's log show them)."""
        with self._lock:
            return {name: sorted(entries) for name, entries in self._not_versions.items()
                    if entries}

    def _note_not_versions(self, name: str, entries: list[str]) -> None:
        with self._lock:
            new = sorted(set(entries) - self._not_versions.get(name, set()))
            self._not_versions[name] = set(entries)
        if new:
            # Once per folder: the poller looks again every few seconds.
            _LOG.warning("model %s: skipped %s under %s: not version numbers (ASCII digits "
                         "of an integer up to 2^63 - 1)", name,
                         ", ".join(repr(entry) for entry in new[:10]),
                         os.path.join(self.base_dir, name))

    def refresh(self) -> dict[str, list[int]]:
        """Brings the loaded versions in line with the disk and the policy.

        Returns:
            {model: versions now loaded}.
        """
        import scann  # noqa: F401  (registers ScaNN's ops so the ScaNN retrieval model loads)

        loaded = {}
        for name in self.model_names:
            self._note_not_versions(name, not_versions(self.base_dir, name))
            wanted = self._wanted(name, versions_on_disk(self.base_dir, name))
            with self._lock:
                current = dict(self._models.get(name, {}))
            for version in wanted:
                if version in current:
                    continue
                try:
                    current[version] = self._load_version(name, version)
                except Exception as error:  # noqa: BLE001
                    # One broken version must not stop the others (nor the poller). Often it
                    # is still being copied in; the next refresh retries it.
                    self._record_failure(name, version, error)
            keep = {v: m for v, m in current.items() if v in wanted}
            if not keep and current:
                keep = current  # Never unload the last servable version for a broken one.
            with self._lock:
                dropped = [m for v, m in self._models.get(name, {}).items() if v not in keep]
                self._models[name] = keep
                for key in [key for key in self._failures if key[0] == name]:
                    if key[1] in keep or key[1] not in wanted:
                        del self._failures[key]
            for model in dropped:
                model.close()  # Its queued batches still run.
            loaded[name] = sorted(keep)
        return loaded

    def close(self) -> None:
        """Stops polling and every batch thread."""
        self.stop_polling()
        with self._lock:
            models = [m for versions in self._models.values() for m in versions.values()]
        for model in models:
            model.close()

    def load(self) -> None:
        """Loads (and warms up) the versions the policy keeps, once.

        Raises:
            FileNotFoundError: a model has no version directory with a saved_model.pb.
        """
        for name, versions in self.refresh().items():
            if not versions:
                raise FileNotFoundError(
                    f"No servable version of model {name!r} under {self.base_dir}/{name}; "
                    f"expected <version>/saved_model.pb. Run the pipeline to push one. "
                    f"Load errors: {self.load_errors or 'none'}")

    def start_polling(self, seconds: float, niceness: int = 0) -> None:
        """Refreshes every `seconds` on a daemon thread until `stop_polling`.

        Args:
            seconds: the polling period.
            niceness: added to the thread's OS scheduling niceness (Linux schedules threads
                apart), so that loading a new version yields the cores to the requests being
                served. Off by default: at +10 it did not lower the swap's p99 on the serving
                benchmark (warmup runs on TensorFlow's own thread pools, at normal priority),
                and on saturated cores it starved the load for over a minute.
        """
        def poll() -> None:
            if niceness and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
                try:
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                                   min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))
                except OSError:  # Not permitted here: load at the normal priority.
                    pass
            while not self._stop.wait(seconds):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001  (e.g. the base directory unreadable for a while)
                    _LOG.exception("refreshing the models under %s failed; retrying in %g s",
                                   self.base_dir, seconds)

        self._stop.clear()
        self._poller = threading.Thread(target=poll, name="model-poller", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()

    def versions(self, name: str) -> list[int]:
        """Loaded versions of `name`, ascending.

        Raises:
            ServingError: NOT_FOUND for a model this registry does not serve.
        """
        with self._lock:
            models = self._models.get(name)
        if not models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        return sorted(models)

    def _label_version(self, name: str, label: str) -> int:
        if label not in self.labels.get(name, {}):
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return self.labels[name][label]

    def get(self, name: str, version: int | None = None, label: str = "") -> LoadedModel:
        """The requested version: a number, a label, or the newest loaded one.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version, INVALID_ARGUMENT for an
                unknown label.
        """
        with self._lock:
            models = dict(self._models.get(name, {}))
        if not models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        if label:
            version = self._label_version(name, label)
        if version is None:
            return models[max(models)]
        if version not in models:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return models[version]

    def status(self, name: str, version: int | None = None, label: str = ""
               ) -> list[VersionStatus]:
        """GetModelStatus: each loaded version AVAILABLE, each failed one END with its error,
        ascending; only the requested version when one is named (by number or label).

        Raises:
            ServingError: NOT_FOUND when there is no such model or version, INVALID_ARGUMENT
                for an unknown label.
        """
        if label:
            version = self._label_version(name, label)
        with self._lock:
            statuses = [VersionStatus(v, "AVAILABLE") for v in self._models.get(name, {})]
            statuses += [VersionStatus(v, "END", failure.code, failure.message)
                         for (model, v), failure in self._failures.items() if model == name]
        if version is not None:
            statuses = [status for status in statuses if status.version == version]
            if not statuses:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
        if not statuses:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        return sorted(statuses, key=lambda status: status.version)
