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

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
from scann.scann_ops.py import scann_ops_pybind

from recs import features as F
from recs.config import IndexConfig
from recs.contract.models import ASSETS_EXTRA, CATALOGUE_ASSET, write_batching_params
from recs.contract.signatures import (EMBEDDING, QUERY_EMBEDDING_OUTPUT, SCORES, SERVING_DEFAULT,
                                      TITLE_IDS)
from recs.evaluation import exact_top_k, recall_against_exact
from recs.timing import latencies_ms, timed
from recs.export import write_warmup_requests
from recs.types import ArrayDict

SCANN_SAVE_OPTIONS = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])


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
    tuning: list[dict] = dataclasses.field(default_factory=list)
    rejected: list[dict] = dataclasses.field(default_factory=list)
    """Settings the validation half refused before `config`, each with its recall."""

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
    return np.concatenate([function(batch)[EMBEDDING].numpy() for batch in _batched(features)])


def scann_layer(ids: np.ndarray, embeddings: np.ndarray, config: IndexConfig
                ) -> tfrs.layers.factorized_top_k.ScaNN:
    """Builds a ScaNN index over `[num_candidates, dim]` embeddings with the given ids."""
    resolved = config.resolved(len(ids))
    layer = tfrs.layers.factorized_top_k.ScaNN(
        k=resolved.k, num_leaves=resolved.num_leaves,
        num_leaves_to_search=resolved.num_leaves_to_search,
        num_reordering_candidates=resolved.num_reordering_candidates,
        dimensions_per_block=resolved.dimensions_per_block)
    return layer.index(tf.constant(embeddings), identifiers=tf.constant(ids))


@dataclasses.dataclass(frozen=True)
class Trial:
    """One ScaNN setting the tuner measured."""

    num_leaves: int
    num_leaves_to_search: int
    num_reordering_candidates: int
    recall: float
    standard_error: float
    """Standard error of `recall`, the mean of per-query recalls."""
    ms_per_query: float | None
    """Median single-query latency; measured only for settings that reach the target."""


def _leaf_options(num_candidates: int) -> list[int]:
    root = num_candidates ** 0.5
    return sorted({max(1, min(num_candidates, round(root * f))) for f in (0.5, 1.0, 2.0)})


def _probe_options(num_leaves: int) -> list[int]:
    options, value = [], 1
    while value < num_leaves:
        options.append(value)
        value = max(value + 1, round(value * 1.5))
    return options + [num_leaves]


def tune_scann(candidates: np.ndarray, queries: np.ndarray, config: IndexConfig,
               latency_queries: int = 200) -> tuple[IndexConfig, list[Trial]]:
    """Finds the fastest ScaNN setting whose recall@k reaches `config.tuning_target`.

    A setting must also clear `config.min_recall` by four standard errors of its measured
    recall: on a few hundred queries the validation half's estimate differs from the tuning
    half's by about two, and a setting chosen at the edge would fail the gate half the time.

    Partitions are tried at 0.5x, 1x and 2x sqrt(catalogue size); for each partitioning and
    re-ordering depth (k, 2k, 4k, 8k) the probed partitions grow until the target recall is
    reached, and that setting's median single-query latency is measured. The search runs on
    ScaNN's own searcher with the same tree and asymmetric-hashing settings the TFRS layer uses.

    Args:
        candidates: `[num_candidates, dim]` float32 candidate embeddings.
        queries: `[num_queries, dim]` float32 query embeddings held out from validation.
        config: the index config; its k, dimensions_per_block and tuning target are used.
        latency_queries: queries timed per setting that reaches the target.

    Settings whose latencies are within 10% of the fastest count as equally fast; the most
    accurate of them is chosen.

    Returns:
        (the config with the chosen explicit settings and `tune=False`, every trial). When no
        setting reaches the target, the most accurate one is returned; the validation gate then
        decides.

    Raises:
        ValueError: `candidates` and `queries` differ in dimension.
    """
    if candidates.shape[1] != queries.shape[1]:
        raise ValueError(f"candidates and queries must have the same dimension; received "
                         f"{candidates.shape[1]} and {queries.shape[1]}.")
    candidates = np.ascontiguousarray(candidates, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    num = len(candidates)
    k = min(config.k, num)
    truth = exact_top_k(candidates, queries, k)
    depths = sorted({min(num, k * factor) for factor in (1, 2, 4, 8)})
    trials: list[Trial] = []
    for leaves in _leaf_options(num):
        searcher = (scann_ops_pybind.builder(candidates, k, "dot_product")
                    .tree(num_leaves=leaves, num_leaves_to_search=leaves,
                          training_iterations=12)
                    .score_ah(config.dimensions_per_block)
                    .reorder(depths[-1]).build())
        for depth in depths:
            for probes in _probe_options(leaves):
                found, distances = searcher.search_batched(queries, k, depth, probes)
                # Fewer than k neighbours come back padded with index 0 and a NaN distance;
                # the padding must not count as a hit.
                found = np.where(np.isnan(distances), -1, found)
                per_query = np.array([len(set(f) & set(t)) / k for f, t in zip(found, truth)])
                recall = float(per_query.mean())
                error = float(per_query.std() / np.sqrt(len(per_query)))
                reached = (recall >= config.tuning_target
                           and recall - 4.0 * error >= config.min_recall)
                latency = (latencies_ms(lambda q: searcher.search(q, k, depth, probes),
                                        list(queries[:latency_queries]))["median_ms"]
                           if reached else None)
                trials.append(Trial(leaves, probes, depth, recall, error, latency))
                if reached:
                    break
    timed = [trial for trial in trials if trial.ms_per_query is not None]
    if timed:
        # Latencies within 10% of the fastest are timer noise: the most accurate of them wins.
        fastest = min(trial.ms_per_query for trial in timed)
        best = max((t for t in timed if t.ms_per_query <= 1.1 * fastest),
                   key=lambda t: (t.recall, -t.ms_per_query))
    else:
        best = max(trials, key=lambda t: t.recall)
    chosen = dataclasses.replace(config, k=k, num_leaves=best.num_leaves,
                                 num_leaves_to_search=best.num_leaves_to_search,
                                 num_reordering_candidates=best.num_reordering_candidates,
                                 tune=False)
    return chosen, trials


def brute_force_layer(ids: np.ndarray, embeddings: np.ndarray, k: int
                      ) -> tfrs.layers.factorized_top_k.BruteForce:
    """Builds an exact index: one matmul and top-k per query batch."""
    layer = tfrs.layers.factorized_top_k.BruteForce(k=min(k, len(ids)))
    return layer.index(tf.constant(embeddings), identifiers=tf.constant(ids))


class IndexedRetrieval(tf.Module):
    """Raw query features -> query embedding -> top-k titles from an index.

    The `serving_default` signature returns `title_ids` and `scores` `[batch_size, k]`, best
    first, and the `query_embedding` `[batch_size, dim]` they were searched with.

    Args:
        towers: a loaded retrieval SavedModel (`recs.export.RetrievalExport`).
        index: a TFRS top-k layer already indexed with title ids.
        k: results per query.
        fallback: an exact index over the same titles, searched when `index` returns fewer
            than `k` results for a batch. ScaNN can: a lone query probing one partition has
            come back with none at all while the same query in a batch of two got its 20.
    """

    def __init__(self, towers: tf.Module, index: tf.keras.layers.Layer, k: int,
                 fallback: tf.keras.layers.Layer | None = None) -> None:
        super().__init__()
        self.towers = towers
        self.index = index
        self.fallback = fallback
        self._k = k
        self.recommend = tf.function(
            self._recommend, input_signature=[F.serving_input_signature(F.QUERY_FEATURES)])

    def _recommend(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        embedding = self.towers.query_embedding(features)[EMBEDDING]
        scores, ids = self.index(embedding, k=self._k)
        if self.fallback is not None:
            short = tf.logical_or(tf.shape(ids)[1] < self._k,
                                  tf.reduce_any(tf.math.is_nan(scores)))
            scores, ids = tf.cond(short, lambda: self.fallback(embedding, k=self._k),
                                  lambda: (scores, ids))
        # The query embedding lets the service score fresh titles the index does not hold yet.
        return {SCORES: scores, TITLE_IDS: ids, QUERY_EMBEDDING_OUTPUT: embedding}

    def save(self, path: str, catalogue_lines: list[str], scann: bool) -> None:
        """Writes the SavedModel and its catalogue snapshot to `path`."""
        signature = self.recommend.get_concrete_function()
        tf.saved_model.save(self, path, signatures={SERVING_DEFAULT: signature},
                            options=SCANN_SAVE_OPTIONS if scann else None)
        extra = os.path.join(path, ASSETS_EXTRA)
        tf.io.gfile.makedirs(extra)
        with tf.io.gfile.GFile(os.path.join(extra, CATALOGUE_ASSET), "w") as handle:
            handle.write("\n".join(catalogue_lines) + "\n")
        write_warmup_requests(path)
        write_batching_params(path)  # One row per query in and out.


def _ms_per_query(layer: tf.keras.layers.Layer, queries: np.ndarray, k: int
                  ) -> tuple[np.ndarray, float]:
    layer(tf.constant(queries[:1]), k=k)  # Warm up (traces the function).
    ids, elapsed = timed(lambda: [layer(tf.constant(query[None, :]), k=k)[1].numpy()[0]
                                  for query in queries])
    # ScaNN returns fewer than k ids when the probed partitions hold fewer than k titles;
    # pad with an empty id, which never matches a real one.
    padded = np.full((len(ids), k), b"", dtype=object)
    for row, found in zip(padded, ids):
        row[:len(found)] = found
    return padded, 1000.0 * elapsed / len(queries)


def validated_scann_layer(ids: np.ndarray, candidates: np.ndarray, queries: np.ndarray,
                          exact_ids: np.ndarray, chosen: IndexConfig, trials: list[Trial],
                          min_recall: float
                          ) -> tuple[tfrs.layers.factorized_top_k.ScaNN, IndexConfig, float,
                                     float, list[dict]]:
    """Builds the ScaNN layer that will be served and measures it, escalating when it falls
    short: ScaNN trains its partitions and codebooks afresh at every build, so a setting the
    tuner accepted can miss on the build that is served (seen on small, tightly clustered
    catalogues). Should `queries` refuse the chosen setting, the most accurate tuned one,
    then an exhaustive one (every partition probed, the deepest re-ordering), are built.

    Args:
        ids: `[num_candidates]` title ids.
        candidates: `[num_candidates, dim]` embeddings.
        queries: `[num_queries, dim]` held-out query embeddings (not the tuner's).
        exact_ids: `[num_queries, k]` brute-force ids of `queries`.
        chosen: the tuned (or configured) setting.
        trials: the tuner's trials (empty when not tuned).
        min_recall: the recall@k the served build must reach.

    Returns:
        (the layer, its resolved config, its recall@k on `queries`, its ms per query, the
        settings refused before it with their recall).
    """
    attempts = [chosen]
    if trials:
        accurate = max(trials, key=lambda t: (t.recall, -(t.ms_per_query or 0.0)))
        attempts += [dataclasses.replace(chosen, num_leaves=accurate.num_leaves,
                                         num_leaves_to_search=accurate.num_leaves_to_search,
                                         num_reordering_candidates=(
                                             accurate.num_reordering_candidates)),
                     dataclasses.replace(chosen, num_leaves_to_search=chosen.num_leaves,
                                         num_reordering_candidates=min(len(ids),
                                                                       8 * chosen.k))]
    rejected: list[dict] = []
    for attempt in attempts:
        resolved = attempt.resolved(len(ids))
        scann = scann_layer(ids, candidates, resolved)
        approximate_ids, scann_ms = _ms_per_query(scann, queries, resolved.k)
        recall = recall_against_exact(approximate_ids, exact_ids)
        if recall >= min_recall:
            break
        if attempt is not attempts[-1]:
            rejected.append({**resolved.to_dict(), "recall_at_k": recall})
    return scann, resolved, recall, scann_ms, rejected


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
    candidate_embeddings = embed(towers.candidate_embedding, catalogue)
    query_embeddings = embed(towers.query_embedding, queries)[:config.eval_queries]
    trials: list[Trial] = []
    chosen = config
    if config.tune and len(query_embeddings) >= 2:
        # Tune on one half of the held-out queries, validate on the other.
        half = len(query_embeddings) // 2
        chosen, trials = tune_scann(candidate_embeddings, query_embeddings[:half], config)
        query_embeddings = query_embeddings[half:]
    exact = brute_force_layer(ids, candidate_embeddings, min(config.k, len(ids)))
    exact_ids, exact_ms = _ms_per_query(exact, query_embeddings, min(config.k, len(ids)))
    scann, resolved, recall, scann_ms, rejected = validated_scann_layer(
        ids, candidate_embeddings, query_embeddings, exact_ids, chosen, trials,
        config.min_recall)
    report = IndexReport(num_candidates=len(ids), num_queries=len(query_embeddings),
                         k=resolved.k, recall_at_k=recall, scann_ms_per_query=scann_ms,
                         exact_ms_per_query=exact_ms, blessed=recall >= config.min_recall,
                         config=resolved.to_dict(),
                         tuning=[dataclasses.asdict(trial) for trial in trials],
                         rejected=rejected)
    return (IndexedRetrieval(towers, scann, resolved.k, fallback=exact),
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
