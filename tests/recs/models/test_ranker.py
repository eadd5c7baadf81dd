"""The deep ranker: config round-trips (with and without the towers' features), SavedModel
round-trips of the ranker and the towers, and that it learns."""

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import RankerConfig, RetrievalConfig, TrainingConfig
from recs.models.ranker import DeepRanker
from recs.models.retrieval import Tower, candidate_tower, query_tower
from recs.training import train_ranker
from tests.recs._helpers import SIZES, _dataset, _features, hybrid_query_tower


def test_ranker_config_round_trip_and_default_shape():
    ranker = DeepRanker(SIZES, RankerConfig())
    out = ranker(_features(5))
    assert out.shape == (5, 1)
    assert [layer.units for layer in ranker.hidden if hasattr(layer, "units")] == [128, 64]
    assert DeepRanker.from_config(ranker.get_config()).get_config() == ranker.get_config()


def _towers() -> tuple[Tower, Tower]:
    config = RetrievalConfig(embedding_dim=8, tower_layers=(16, 8))
    return query_tower(SIZES, config), candidate_tower(SIZES, config)


def test_ranker_with_towers_config_round_trip():
    ranker = DeepRanker(SIZES, RankerConfig(tower_features=True), _towers())
    assert ranker(_features(5)).shape == (5, 1)
    clone = DeepRanker.from_config(ranker.get_config())
    assert clone.get_config() == ranker.get_config()
    assert [tower.name for tower in clone.towers] == ["query_tower", "candidate_tower"]
    assert clone(_features(5)).shape == (5, 1)


def test_ranker_towers_flag_and_argument_must_agree():
    with pytest.raises(ValueError, match="tower_features is True but towers were not given"):
        DeepRanker(SIZES, RankerConfig(tower_features=True))
    with pytest.raises(ValueError, match="tower_features is False but towers were given"):
        DeepRanker(SIZES, RankerConfig(), _towers())


def test_ranker_learns_from_frozen_towers_without_changing_them():
    # The label is the (random) towers' own verdict: their dot product above its median.
    # From the towers' score the ranker gets it nearly right; from ids alone, on 2,000
    # rows of 5 users x 6 titles with random context, it needs more than one epoch (measured
    # after one: AUC 0.98 vs 0.94, log loss 0.17 vs 0.35).
    towers = _towers()
    train, test = _features(2000, seed=1), _features(500, seed=2)

    def label(features: dict[str, np.ndarray]) -> np.ndarray:
        score = tf.reduce_sum(towers[0](features) * towers[1](features), axis=1).numpy()
        return (score > np.median(score)).astype(np.int64)

    train_data, test_data = _dataset(train, label(train)), _dataset(test, label(test))
    before = [variable.numpy().copy() for tower in towers for variable in tower.variables]
    training = TrainingConfig(epochs=1, learning_rate=0.01)
    result = train_ranker(train_data, test_data, SIZES,
                          RankerConfig(tower_features=True, training=training), towers=towers)
    plain = train_ranker(train_data, test_data, SIZES, RankerConfig(training=training))
    assert result.metrics["auc"] > 0.95
    assert result.metrics["auc"] > plain.metrics["auc"]
    assert result.metrics["log_loss"] < 0.7 * plain.metrics["log_loss"]
    after = [variable.numpy() for tower in towers for variable in tower.variables]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(new, old)
    assert not any(variable.ref() in {v.ref() for v in result.model.trainable_variables}
                   for tower in towers for variable in tower.variables)


@pytest.mark.parametrize("build", [
    lambda: DeepRanker(SIZES, RankerConfig()),
    lambda: DeepRanker(SIZES, RankerConfig(tower_features=True), _towers()),
    lambda: query_tower(SIZES, RetrievalConfig()),
    hybrid_query_tower])
def test_saved_model_round_trip_gives_equal_outputs(build, tmp_path):
    model = build()
    features = {k: tf.constant(v) for k, v in _features(6).items()}
    expected = model(features).numpy()
    module = tf.Module()
    module.model = model
    module.call = tf.function(lambda x: model(x), input_signature=[
        {k: tf.TensorSpec([None, *v.shape[1:]], v.dtype) for k, v in features.items()}])
    tf.saved_model.save(module, str(tmp_path))
    restored = tf.saved_model.load(str(tmp_path))
    np.testing.assert_allclose(restored.call(features).numpy(), expected, rtol=1e-6)


def test_ranker_learns_a_true_signal():
    # The label is genre_match itself; a ranker that learns anything gets AUC near 1.
    train, test = _features(2000, seed=1), _features(500, seed=2)
    label = lambda f: f[F.transformed_name(F.GENRE_MATCH)].astype(np.int64)  # noqa: E731
    result = train_ranker(_dataset(train, label(train)), _dataset(test, label(test)), SIZES,
                          RankerConfig(training=TrainingConfig(epochs=3, learning_rate=0.01)))
    assert result.metrics["auc"] > 0.95
    assert len(result.history["val_auc"]) >= 1
