"""The tiny world's exported SavedModels: signatures that take raw features (or tf.Examples),
stable across reloads, loading with plain TensorFlow."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F


def _query_batch(records: list[dict], n: int) -> dict[str, tf.Tensor]:
    return {key: tf.constant([r[key] for r in records[:n]], dtype=F.RAW_FEATURE_DTYPES[key])
            for key in F.QUERY_FEATURES}


def _load_in_fresh_process(path: str, imports: str) -> subprocess.CompletedProcess:
    code = (f"import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'\n{imports}\n"
            f"import tensorflow as tf\ntf.saved_model.load({path!r})\nprint('loaded')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


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


@pytest.mark.parametrize("model", ["towers", "ranker"])
def test_towers_and_ranker_load_with_plain_tensorflow(tiny_world, model):
    loaded = _load_in_fresh_process(str(tiny_world.serving_dir / model / "1"), "")
    assert "loaded" in loaded.stdout, loaded.stderr[-2000:]
