"""The two towers: config round-trip, unit-norm outputs, cold-start dropout, hard-negative
mining, and that retrieval learns."""

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import RetrievalConfig, TrainingConfig
from recs.models.retrieval import Tower, TwoTowerModel, candidate_tower, query_tower
from recs.training import train_retrieval
from tests.recs._helpers import SIZES, _dataset, _features


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
