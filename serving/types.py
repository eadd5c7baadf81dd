"""The interfaces of serving/'s parts, declared once: what the recommender needs from a model
server (`PredictClient`), from the profile store (`ProfileStore`) and from a source of extra
candidates (`CandidateSource`), and the roles a model plays in one recommendation."""

from typing import Mapping, Protocol

import numpy as np

from recs.contract import features as F
from recs.types import JsonDict

Inputs = Mapping[str, np.ndarray | list]
"""A model call's inputs by name: arrays or lists of one batch."""

RETRIEVAL_ROLE = "retrieval"
RANKER_ROLE = "ranker"
RECOMMENDER_ROLE = "recommender"
MODEL_ROLES = (RETRIEVAL_ROLE, RANKER_ROLE, RECOMMENDER_ROLE)
"""The roles a served model plays in a recommendation: retrieval, ranking, or both in one
call; an A/B arm routes each role to a served name, version or label."""


class PredictClient(Protocol):
    """What the recommendation service needs from a model server. A call names the version
    by number (`version`), by TF Serving version label (`label`, e.g. "canary"), or neither
    for the newest; not both."""

    def predict(self, model: str, inputs: Inputs, signature: str = "",
                version: int | None = None, timeout: float | None = None, label: str = ""
                ) -> dict[str, np.ndarray]:
        ...

    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None,
                          label: str = "") -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs and the version that computed them (None when the protocol omits it)."""
        ...

    def available_versions(self, model: str, timeout: float | None = None, label: str = ""
                           ) -> list[int]:
        """AVAILABLE versions of `model`, ascending; with `label`, the one it points to."""
        ...


class ProfileStore(Protocol):
    """What the recommender and the event consumer need from the online profile store
    (`SqliteProfileStore` embedded, `RedisProfileStore` shared)."""

    def upsert_profiles(self, profiles: list[JsonDict]) -> None: ...

    def mark_finished(self, pairs: list[tuple[str, str]]) -> None: ...

    def record_plays(self, plays: list[tuple[str, str, int]]) -> None: ...

    def apply_event(self, event: JsonDict, duration_seconds: float) -> bool: ...

    def profile(self, user_id: str) -> JsonDict | None: ...

    def history(self, user_id: str, limit: int = F.MAX_WATCHED) -> list[str]: ...

    def finished(self, user_id: str) -> set[str]: ...

    def stats(self, user_id: str) -> dict[str, float]: ...

    def ping(self) -> None:
        """Raises `StoreUnavailableError` when the store cannot answer now."""
        ...

    def close(self) -> None: ...


class StoreUnavailableError(RuntimeError):
    """The profile store cannot answer now: its file was replaced, truncated or is not a
    database, another writer holds it past the caller's budget, or Redis is away. A later
    call may succeed (the store reopens itself); the service answers from its fallback."""


class CandidateSource(Protocol):
    """Titles searchable beside the served index (`serving.online.fresh.FreshTitles`: titles
    published since the last index build, and titles taken down)."""

    @property
    def taken_down(self) -> frozenset[str]: ...

    def row(self, title_id: str) -> JsonDict | None: ...

    def search(self, query_embedding: np.ndarray, k: int) -> list[tuple[str, float]]: ...

    def __len__(self) -> int: ...
