"""The ScaNN and brute-force retrieval layers against a NumPy brute-force oracle, the tuner
that picks ScaNN's setting, and a catalogue with duplicate ids refused."""

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import IndexConfig
from recs.evaluation import exact_top_k, recall_against_exact
from recs.index import brute_force_layer, build_indexes, scann_layer, tune_scann


def _clustered(rng: np.random.Generator, count: int, dim: int = 16, clusters: int = 20
               ) -> np.ndarray:
    centers = rng.normal(size=(clusters, dim))
    points = centers[rng.integers(0, clusters, count)] + 0.3 * rng.normal(size=(count, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype("f4")


def test_scann_recall_against_numpy_brute_force_oracle():
    rng = np.random.default_rng(0)
    candidates = _clustered(rng, 3000)
    queries = rng.normal(size=(100, 16)).astype("f4")
    ids = np.array([f"t{i}" for i in range(3000)], dtype=object)
    oracle = ids[np.argsort(-queries @ candidates.T, axis=1)[:, :10]]
    # ScaNN trains its partitions from a random sample at each build, so recall varies from
    # build to build; re-ordering 100 candidates (10x k) keeps it well above the bound.
    layer = scann_layer(ids, candidates, IndexConfig(k=10, num_reordering_candidates=100))
    _, found = layer(tf.constant(queries), k=10)
    assert recall_against_exact(found.numpy(), oracle.astype(bytes)) >= 0.9
    _, exact = brute_force_layer(ids, candidates, 10)(tf.constant(queries), k=10)
    assert recall_against_exact(exact.numpy(), oracle.astype(bytes)) == 1.0


def test_tuner_picks_the_fastest_setting_that_reaches_the_target_and_it_holds_out():
    rng = np.random.default_rng(1)
    candidates = _clustered(rng, 5000)
    tuning, held_out = _clustered(rng, 200), _clustered(rng, 200)
    config = IndexConfig(k=20, min_recall=0.95, tuning_margin=0.02)
    chosen, trials = tune_scann(candidates, tuning, config, latency_queries=50)
    timed = [t for t in trials if t.ms_per_query is not None]

    def clears(trial) -> bool:  # The target, and the gate by four standard errors.
        return trial.recall >= 0.97 and trial.recall - 4 * trial.standard_error >= 0.95

    assert timed and all(clears(t) for t in timed)
    assert not any(clears(t) for t in trials if t not in timed)
    assert all(0.0 <= t.standard_error < 0.05 for t in trials)
    # Latencies within 10% of the fastest are ties; the most accurate of them is chosen.
    fastest = min(t.ms_per_query for t in timed)
    ties = [t for t in timed if t.ms_per_query <= 1.1 * fastest]
    best = max(ties, key=lambda t: (t.recall, -t.ms_per_query))
    assert (chosen.num_leaves, chosen.num_leaves_to_search,
            chosen.num_reordering_candidates) == (best.num_leaves, best.num_leaves_to_search,
                                                  best.num_reordering_candidates)
    assert not chosen.tune
    # The chosen setting, served through the TFRS layer, holds on queries it never saw.
    ids = np.array([f"t{i}" for i in range(5000)], dtype=object)
    _, found = scann_layer(ids, candidates, chosen)(tf.constant(held_out), k=20)
    oracle = ids[exact_top_k(candidates, held_out, 20)].astype(bytes)
    assert recall_against_exact(found.numpy(), oracle) >= 0.95


def test_tuner_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="same dimension; received 16 and 8"):
        tune_scann(np.zeros((10, 16), "f4"), np.zeros((2, 8), "f4"), IndexConfig(k=5))


def test_catalogue_with_duplicate_ids_is_rejected():
    catalogue = {F.TITLE_ID: np.array(["t1", "t1"], dtype=object)}
    with pytest.raises(ValueError, match="title_id values must be unique"):
        build_indexes(towers=None, catalogue=catalogue, queries={}, config=IndexConfig())
