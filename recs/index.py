"""Candidate indexes over the catalogue and the retrieval SavedModels that serve them.

Two indexes serve the same retrieval signature (raw query features in, top-k title ids and
scores out):

* ScaNN (`tfrs.layers.factorized_top_k.ScaNN`): fast approximate search. Its SavedModel uses
  ScaNN's custom ops, so it loads only where `import scann` has registered them, e.g. the
  project's model server; stock TF Serving cannot load it.
* Brute force (`tfrs.layers.factorized_top_k.BruteForce`): exact, standard ops only, loads in
  stock TF Serving.

An index is validated before it is pushed: its top-k on held-out queries must recall at least
`IndexConfig.min_recall` of the exact top-k.
"""

import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recs import features as F
from recs.config import IndexConfig
from recs.types import ArrayDict

SCANN_SAVE_OPTIONS = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
CATALOGUE_ASSET = "catalogue.jsonl"
"""Written to `assets.extra/` of each index SavedModel: the titles it indexes, id order kept."""


@dataclasses.dataclass(frozen=True)
class IndexReport:
    """What the validation gate measured."""

    num_candidates: int
    num_queries: int
    k: int
    recall_at_k: float
    scann_ms_per_query: float
    exact_ms_per_query: float
    blessed: bool
    config: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _batched(features: ArrayDict, size: int = 1024):
    count = len(next(iter(features.values())))
    for start in range(0, count, size):
        yield {key: tf.constant(value[start:start + size]) for key, value in features.items()}


def embed(function: tf.types.experimental.ConcreteFunction | tf.types.experimental.GenericFunction,
          features: ArrayDict) -> np.ndarray:
    """Runs an embedding signature over NumPy columns in batches.

    Returns:
        `[num_rows, dim]` float32 embeddings.
    """
    return np.concatenate([function(batch)["embedding"].numpy() for batch in _batched(features)])


def scann_layer(ids: np.ndarray, embeddings: np.ndarray, config: IndexConfig
                ) -> tfrs.layers.factorized_top_k.ScaNN:
    """Builds a ScaNN index over `[num_candidates, dim]` embeddings with the given ids."""
    resolved = config.resolved(len(ids))
    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=resolved.k, num_leaves=resolved.num_leaves,
        num_leaves_to_search=resolved.num_leaves_to_search,
        num_reordering_candidates=resolved.num_reordering_candidates,
        dimensions_per_block=2)
    return layer.index(tf.constant(embeddings), identifiers=tf.constant(ids))


def brute_force_layer(ids: np.ndarray, embeddings: np.ndarray, k: int
                      ) -> tfrs.layers.factorized_top_k.BruteForce:
    """Builds an exact index: one matmul and top-k per query batch."""
    layer = tfrs.layers.factorized_top_k.BruteForce(k=min(k, len(ids)))
    return layer.index(tf.constant(embeddings), identifiers=tf.constant(ids))


class IndexedRetrieval(tf.Module):
    """Raw query features -> query embedding -> top-k titles from an index.

    Args:
        towers: a loaded retrieval SavedModel (`recs.export.RetrievalExport`).
        index: a TFRS top-k layer already indexed with title ids.
        k: results per query.
    """

    def __init__(self, towers: tf.Module, index: tf.keras.layers.Layer, k: int) -> None:
        super().__init__()
        self.towers = towers
        self.index = index
        self._k = k
        self.recommend = tf.function(
            self._recommend, input_signature=[F.serving_input_signature(F.QUERY_FEATURES)])

    def _recommend(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        embedding = self.towers.query_embedding(features)["embedding"]
        scores, ids = self.index(embedding, k=self._k)
        return {"scores": scores, "title_ids": ids}

    def save(self, path: str, catalogue_lines: list[str], scann: bool) -> None:
        """Writes the SavedModel and its catalogue snapshot to `path`."""
        signature = self.recommend.get_concrete_function()
        tf.saved_model.save(self, path, signatures={"serving_default": signature},
                            options=SCANN_SAVE_OPTIONS if scann else None)
        extra = os.path.join(path, "assets.extra")
        tf.io.gfile.makedirs(extra)
        with tf.io.gfile.GFile(os.path.join(extra, CATALOGUE_ASSET), "w") as handle:
            handle.write("\n".join(catalogue_lines) + "\n")


def recall_against_exact(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / k.

    Args:
        approximate: `[num_queries, k]` ids from the index under test.
        exact: `[num_queries, k]` ids from brute force.
    """
    if approximate.shape != exact.shape:
        raise ValueError(f"approximate and exact ids must have the same shape; received "
                         f"{approximate.shape} and {exact.shape}.")
    hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approximate, exact)]
    return float(np.sum(hits) / exact.size)


def _ms_per_query(layer: tf.keras.layers.Layer, queries: np.ndarray, k: int
                  ) -> tuple[np.ndarray, float]:
    layer(tf.constant(queries[:1]), k=k)  # Warm up (traces the function).
    start = time.perf_counter()
    ids = [layer(tf.constant(query[None, :]), k=k)[1].numpy()[0] for query in queries]
    elapsed = time.perf_counter() - start
    # ScaNN returns fewer than k ids when the probed partitions hold fewer than k titles;
    # pad with an empty id, which never matches a real one.
    padded = np.full((len(ids), k), b"", dtype=object)
    for row, found in zip(padded, ids):
        row[:len(found)] = found
    return padded, 1000.0 * elapsed / len(queries)


def build_indexes(towers: tf.Module, catalogue: ArrayDict, queries: ArrayDict,
                  config: IndexConfig) -> tuple[IndexedRetrieval, IndexedRetrieval, IndexReport]:
    """Embeds the catalogue, builds ScaNN and brute-force retrieval, validates ScaNN.

    Args:
        towers: a loaded retrieval SavedModel with `query_embedding` and `candidate_embedding`.
        catalogue: raw candidate features, one row per title (`title_id` unique).
        queries: raw query features of held-out requests.
        config: index settings and the recall threshold.

    Returns:
        (scann retrieval, exact retrieval, report); `report.blessed` says whether ScaNN's
        recall@k reached `config.min_recall`.
    """
    ids = np.asarray(catalogue[F.TITLE_ID])
    if len(np.unique(ids)) != len(ids):
        raise ValueError("catalogue title_id values must be unique; deduplicate the catalogue.")
    resolved = config.resolved(len(ids))
    candidate_embeddings = embed(towers.candidate_embedding, catalogue)
    query_embeddings = embed(towers.query_embedding, queries)[:config.eval_queries]
    scann = scann_layer(ids, candidate_embeddings, resolved)
    exact = brute_force_layer(ids, candidate_embeddings, resolved.k)
    approximate_ids, scann_ms = _ms_per_query(scann, query_embeddings, resolved.k)
    exact_ids, exact_ms = _ms_per_query(exact, query_embeddings, resolved.k)
    recall = recall_against_exact(approximate_ids, exact_ids)
    report = IndexReport(num_candidates=len(ids), num_queries=len(query_embeddings),
                         k=resolved.k, recall_at_k=recall, scann_ms_per_query=scann_ms,
                         exact_ms_per_query=exact_ms, blessed=recall >= config.min_recall,
                         config=resolved.to_dict())
    return (IndexedRetrieval(towers, scann, resolved.k),
            IndexedRetrieval(towers, exact, resolved.k), report)


def catalogue_lines(catalogue: ArrayDict) -> list[str]:
    """Renders catalogue columns as JSON lines, row order kept."""
    keys = list(catalogue)
    rows = zip(*(catalogue[key] for key in keys))
    return [json.dumps({key: _plain(value) for key, value in zip(keys, row)}) for row in rows]


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
