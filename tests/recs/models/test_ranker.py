"""Towers and ranker: config round-trips, SavedModel round-trips, and that they learn."""

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import ItemItemConfig, RankerConfig, RetrievalConfig, TrainingConfig
from recs.models.encoders import FeatureEncoder, FeatureSizes
from recs.models.item_item import ItemItemFactors, fit_item_item, item_item_layers
from recs.models.ranker import DeepRanker
from recs.models.retrieval import Tower, TwoTowerModel, candidate_tower, query_tower
from recs.training import train_ranker, train_retrieval

SIZES = FeatureSizes(users=5, titles=6, countries=3, subscription_tiers=3, genres=4,
                     description_tokens=10)


def _features(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = F.transformed_name
    return {
        t(F.USER_ID): rng.integers(0, 5, n), t(F.TITLE_ID): rng.integers(0, 6, n),
        t(F.COUNTRY): rng.integers(0, 3, n), t(F.SUBSCRIPTION_TIER): rng.integers(0, 3, n),
        t(F.GENRE): rng.integers(0, 4, n), t(F.AGE): rng.integers(0, F.AGE_BUCKETS, n),
        t(F.HOUR): rng.integers(0, 24, n),
        t(F.PREFERRED_GENRES): rng.integers(0, 4, (n, F.MAX_PREFERRED_GENRES)),
        t(F.HISTORY): rng.integers(0, 6, (n, F.MAX_HISTORY)),
        F.WATCHED: rng.integers(0, 6, (n, F.MAX_WATCHED)),
        t(F.DESCRIPTION): rng.integers(0, 10, (n, F.MAX_DESCRIPTION_TOKENS)),
        t(F.DEVICE_TYPE): np.eye(len(F.DEVICE_TYPES) + 1, dtype=np.float32)[
            rng.integers(0, len(F.DEVICE_TYPES) + 1, n)],
        t(F.POPULARITY): rng.normal(size=n).astype(np.float32),
        t(F.RELEASE_YEAR): rng.normal(size=n).astype(np.float32),
        t(F.GENRE_MATCH): rng.integers(0, 2, n).astype(np.float32),
        F.WATCH_TIME_Z: rng.normal(size=n).astype(np.float32),
    }


def test_encoder_rejects_outcome_features():
    with pytest.raises(ValueError, match=r"keys \['watch_seconds'\] are not model input"):
        FeatureEncoder((F.USER_ID, F.WATCH_SECONDS), SIZES, 4)


def test_encoder_mean_pools_bags_ignoring_padding():
    encoder = FeatureEncoder((F.PREFERRED_GENRES,), SIZES, 2)
    ids = np.array([[1, 2, 0], [0, 0, 0]])
    out = encoder({F.transformed_name(F.PREFERRED_GENRES): ids}).numpy()
    table = encoder.embeddings[F.PREFERRED_GENRES].get_weights()[0]
    np.testing.assert_allclose(out[0], (table[1] + table[2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.0, 0.0])  # All padding -> zeros, not NaN.


@pytest.mark.parametrize("build", [lambda: query_tower(SIZES, RetrievalConfig()),
                                   lambda: candidate_tower(SIZES, RetrievalConfig())])
def test_tower_config_round_trip(build):
    tower = build()
    clone = Tower.from_config(tower.get_config())
    assert clone.get_config() == tower.get_config()
    assert clone(_features(3)).shape == tower(_features(3)).shape == (3, 32)


def test_tower_outputs_are_unit_norm():
    embeddings = query_tower(SIZES, RetrievalConfig())(_features(4)).numpy()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


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


def _fitted_factors() -> ItemItemFactors:
    rng = np.random.default_rng(1)
    return fit_item_item(rng.integers(0, 5, 60), rng.integers(0, 5, 60), SIZES.titles,
                         ItemItemConfig(rank=3, l2=1.0))


def hybrid_query_tower() -> Tower:
    """A query tower carrying rank-3 item-to-item factors (blend weight 0.25)."""
    tower = query_tower(SIZES, RetrievalConfig())
    tower.attach_item_item(item_item_layers(_fitted_factors(), weight=0.25)[0])
    return tower


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


def _dataset(features: dict[str, np.ndarray], label: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {**features, F.transformed_name(F.LABEL): label}).batch(64)


def test_ranker_learns_a_true_signal():
    # The label is genre_match itself; a ranker that learns anything gets AUC near 1.
    train, test = _features(2000, seed=1), _features(500, seed=2)
    label = lambda f: f[F.transformed_name(F.GENRE_MATCH)].astype(np.int64)  # noqa: E731
    result = train_ranker(_dataset(train, label(train)), _dataset(test, label(test)), SIZES,
                          RankerConfig(training=TrainingConfig(epochs=3, learning_rate=0.01)))
    assert result.metrics["auc"] > 0.95
    assert len(result.history["val_auc"]) >= 1


def test_retrieval_beats_chance_when_users_have_one_favourite_title():
    # User u always engages with title (u + 1) % 6; exact Recall@1 should approach 1,
    # whereas picking at random among 6 titles gives 1/6.
    features = _features(1200, seed=3)
    user = features[F.transformed_name(F.USER_ID)]
    features[F.transformed_name(F.TITLE_ID)] = (user + 1) % 6
    label = np.ones(1200, dtype=np.int64)
    data = _dataset(features, label)
    config = RetrievalConfig(embedding_dim=8, tower_layers=(16,), eval_k=1,
                             training=TrainingConfig(batch_size=64, epochs=5, learning_rate=0.1,
                                                     optimizer="adagrad"))
    result = train_retrieval(data, data, SIZES, config)
    assert result.metrics["recall_at_1"] > 0.5
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_cold_start_dropout_shows_some_queries_as_new_users():
    model = TwoTowerModel(SIZES, RetrievalConfig(embedding_dim=4, tower_layers=(8,),
                                                 cold_start_dropout=0.5))
    features = {k: tf.constant(v) for k, v in _features(2000).items()}
    masked = model._as_new_users(features)
    user, history = F.transformed_name(F.USER_ID), F.transformed_name(F.HISTORY)
    # Random histories of 30 ids in 0..5 are never all padding; dropped rows' are.
    dropped = (masked[history].numpy() == 0).all(axis=1)
    assert 0.45 < dropped.mean() < 0.55  # Binomial(2000, 0.5): sd 0.011.
    assert (masked[user].numpy().ravel()[dropped] == SIZES.users - 1).all()  # The OOV id.
    np.testing.assert_array_equal(masked[history].numpy()[~dropped],
                                  features[history].numpy()[~dropped])
    np.testing.assert_array_equal(masked[user].numpy().ravel()[~dropped],
                                  features[user].numpy().ravel()[~dropped])
    with pytest.raises(ValueError, match=r"cold_start_dropout must be in \[0, 1\); received 1.0"):
        RetrievalConfig(cold_start_dropout=1.0)


def test_hard_negative_mining_keeps_only_the_hardest_negatives():
    """Fewer negatives in the softmax can only lower the loss; as many as the batch holds
    gives the full loss back."""
    features = {k: tf.constant(v) for k, v in _features(32, seed=5).items()}
    # Three models with one set of weights, differing only in the mining.
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,), logq_correction=False)
    full = TwoTowerModel(SIZES, config)
    losses = {}
    for hard in (0, 2, 31):
        model = TwoTowerModel(SIZES, RetrievalConfig.from_dict(
            {**config.to_dict(), "num_hard_negatives": hard}))
        model.query_tower(features), model.candidate_tower(features)
        full.query_tower(features), full.candidate_tower(features)
        model.query_tower.set_weights(full.query_tower.get_weights())
        model.candidate_tower.set_weights(full.candidate_tower.get_weights())
        losses[hard] = float(model.compute_loss(features))
    assert losses[2] < losses[0]
    assert losses[31] == pytest.approx(losses[0], rel=1e-5)
    with pytest.raises(ValueError, match="num_hard_negatives must be >= 0"):
        RetrievalConfig(num_hard_negatives=-1)
