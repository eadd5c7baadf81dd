"""The recommender model: one call retrieves, excludes and ranks; its ranking from ids and the
frozen catalogue table equals the ranker's from raw feature rows; the exact variant loads in
plain TensorFlow (stock TF Serving)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.contract.signatures import (CANDIDATE_TITLE_IDS, EXCLUDED_TITLE_IDS, FOUND,
                                      PROBABILITY, RANK_CANDIDATES, RECOMMEND, RETRIEVAL_SCORE,
                                      TITLE_IDS)
from recs.data.catalogue import read_jsonl


def _query(record: dict) -> dict[str, tf.Tensor]:
    return {key: tf.constant([record[key]], dtype=F.RAW_FEATURE_DTYPES[key])
            for key in F.QUERY_FEATURES}


@pytest.fixture(scope="module")
def models(tiny_world):
    import scann  # noqa: F401

    load = tf.saved_model.load
    return {name: load(str(tiny_world.serving_dir / name / "1"))
            for name in ("recommender", "recommender_exact", "ranker", "retrieval_exact")}


def test_signatures_take_one_query_and_title_ids(models):
    signatures = models["recommender_exact"].signatures
    assert set(signatures) == {RECOMMEND, RANK_CANDIDATES}
    recommend = signatures[RECOMMEND].structured_input_signature[1]
    assert {key: spec.dtype for key, spec in recommend.items()} == {
        **{key: F.RAW_FEATURE_DTYPES[key] for key in F.QUERY_FEATURES},
        EXCLUDED_TITLE_IDS: tf.string}
    rank = signatures[RANK_CANDIDATES].structured_input_signature[1]
    assert set(rank) == {*F.QUERY_FEATURES, CANDIDATE_TITLE_IDS}


@pytest.mark.parametrize("name", ["recommender", "recommender_exact"])
def test_recommend_scores_like_the_ranker_on_raw_rows_and_never_returns_excluded(
        models, tiny_world, name):
    titles = {row[F.TITLE_ID]: row for row in read_jsonl(str(tiny_world.raw / "titles.jsonl"))}
    for record in tiny_world.records[:5]:
        query = _query(record)
        everything = models[name].signatures[RECOMMEND](
            **query, excluded_title_ids=tf.constant([""]))
        excluded = [title.decode() for title in everything[TITLE_IDS].numpy()[::2]]
        served = models[name].signatures[RECOMMEND](
            **query, excluded_title_ids=tf.constant(excluded))
        ids = [title.decode() for title in served[TITLE_IDS].numpy()]
        assert ids and not set(ids) & set(excluded)
        probability = served[PROBABILITY].numpy()
        assert np.all(np.diff(probability) <= 0)  # Best first.
        # The oracle: the ranker's raw-feature signature, one row per candidate.
        rows = {key: tf.repeat(query[key], len(ids)) for key in F.QUERY_FEATURES}
        for key in F.CANDIDATE_FEATURES:
            rows[key] = tf.constant([titles[title][key] for title in ids],
                                    dtype=F.RAW_FEATURE_DTYPES[key])
        raw = models["ranker"].signatures["serving_default"](**rows)[PROBABILITY].numpy()
        np.testing.assert_allclose(probability, raw, atol=1e-5)


def test_the_exact_recommender_retrieves_what_the_exact_retrieval_model_does(models,
                                                                              tiny_world):
    query = _query(tiny_world.records[0])
    served = models["recommender_exact"].signatures[RECOMMEND](
        **query, excluded_title_ids=tf.constant([""]))
    retrieved = models["retrieval_exact"].signatures["serving_default"](**query)
    assert (sorted(served[TITLE_IDS].numpy().tolist())
            == sorted(retrieved[TITLE_IDS].numpy()[0].tolist()))
    by_title = dict(zip(retrieved[TITLE_IDS].numpy()[0], retrieved["scores"].numpy()[0]))
    np.testing.assert_allclose(served[RETRIEVAL_SCORE].numpy(),
                               [by_title[t] for t in served[TITLE_IDS].numpy()], atol=1e-6)


def test_titles_the_snapshot_lacks_are_reported_not_scored(models, tiny_world):
    record = tiny_world.records[0]
    known = read_jsonl(str(tiny_world.raw / "titles.jsonl"))[0][F.TITLE_ID]
    ranked = models["recommender_exact"].signatures[RANK_CANDIDATES](
        **_query(record), title_ids=tf.constant([known, "published-later"]))
    assert ranked[FOUND].numpy().tolist() == [True, False]
    assert ranked[PROBABILITY].numpy()[1] == 0.0 and 0 < ranked[PROBABILITY].numpy()[0] < 1


@pytest.mark.slow
def test_the_exact_recommender_loads_in_plain_tensorflow_and_the_scann_one_needs_scann(
        tiny_world):
    # A fresh interpreter that never imports this package, as stock TF Serving would load it.
    def load(name: str, imports: str) -> subprocess.CompletedProcess:
        path = str(tiny_world.serving_dir / name / "1")
        code = (f"{imports}\nimport tensorflow as tf\nm = tf.saved_model.load({path!r})\n"
                f"print(sorted(m.signatures))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300)

    exact = load("recommender_exact", "")
    assert exact.returncode == 0, exact.stderr[-2000:]
    assert json.loads(exact.stdout.strip().splitlines()[-1].replace("'", '"')) == [
        RANK_CANDIDATES, RECOMMEND]
    assert load("recommender", "").returncode != 0
    assert load("recommender", "import scann").returncode == 0


def test_the_recommender_is_never_batched_and_the_row_aligned_models_are(tiny_world):
    from recs.contract.models import BATCHING_PARAMS_FILE

    batched = {name: (tiny_world.serving_dir / name / "1" / BATCHING_PARAMS_FILE).exists()
               for name in ("ranker", "towers", "retrieval", "retrieval_exact", "recommender",
                            "recommender_exact")}
    assert batched == {"ranker": True, "towers": True, "retrieval": True,
                       "retrieval_exact": True, "recommender": False,
                       "recommender_exact": False}


def test_title_ids_are_any_unicode_text(models, tiny_world):
    import tensorflow_transform as tft

    from recs.data.catalogue import to_columns
    from recs.recommend import RecommenderExport

    catalogue = read_jsonl(str(tiny_world.raw / "titles.jsonl"))
    catalogue[0] = {**catalogue[0], F.TITLE_ID: "Amélie (2001) 🎬"}
    export = RecommenderExport(tft.TFTransformOutput(tiny_world.transform_dir),
                               models["retrieval_exact"], models["ranker"].ranker,
                               to_columns(catalogue, F.CANDIDATE_FEATURES))
    ranked = export.rank_candidates(_query(tiny_world.records[0]),
                                    tf.constant(["Amélie (2001) 🎬", catalogue[1][F.TITLE_ID]]))
    assert ranked[FOUND].numpy().tolist() == [True, True]
