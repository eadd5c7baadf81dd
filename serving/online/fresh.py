"""Fresh titles: searchable the moment they are published, before the next index build.

ScaNN indexes cannot add or delete entries, and a rebuild waits for the next pipeline run. New
titles are embedded by the served candidate tower (from metadata and description alone, so an id
the tower never saw falls back to its out-of-vocabulary bucket) and kept in a small exact side
index; its dot products with the request's query embedding are merged with ScaNN's results by
score (`merge_top_k`). Titles taken down are filtered from both.
"""

import threading

import numpy as np

from recs.contract import features as F
from recs.contract.models import TOWERS
from recs.contract.signatures import CANDIDATE_EMBEDDING, EMBEDDING
from recs.types import JsonDict
from serving.types import PredictClient


class FreshTitles:
    """An exact side index of titles published after the last index build.

    Args:
        client: a model-server client; the towers model embeds new titles.
        towers_model: served name of the towers model (its `candidate_embedding` signature).
    """

    def __init__(self, client: PredictClient, towers_model: str = TOWERS) -> None:
        self.client = client
        self.towers_model = towers_model
        self._lock = threading.Lock()
        self._rows: dict[str, JsonDict] = {}
        self._embeddings: dict[str, np.ndarray] = {}
        self._taken_down: set[str] = set()

    def publish(self, rows: list[JsonDict]) -> None:
        """Embeds and adds titles; a title published again is re-embedded.

        Args:
            rows: catalogue rows with every candidate feature (`recs.features.CANDIDATE_FEATURES`).

        Raises:
            ValueError: a row lacks a candidate feature.
            serving.clients.ModelServerError: the towers model refused the rows.
        """
        if not rows:
            return
        for row in rows:
            missing = [key for key in F.CANDIDATE_FEATURES if key not in row]
            if missing:
                raise ValueError(f"title {row.get(F.TITLE_ID)!r} lacks candidate features "
                                 f"{missing}; a published title needs all of "
                                 f"{list(F.CANDIDATE_FEATURES)}.")
        columns = {key: [row[key] for row in rows] for key in F.CANDIDATE_FEATURES}
        embeddings = self.client.predict(self.towers_model, columns,
                                         signature=CANDIDATE_EMBEDDING)[EMBEDDING]
        with self._lock:
            for row, embedding in zip(rows, np.asarray(embeddings, dtype=np.float32)):
                title = str(row[F.TITLE_ID])
                self._rows[title] = dict(row)
                self._embeddings[title] = embedding
                self._taken_down.discard(title)

    def take_down(self, title_id: str) -> None:
        """Stops recommending a title, fresh or indexed, until it is published again."""
        with self._lock:
            self._taken_down.add(title_id)
            self._rows.pop(title_id, None)
            self._embeddings.pop(title_id, None)

    def forget_indexed(self, indexed: set[str]) -> None:
        """Drops fresh titles that a rebuilt index now holds."""
        with self._lock:
            for title in indexed & set(self._rows):
                del self._rows[title], self._embeddings[title]

    @property
    def taken_down(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._taken_down)

    def row(self, title_id: str) -> JsonDict | None:
        with self._lock:
            return self._rows.get(title_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def search(self, query_embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Exact top-k fresh titles for one `[dim]` query embedding, best first."""
        with self._lock:
            if not self._rows:
                return []
            titles = list(self._embeddings)
            matrix = np.stack([self._embeddings[title] for title in titles])
        scores = matrix @ np.asarray(query_embedding, dtype=np.float32)
        order = np.argsort(-scores)[:k]
        return [(titles[i], float(scores[i])) for i in order]


def merge_top_k(first: list[tuple[str, float]], second: list[tuple[str, float]], k: int,
                exclude: frozenset[str] | set[str] = frozenset()) -> list[tuple[str, float]]:
    """Merges two scored candidate lists by score, best first, without duplicates.

    Both lists must hold dot-product scores of the same query embedding (e.g. ScaNN's results
    and the exact side index of fresh titles), so their scores are comparable.

    Args:
        first: (title_id, score) pairs.
        second: (title_id, score) pairs.
        k: length of the merged list.
        exclude: title ids to leave out (e.g. titles taken down).

    Returns:
        At most k (title_id, score) pairs; a title in both lists keeps its higher score.
    """
    best: dict[str, float] = {}
    for title, score in [*first, *second]:
        if title not in exclude and score > best.get(title, -np.inf):
            best[title] = score
    return sorted(best.items(), key=lambda item: -item[1])[:k]
