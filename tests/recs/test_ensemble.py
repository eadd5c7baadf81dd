"""The tree ranker (TF-DF gradient-boosted trees) and its blend with the deep ranker."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import RankerConfig, TrainingConfig, TreeRankerConfig
from recs.ensemble import BlendedRanker, blend, predict
from recs.models.encoders import FeatureSizes
from recs.training import train_ranker

SIZES = FeatureSizes(users=40, titles=30, countries=3, subscription_tiers=3, genres=4,
                     description_tokens=10)


def _columns(n: int, seed: int) -> dict[str, np.ndarray]:
    """Rows liked with probability 0.85 when the title is in the user's favoured third of
    the catalogue, 0.15 otherwise: a rule on two categorical ids."""
    rng = np.random.default_rng(seed)
    t = F.transformed_name
    users = rng.integers(0, SIZES.users, n)
    titles = rng.integers(0, SIZES.titles, n)
    liked = (titles % 3 == users % 3)
    label = (rng.random(n) < np.where(liked, 0.85, 0.15)).astype(np.int64)
    return {
        t(F.USER_ID): users, t(F.TITLE_ID): titles,
        t(F.COUNTRY): rng.integers(0, 3, n), t(F.SUBSCRIPTION_TIER): rng.integers(0, 3, n),
        t(F.GENRE): rng.integers(0, SIZES.genres, n), t(F.AGE): rng.integers(0, F.AGE_BUCKETS, n),
        t(F.HOUR): rng.integers(0, 24, n),
        t(F.PREFERRED_GENRES): rng.integers(0, SIZES.genres, (n, F.MAX_PREFERRED_GENRES)),
        t(F.HISTORY): rng.integers(0, SIZES.titles, (n, F.MAX_HISTORY)),
        t(F.DESCRIPTION): rng.integers(0, 10, (n, F.MAX_DESCRIPTION_TOKENS)),
        t(F.DEVICE_TYPE): np.eye(len(F.DEVICE_TYPES) + 1, dtype=np.float32)[
            rng.integers(0, len(F.DEVICE_TYPES) + 1, n)],
        t(F.POPULARITY): rng.normal(size=n).astype(np.float32),
        t(F.RELEASE_YEAR): rng.normal(size=n).astype(np.float32),
        t(F.GENRE_MATCH): rng.random(n).astype(np.float32),
        t(F.LABEL): label,
    }


def _dataset(n: int, seed: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(_columns(n, seed)).batch(256)


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    metric = tf.keras.metrics.AUC()
    metric.update_state(labels, scores)
    return float(metric.result())


@pytest.fixture(scope="module")
def fitted():
    """The ranker Trainer's path with trees on: the deep ranker, the trees, their stack."""
    train, held_out, test = _dataset(5000, 1), _dataset(1500, 2), _dataset(2000, 3)
    config = RankerConfig(embedding_dim=8, hidden_layers=(16,), dropout=0.0,
                          training=TrainingConfig(batch_size=256, epochs=2, learning_rate=0.01),
                          trees=TreeRankerConfig(enabled=True, num_trees=40))
    result = train_ranker(train, held_out, SIZES, config)
    return result, held_out, test


def test_trees_learn_a_rule_on_categorical_ids(fitted):
    result, _, test = fitted
    scores, labels = predict(result.model.trees, test)
    assert result.metrics["trees_seconds"] > 0
    assert ((scores > 0) & (scores < 1)).all()
    # The Bayes-optimal AUC of the rule is 0.85; chance is 0.5.
    assert _auc(scores, labels) > 0.78


def test_stacked_blend_is_no_worse_than_its_better_half(fitted):
    result, held_out, test = fitted
    stacked, deep, trees = result.model, result.model.deep, result.model.trees
    assert isinstance(stacked, BlendedRanker) and stacked.blend == "stacked"
    averaged = blend(deep, trees, held_out, TreeRankerConfig(blend="average"))
    deep_auc = _auc(*predict(deep, test))
    trees_auc = _auc(*predict(trees, test))
    stacked_p, labels = predict(stacked, test)
    assert _auc(stacked_p, labels) >= max(deep_auc, trees_auc) - 0.01
    # On this rule the trees beat the small deep ranker, and the stack leans on them.
    assert trees_auc > deep_auc
    w_deep, w_trees, _ = stacked.blend_weights
    assert w_trees > abs(w_deep)
    # The average is the mean of the halves, row by row.
    deep_p, _ = predict(deep, test)
    trees_p, _ = predict(trees, test)
    np.testing.assert_allclose(predict(averaged, test)[0], (deep_p + trees_p) / 2, atol=1e-6)


def test_blended_ranker_survives_a_saved_model_round_trip(fitted, tmp_path):
    import tensorflow_decision_forests  # noqa: F401  (registers the trees' inference ops)

    result, _, test = fitted
    stacked = result.model
    # Features only, as served (the model was traced on such batches while evaluated).
    batch = {key: value for key, value in next(iter(test)).items()
             if key != F.transformed_name(F.LABEL)}
    expected = stacked(batch).numpy()
    tf.saved_model.save(stacked, str(tmp_path / "blended"))
    loaded = tf.saved_model.load(str(tmp_path / "blended"))
    np.testing.assert_allclose(loaded(batch).numpy(), expected, atol=1e-5)


def test_the_model_server_loads_a_blend_in_a_fresh_process(fitted, tmp_path):
    """Plain TensorFlow lacks TF-DF's ops; the model server's loader registers them."""
    result, _, test = fitted
    stacked = result.model
    batch = {key: value[:5] for key, value in next(iter(test)).items()}
    spec = {key: tf.TensorSpec([None, *value.shape[1:]], value.dtype, name=key)
            for key, value in batch.items()}
    serve = tf.function(lambda features: {"probability": stacked(features)})
    tf.saved_model.save(stacked, str(tmp_path / "blended"),
                        signatures=serve.get_concrete_function(spec))
    np.save(tmp_path / "expected.npy", stacked(batch).numpy())
    np.savez(tmp_path / "batch.npz", **{key: value.numpy() for key, value in batch.items()})
    script = """
import sys, numpy as np, recs, tensorflow as tf
from serving.model_server.registry import load_saved_model  # what the model server loads with
path = sys.argv[1]
try:
    tf.saved_model.load(path + "/blended")
    sys.exit("plain tf.saved_model.load should not find the trees' ops")
except RuntimeError as error:
    assert "SimpleML" in str(error), error
model = load_saved_model(path + "/blended")
batch = {k: tf.constant(v) for k, v in np.load(path + "/batch.npz").items()}
got = model.signatures["serving_default"](**batch)["probability"]
np.testing.assert_allclose(got.numpy(), np.load(path + "/expected.npy"), atol=1e-5)
print("served")
"""
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip().endswith("served")


def test_train_ranker_reports_both_halves_and_the_blend(fitted):
    result, _, _ = fitted
    metrics = result.metrics
    assert len(metrics["blend_weights_deep_trees_bias"]) == 3
    # The stack is fitted on the held-out split it is scored on: no worse than either half.
    assert metrics["auc"] >= max(metrics["deep_auc"], metrics["trees_auc"]) - 0.005
    assert metrics["log_loss"] <= metrics["deep_log_loss"] + 0.005
    assert result.history["loss"]  # The deep ranker's epochs.


def test_tree_config_round_trips_inside_the_ranker_config():
    config = RankerConfig(trees=TreeRankerConfig(enabled=True, blend="average"))
    assert RankerConfig.from_dict(config.to_dict()) == config
    assert not RankerConfig().trees.enabled  # Off by default.


@pytest.mark.parametrize("field, value, message", [
    ("blend", "max", "blend must be one of"),
    ("num_trees", 0, "num_trees must be > 0"),
    ("shrinkage", 0.0, "shrinkage must be in"),
])
def test_tree_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TreeRankerConfig(**{field: value})


def test_blended_ranker_rejects_an_unknown_blend(fitted):
    result, _, _ = fitted
    with pytest.raises(ValueError, match="blend must be one of"):
        BlendedRanker(result.model.deep, result.model.trees, "median")
