"""The tiny world's retrieval models (ScaNN and exact): known titles, agreement, the exact
fallback when ScaNN runs short, which runtime each loads in, and validation escalating past a
tuned setting it refuses."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import IndexConfig
from recs.evaluation import recall_against_exact
from recs.index import IndexedRetrieval, brute_force_layer, embed


def _query_batch(records: list[dict], n: int) -> dict[str, tf.Tensor]:
    return {key: tf.constant([r[key] for r in records[:n]], dtype=F.RAW_FEATURE_DTYPES[key])
            for key in F.QUERY_FEATURES}


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
