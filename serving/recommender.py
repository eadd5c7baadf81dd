"""Retrieve, rank, filter: one recommendation list from the served models.

    profile store -> query features -> retrieval model (ScaNN top-k candidates)
                  -> merge fresh titles (exact side index) -> drop finished and taken-down
                  titles -> ranker (P(engaged)) -> top k by probability
"""

import dataclasses
import os

import numpy as np

from recs import features as F
from recs.data.catalogue import read_jsonl
from recs.index import CATALOGUE_ASSET, merge_top_k
from recs.types import JsonDict
from serving.client import PredictClient
from serving.fresh import FreshTitles
from serving.model_server import versions_on_disk
from serving.store import ProfileStore

MAX_K = 100


class UnknownUserError(ValueError):
    """The user id is not in the profile store."""


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One recommended title: the ranker's engagement probability and the retrieval score."""

    title_id: str
    score: float
    retrieval_score: float
    genre: str


def load_catalogue(serving_base_dir: str, retrieval_model: str) -> dict[str, JsonDict]:
    """Reads the catalogue snapshot stored with the newest version of the retrieval model.

    Raises:
        FileNotFoundError: no version of `retrieval_model` has been pushed.
    """
    versions = versions_on_disk(serving_base_dir, retrieval_model)
    if not versions:
        raise FileNotFoundError(f"no pushed version of {retrieval_model!r} under "
                                f"{serving_base_dir}; run the pipeline first.")
    path = os.path.join(serving_base_dir, retrieval_model, str(versions[-1]), "assets.extra",
                        CATALOGUE_ASSET)
    return {row[F.TITLE_ID]: row for row in read_jsonl(path)}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Recommender:
    """Builds recommendation lists from a model server, the profile store and the catalogue.

    Args:
        client: a REST or gRPC client of TF Serving's API.
        store: profiles and finished titles.
        catalogue: title_id -> catalogue row (the raw candidate features).
        retrieval_model: served name of the retrieval model.
        ranker_model: served name of the ranker.
        fresh: titles published since the index was built, and titles taken down.
    """

    def __init__(self, client: PredictClient, store: ProfileStore,
                 catalogue: dict[str, JsonDict], retrieval_model: str = "retrieval",
                 ranker_model: str = "ranker", fresh: FreshTitles | None = None) -> None:
        self.client = client
        self.store = store
        self.catalogue = catalogue
        self.retrieval_model = retrieval_model
        self.ranker_model = ranker_model
        self.fresh = fresh

    def _title_row(self, title: str) -> JsonDict | None:
        row = self.fresh.row(title) if self.fresh is not None else None
        return row if row is not None else self.catalogue.get(title)

    def _candidates(self, retrieved: dict[str, np.ndarray]) -> list[tuple[str, float]]:
        indexed = [(_text(title), float(score))
                   for title, score in zip(retrieved["title_ids"][0], retrieved["scores"][0])]
        if self.fresh is None:
            return indexed
        fresh = self.fresh.search(retrieved["query_embedding"][0], len(indexed))
        return merge_top_k(indexed, fresh, len(indexed), exclude=self.fresh.taken_down)

    def _query(self, user_id: str, device_type: str, hour: int) -> dict[str, list]:
        if not 0 <= hour < F.HOURS_PER_DAY:
            raise ValueError(f"hour must be between 0 and 23; received {hour}.")
        profile = self.store.profile(user_id)
        if profile is None:
            raise UnknownUserError(f"unknown user_id {user_id!r}: no profile in the store.")
        return {F.USER_ID: [user_id], F.AGE: [int(profile[F.AGE])],
                F.COUNTRY: [profile[F.COUNTRY]],
                F.SUBSCRIPTION_TIER: [profile[F.SUBSCRIPTION_TIER]],
                F.PREFERRED_GENRES: [profile[F.PREFERRED_GENRES]],
                F.HISTORY: ["|".join(self.store.history(user_id))],
                F.DEVICE_TYPE: [device_type], F.HOUR: [hour]}

    def retrieve(self, user_id: str, device_type: str = "tv", hour: int = 20
                 ) -> list[tuple[str, float]]:
        """Returns the retrieval stage's (title_id, score) candidates, best first.

        Indexed and fresh titles are merged by score; taken-down titles are left out. Finished
        titles are still in (the ranking stage drops them).

        Raises:
            ValueError: `hour` out of range.
            UnknownUserError: `user_id` has no profile.
        """
        return self._candidates(self.client.predict(self.retrieval_model,
                                                    self._query(user_id, device_type, hour)))

    def recommend(self, user_id: str, k: int = 10, device_type: str = "tv", hour: int = 20
                  ) -> list[Recommendation]:
        """Returns up to `k` unfinished titles for `user_id`, best first.

        Raises:
            ValueError: `k` or `hour` out of range.
            UnknownUserError: `user_id` has no profile.
        """
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}; received {k}.")
        query = self._query(user_id, device_type, hour)
        retrieved = self.client.predict(self.retrieval_model, query)
        finished = self.store.finished(user_id)
        candidates = [(title, score, self._title_row(title))
                      for title, score in self._candidates(retrieved) if title not in finished]
        candidates = [(title, score, row) for title, score, row in candidates if row is not None]
        if not candidates:
            return []
        rows = [row for _, _, row in candidates]
        batch = {key: np.repeat(values, len(rows)).tolist() for key, values in query.items()}
        for key in F.CANDIDATE_FEATURES:
            batch[key] = [row[key] for row in rows]
        probabilities = self.client.predict(self.ranker_model, batch)["probability"]
        ranked = sorted(zip(candidates, probabilities), key=lambda item: -item[1])
        return [Recommendation(title_id=title, score=float(probability),
                               retrieval_score=score, genre=str(row[F.GENRE]))
                for (title, score, row), probability in ranked[:k]]
