"""Exported SavedModels (raw features in) and the ScaNN / brute-force retrieval models."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import IndexConfig
from recs.evaluation import exact_top_k, recall_against_exact
from recs.index import IndexedRetrieval, brute_force_layer, embed, scann_layer, tune_scann


def _clustered(rng: np.random.Generator, count: int, dim: int = 16, clusters: int = 20
               ) -> np.ndarray:
    centers = rng.normal(size=(clusters, dim))
    points = centers[rng.integers(0, clusters, count)] + 0.3 * rng.normal(size=(count, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype("f4")


def _query_batch(records: list[dict], n: int) -> dict[str, tf.Tensor]:
    return {key: tf.constant([r[key] for r in records[:n]], dtype=F.RAW_FEATURE_DTYPES[key])
            for key in F.QUERY_FEATURES}


def test_towers_signatures_take_the_raw_query_and_candidate_features(tiny_world):
    towers = tf.saved_model.load(str(tiny_world.serving_dir / "towers" / "1"))
    for name, keys in (("query_embedding", F.QUERY_FEATURES),
                       ("candidate_embedding", F.CANDIDATE_FEATURES)):
        inputs = towers.signatures[name].structured_input_signature[1]
        assert {k: v.dtype for k, v in inputs.items()} == {
            k: F.RAW_FEATURE_DTYPES[k] for k in keys}
        assert all(spec.shape.as_list() == [None] for spec in inputs.values())
    out = towers.signatures["serving_default"](**_query_batch(tiny_world.records, 3))
    candidates = towers.signatures["candidate_embedding"](**{
        key: tf.constant([r[key] for r in tiny_world.records[:2]], F.RAW_FEATURE_DTYPES[key])
        for key in F.CANDIDATE_FEATURES})
    # One dot product: the query and candidate embeddings are as wide, at least the towers'
    # 16 (wider when the Trainer attached the item-to-item part or the cold-start prior).
    width = candidates["embedding"].shape[1]
    assert candidates["embedding"].shape == (2, width) and width >= 16
    assert out["embedding"].shape == (3, width)


def test_ranker_signatures_take_raw_features_or_tf_examples(tiny_world):
    ranker = tf.saved_model.load(str(tiny_world.serving_dir / "ranker" / "1"))
    raw = ranker.signatures["serving_default"].structured_input_signature[1]
    assert set(raw) == set(F.RANKER_FEATURES)
    records = tiny_world.records[:4]
    from recs.features import to_example

    serialized = tf.constant([to_example(r) for r in records])
    by_example = ranker.signatures["serving_tf_example"](examples=serialized)["probability"]
    by_features = ranker.signatures["serving_default"](**{
        key: tf.constant([r[key] for r in records], dtype=F.RAW_FEATURE_DTYPES[key])
        for key in F.RANKER_FEATURES})["probability"]
    np.testing.assert_allclose(by_example.numpy(), by_features.numpy(), rtol=1e-5)
    assert ((by_features.numpy() > 0) & (by_features.numpy() < 1)).all()


def test_exported_query_embedding_is_stable_across_reloads(tiny_world):
    path = str(tiny_world.serving_dir / "towers" / "1")
    batch = _query_batch(tiny_world.records, 5)
    first = tf.saved_model.load(path).signatures["query_embedding"](**batch)["embedding"]
    second = tf.saved_model.load(path).signatures["query_embedding"](**batch)["embedding"]
    np.testing.assert_allclose(first.numpy(), second.numpy(), rtol=1e-6)


def test_recall_against_exact_is_the_overlap_share():
    approximate = np.array([[b"a", b"b"], [b"c", b"x"]], dtype=object)
    exact = np.array([[b"b", b"a"], [b"c", b"d"]], dtype=object)
    assert recall_against_exact(approximate, exact) == 0.75  # (2 + 1) / 4
    with pytest.raises(ValueError, match="same shape"):
        recall_against_exact(approximate[:1], exact)


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


def test_exact_top_k_matches_a_full_sort():
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]], dtype="f4")
    queries = np.array([[1.0, 0.1], [0.0, -1.0]], dtype="f4")
    # Scores: q0 -> [1.0, 0.1, 0.77, -1.0]; q1 -> [0.0, -1.0, -0.7, 0.0] (ties keep either).
    top = exact_top_k(candidates, queries, k=2, chunk=1)
    assert top[0].tolist() == [0, 2]
    assert set(top[1].tolist()) == {0, 3}
    assert exact_top_k(candidates, queries, k=10).shape == (2, 4)  # k capped at the catalogue.


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


def test_retrieval_models_return_known_titles_and_agree(tiny_world):
    batch = _query_batch(tiny_world.records, 8)
    scann = tf.saved_model.load(str(tiny_world.serving_dir / "retrieval" / "1"))
    exact = tf.saved_model.load(str(tiny_world.serving_dir / "retrieval_exact" / "1"))
    approximate = scann.signatures["serving_default"](**batch)
    truth = exact.signatures["serving_default"](**batch)
    catalogue = (tiny_world.serving_dir / "retrieval" / "1" / "assets.extra" /
                 "catalogue.jsonl").read_text().splitlines()
    known = {json.loads(line)[F.TITLE_ID].encode() for line in catalogue}
    assert truth["title_ids"].shape == (8, 10)
    assert set(truth["title_ids"].numpy().ravel()) <= known
    scores = truth["scores"].numpy()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # Best first.
    assert recall_against_exact(approximate["title_ids"].numpy(),
                                truth["title_ids"].numpy()) >= 0.5


class _NoResults(tf.keras.layers.Layer):
    """Stands in for a ScaNN search that came back empty (seen for a lone query)."""

    def call(self, queries: tf.Tensor, k: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        rows = tf.shape(queries)[0]
        return tf.zeros([rows, 0]), tf.zeros([rows, 0], tf.string)


def test_scann_model_falls_back_to_exact_search_when_results_run_short(tiny_world):
    from recs.data.catalogue import read_jsonl, to_columns

    towers = tf.saved_model.load(str(tiny_world.serving_dir / "towers" / "1"))
    catalogue = to_columns(read_jsonl(str(tiny_world.raw / "titles.jsonl")),
                           F.CANDIDATE_FEATURES)
    ids = np.asarray(catalogue[F.TITLE_ID])
    exact = brute_force_layer(ids, embed(towers.candidate_embedding, catalogue), 10)
    batch = _query_batch(tiny_world.records, 1)
    truth = IndexedRetrieval(towers, exact, 10).recommend(batch)
    rescued = IndexedRetrieval(towers, _NoResults(), 10, fallback=exact).recommend(batch)
    np.testing.assert_array_equal(rescued["title_ids"], truth["title_ids"])
    # A full result list is served as it is: the fallback is not consulted.
    untouched = IndexedRetrieval(towers, exact, 10, fallback=_NoResults()).recommend(batch)
    assert untouched["title_ids"].shape == (1, 10)


def _load_in_fresh_process(path: str, imports: str) -> subprocess.CompletedProcess:
    code = (f"import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'\n{imports}\n"
            f"import tensorflow as tf\ntf.saved_model.load({path!r})\nprint('loaded')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_exact_model_loads_without_scann_and_scann_model_needs_it(tiny_world):
    # Stock TF Serving has no ScaNN ops: the exact model must load with plain TensorFlow.
    exact = _load_in_fresh_process(str(tiny_world.serving_dir / "retrieval_exact" / "1"), "")
    assert "loaded" in exact.stdout, exact.stderr[-2000:]
    scann_plain = _load_in_fresh_process(str(tiny_world.serving_dir / "retrieval" / "1"), "")
    assert scann_plain.returncode != 0 and "Scann" in scann_plain.stderr
    scann = _load_in_fresh_process(str(tiny_world.serving_dir / "retrieval" / "1"),
                                   "import scann")
    assert "loaded" in scann.stdout, scann.stderr[-2000:]


@pytest.mark.parametrize("model", ["towers", "ranker"])
def test_towers_and_ranker_load_with_plain_tensorflow(tiny_world, model):
    loaded = _load_in_fresh_process(str(tiny_world.serving_dir / model / "1"), "")
    assert "loaded" in loaded.stdout, loaded.stderr[-2000:]


def test_validation_refusing_the_tuned_setting_escalates_to_a_more_accurate_one(
        tiny_world, monkeypatch):
    import recs.index
    from recs.data.catalogue import read_jsonl, to_columns
    from recs.index import Trial, build_indexes

    # A tuner that (wrongly) picks one probed partition out of 40: recall far below the gate.
    def careless_tuner(candidates, queries, config):
        careless = (40, 1, 10)
        accurate = (8, 8, 40)
        trials = [Trial(*careless, recall=0.99, standard_error=0.0, ms_per_query=0.01),
                  Trial(*accurate, recall=1.0, standard_error=0.0, ms_per_query=0.02)]
        chosen = dataclasses.replace(config, k=10, num_leaves=40, num_leaves_to_search=1,
                                     num_reordering_candidates=10, tune=False)
        return chosen, trials

    monkeypatch.setattr(recs.index, "tune_scann", careless_tuner)
    towers = tf.saved_model.load(str(tiny_world.serving_dir / "towers" / "1"))
    catalogue = to_columns(read_jsonl(str(tiny_world.raw / "titles.jsonl")),
                           F.CANDIDATE_FEATURES)
    queries = to_columns(tiny_world.records, F.QUERY_FEATURES)
    _, _, report = build_indexes(towers, catalogue, queries,
                                 IndexConfig(k=10, min_recall=0.9, eval_queries=60))
    assert [r["num_leaves_to_search"] for r in report.rejected] == [1]
    assert report.rejected[0]["recall_at_k"] < 0.9
    assert report.blessed and report.recall_at_k >= 0.9
    assert (report.config["num_leaves"], report.config["num_leaves_to_search"],
            report.config["num_reordering_candidates"]) == (8, 8, 40)
