"""Item-to-item scores (EASE, DLAE): the closed forms, their factors, and the towers that carry
them."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import ColdStartConfig, ItemItemConfig, RetrievalConfig, TrainingConfig
from recs.models.item_item import (ItemItemQuery, cooccurrence, ease_weights, fit_item_item,
                                   interaction_matrix, item_item_layers, item_weights,
                                   penalties, resolve_method)
from recs.models.retrieval import Tower, TwoTowerModel
from recs.training import train_retrieval
from tests.recs._helpers import SIZES, _dataset, _features, _fitted_factors, hybrid_query_tower

NO_PRIOR = ColdStartConfig(enabled=False)
"""These tests look at the item-to-item part alone (`tests/recs/models/test_cold_start.py` has
the prior after it)."""


def test_cooccurrence_counts_users_who_watched_both_titles_once():
    # User 7 watched titles 0, 1 (title 1 twice); user 9 watched 1, 2.
    gram = cooccurrence(np.array([7, 7, 7, 9, 9]), np.array([0, 1, 1, 1, 2]), 3)
    np.testing.assert_array_equal(gram, [[1, 1, 0], [1, 2, 1], [0, 1, 1]])


def test_ease_weights_match_the_closed_form_by_hand():
    # G = [[2, 1], [1, 2]] + 1 I = [[3, 1], [1, 3]]; P = [[3, -1], [-1, 3]] / 8;
    # B = -P / diag(P) off the diagonal: B[0, 1] = B[1, 0] = (1/8) / (3/8) = 1/3.
    weights = ease_weights(np.array([[2.0, 1.0], [1.0, 2.0]]), l2=1.0)
    np.testing.assert_allclose(weights, [[0.0, 1 / 3], [1 / 3, 0.0]], rtol=1e-12)


def test_dlae_weights_match_the_closed_form_by_hand():
    # Dropout 0.5: each title's penalty is 1 + 0.5 / 0.5 * 2 plays = 3, so
    # G + Lambda = [[5, 1], [1, 5]], P = [[5, -1], [-1, 5]] / 24 and B = I - 3 P off the
    # diagonal: B[0, 1] = B[1, 0] = 3 / 24 = 1/8.
    weights = item_weights(np.array([[2.0, 1.0], [1.0, 2.0]]), l2=1.0, dropout=0.5)
    np.testing.assert_allclose(weights, [[0.0, 1 / 8], [1 / 8, 0.0]], rtol=1e-12)


def test_dropout_penalizes_each_title_by_its_plays():
    # l2 1 plus p / (1 - p) = 1 (p = 0.5) times 4 and 1 plays; p = 0 is EASE's one penalty.
    np.testing.assert_allclose(penalties(np.array([4.0, 1.0]), 1.0, 0.5), [5.0, 2.0])
    np.testing.assert_allclose(penalties(np.array([4.0, 1.0]), 1.0, 0.0), [1.0, 1.0])


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_full_rank_factors_reproduce_the_weights(dropout):
    rng = np.random.default_rng(0)
    users, titles = rng.integers(0, 40, 300), rng.integers(0, 8, 300)
    factors = fit_item_item(users, titles, 8, ItemItemConfig(l2=2.0, dropout=dropout, rank=8))
    expected = item_weights(cooccurrence(users, titles, 8), 2.0, dropout)
    np.testing.assert_allclose(factors.history @ factors.titles.T, expected, atol=1e-5)
    watched = np.eye(8)[[1, 3]]
    np.testing.assert_allclose(factors.scores(watched), watched @ expected, atol=1e-5)


def test_a_rank_above_the_catalogue_pads_with_zeros():
    factors = fit_item_item(np.array([0, 0, 1]), np.array([0, 1, 1]), 3,
                            ItemItemConfig(l2=1.0, rank=5))
    assert factors.history.shape == factors.titles.shape == (3, 5)
    np.testing.assert_array_equal(factors.titles[:, 3:], 0.0)


@pytest.mark.parametrize("titles, message", [
    (np.array([], dtype=np.int64), "at least one"),
    (np.array([0, 3]), r"must lie in \[0, 3\); received \[0, 3\]")])
def test_bad_interactions_are_clear_errors(titles, message):
    with pytest.raises(ValueError, match=message):
        fit_item_item(np.zeros(len(titles)), titles, 3, ItemItemConfig())


@pytest.mark.parametrize("field, value", [("l2", 0.0), ("dropout", 1.0), ("dropout", -0.1),
                                          ("rank", 0), ("weights", ()),
                                          ("weights", (0.5, -1.0)), ("method", "svd"),
                                          ("components", 8), ("dense_max_titles", 0)])
def test_item_item_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        ItemItemConfig(**{field: value})


def test_query_layer_sums_watched_rows_skipping_padding_and_scales_by_weight():
    # Watched id h is title index h - 1; id 0 is padding.
    factors = fit_item_item(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 0]), 4,
                            ItemItemConfig(l2=1.0, rank=4))
    query, candidate = item_item_layers(factors, weight=0.5)
    watched = np.array([[1, 3, 0, 0]])  # titles 0 and 2
    out = query({F.WATCHED: watched}).numpy()
    np.testing.assert_allclose(out[0], 0.5 * (factors.history[0] + factors.history[2]),
                               rtol=1e-6)
    titles = candidate({F.transformed_name(F.TITLE_ID): np.array([[1], [3]])}).numpy()
    np.testing.assert_allclose(titles, factors.titles[[1, 3]])
    with pytest.raises(ValueError, match="weight must be >= 0"):
        query.set_weight(-1.0)


def test_tower_with_item_item_round_trips_its_config():
    # The SavedModel round trip is in test_ranker (`hybrid_query_tower`).
    tower = hybrid_query_tower()
    features = {k: tf.constant(v) for k, v in _features(5).items()}
    expected = tower(features).numpy()
    assert expected.shape == (5, 32 + 3)
    np.testing.assert_allclose(np.linalg.norm(expected[:, :32], axis=1), 1.0, rtol=1e-5)
    clone = Tower.from_config(tower.get_config())
    assert clone.get_config() == tower.get_config()
    assert isinstance(clone.item_item, ItemItemQuery)
    assert clone(features).shape == (5, 35)


def test_hybrid_score_is_tower_score_plus_weight_times_item_item_score():
    model = TwoTowerModel(SIZES, RetrievalConfig())
    features = {k: tf.constant(v) for k, v in _features(4).items()}
    plain = (model.query_tower(features).numpy(), model.candidate_tower(features).numpy())
    factors = _fitted_factors()
    model.attach_item_item(factors, weight=0.5)
    query, candidate = model.query_tower(features).numpy(), model.candidate_tower(features).numpy()
    # The towers' own variables are untouched and come first; the factors are not trained.
    np.testing.assert_allclose(query[:, :32], plain[0], rtol=1e-6)
    assert not any("item_item" in v.name for v in model.trainable_variables)
    watched = np.zeros((4, SIZES.titles))
    for row, ids in enumerate(features[F.WATCHED].numpy()):
        for h in ids[ids > 0]:
            watched[row, h - 1] += 1
    titles = features[F.transformed_name(F.TITLE_ID)].numpy()
    expected = plain[0] @ plain[1].T + 0.5 * factors.scores(watched)[:, titles]
    np.testing.assert_allclose(query @ candidate.T, expected, rtol=1e-4, atol=1e-5)


def test_train_retrieval_picks_the_item_item_weight_on_the_evaluation_split():
    # Every query watched title 1 (id 2) and engages with title 1 or 2; the weights tried
    # are scored on the evaluation split by the selection metric and the best one is kept.
    features = _features(600, seed=4)
    watched = np.zeros((600, F.MAX_WATCHED), dtype=np.int64)
    watched[:, 0] = 2
    features[F.WATCHED] = watched
    features[F.transformed_name(F.TITLE_ID)] = np.where(np.arange(600) % 2, 2, 1)
    data = _dataset(features, np.ones(600, dtype=np.int64))
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,), eval_k=1,
                             selection="recall_at_1",
                             item_item=ItemItemConfig(enabled=True, rank=4, l2=1.0,
                                                      weights=(0.0, 1.0)),
                             cold_start=NO_PRIOR,
                             training=TrainingConfig(batch_size=64, epochs=1))
    result = train_retrieval(data, data, SIZES, config)
    metrics = result.metrics
    assert set(metrics) == {"recall_at_1", "item_item_weight", "recall_at_1_item_item_weight_0",
                            "recall_at_1_item_item_weight_1"}
    # Chosen with each row's played title (title 1) left out, unless it is the pair's own.
    assert metrics[f"recall_at_1_item_item_weight_{metrics['item_item_weight']:g}"] == \
        max(metrics["recall_at_1_item_item_weight_0"], metrics["recall_at_1_item_item_weight_1"])
    assert 0.0 <= metrics["recall_at_1"] <= 1.0
    if metrics["item_item_weight"] > 0:
        assert float(result.model.query_tower.item_item.weight.numpy()) == \
            metrics["item_item_weight"]
        assert result.model.query_tower(next(iter(data))).shape[1] == 8 + 4
    else:
        assert result.model.query_tower.item_item is None


@pytest.mark.parametrize("weight, width", [(1.0, 8 + 3), (0.0, 8)])
def test_a_winning_weight_of_zero_exports_the_towers_alone(weight, width, tmp_path):
    features = _features(200, seed=5)
    data = _dataset(features, np.ones(200, dtype=np.int64))
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,), eval_k=1,
                             item_item=ItemItemConfig(rank=3, l2=1.0, weights=(weight,)),
                             cold_start=NO_PRIOR,
                             training=TrainingConfig(batch_size=64, epochs=1))
    model = train_retrieval(data, data, SIZES, config).model
    batch = next(iter(data))
    for tower in (model.query_tower, model.candidate_tower):
        assert (tower.item_item is None) == (weight == 0)
        assert tower(batch).shape[1] == width
    tf.saved_model.save(model.candidate_tower, str(tmp_path / "candidate"))
    reloaded = tf.saved_model.load(str(tmp_path / "candidate"))
    # The factors are the only [titles, 3] table (embeddings are 4 wide).
    assert any(tuple(v.shape) == (SIZES.titles, 3) for v in reloaded.variables) == (weight > 0)


def test_dense_fit_in_float32_matches_the_float64_closed_form():
    rng = np.random.default_rng(3)
    users, titles = rng.integers(0, 300, 3000), rng.integers(0, 60, 3000)
    gram = cooccurrence(users, titles, 60)
    assert gram.dtype == np.float32
    expected = ease_weights(gram.astype(np.float64), 5.0)
    in_place = ease_weights(gram, 5.0, overwrite=True)
    assert in_place.dtype == np.float32 and np.shares_memory(in_place, gram)
    np.testing.assert_allclose(in_place, expected, atol=1e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_low_rank_fit_with_every_component_reproduces_the_weights_off_the_diagonal(dropout):
    # With all eigenpairs X'X is exact (no residual), so Woodbury gives B exactly; the
    # diagonal (which B has at zero and retrieval masks as watched) is not kept.
    rng = np.random.default_rng(1)
    users, titles = rng.integers(0, 50, 400), rng.integers(0, 10, 400)
    factors = fit_item_item(users, titles, 10, ItemItemConfig(
        method="low_rank", l2=2.0, dropout=dropout, rank=10, components=10))
    assert factors.method == "low_rank"
    product = factors.history @ factors.titles.T
    expected = item_weights(cooccurrence(users, titles, 10).astype(np.float64), 2.0, dropout)
    off = ~np.eye(10, dtype=bool)
    np.testing.assert_allclose(product[off], expected[off], atol=1e-5)


def _reduced_rank_case():
    from recs.models.item_item import _DenseWeights, _FactoredWeights
    rng = np.random.default_rng(2)
    matrix = interaction_matrix(rng.integers(0, 200, 2000), rng.integers(0, 60, 2000), 60)
    # Three strong directions and five weak ones, as co-watching spectra decay.
    scales = np.array([9.0, 7.0, 5.0, 1.0, 0.8, 0.6, 0.4, 0.2])
    history, candidate = rng.normal(size=(60, 8)) * scales, rng.normal(size=(60, 8))
    factored = _FactoredWeights(history, candidate)
    return matrix, factored, _DenseWeights(factored.dense())


def test_reduced_rank_factors_are_the_best_rank_r_fit_of_the_users_scores():
    from recs.models.item_item import _reduced_rank
    matrix, factored, dense = _reduced_rank_case()
    weights = dense.weights
    scores = matrix @ weights
    # The exact solution: W = the top 3 right singular vectors of X B, B_3 = B W W'.
    right = np.linalg.svd(scores)[2][:3].T
    best = weights @ right @ right.T
    for operator in (dense, factored):  # the factored one never forms B
        low, high = _reduced_rank(matrix, operator, rank=3, seed=0)
        np.testing.assert_allclose(low @ high.T, best, atol=1e-3)
    # It fits the users' scores better than B's own best rank-3 approximation does.
    u, s, vt = np.linalg.svd(weights)
    truncated = (u[:, :3] * s[:3]) @ vt[:3]
    low, high = _reduced_rank(matrix, dense, rank=3, seed=0)
    assert (np.linalg.norm(scores - matrix @ (low @ high.T))
            < np.linalg.norm(scores - matrix @ truncated))


def test_reduced_rank_at_full_rank_is_the_weights_and_the_identity():
    from recs.models.item_item import _reduced_rank
    matrix, factored, dense = _reduced_rank_case()
    low, high = _reduced_rank(matrix, factored, rank=60, seed=0)
    np.testing.assert_allclose(low, dense.weights, atol=1e-4)
    np.testing.assert_array_equal(high, np.eye(60))


def test_low_rank_fit_ranks_co_watched_titles_like_the_dense_fit():
    # Two audiences: users 0-99 watch titles 0-9, users 100-199 titles 10-19 (plus noise).
    rng = np.random.default_rng(4)
    users = rng.integers(0, 200, 6000)
    titles = np.where(users < 100, 0, 10) + rng.integers(0, 10, 6000)
    noise = rng.random(6000) < 0.1
    titles[noise] = rng.integers(0, 20, noise.sum())
    config = ItemItemConfig(l2=10.0, rank=4, components=8)
    dense = fit_item_item(users, titles, 20, dataclasses.replace(config, method="dense"))
    low = fit_item_item(users, titles, 20, dataclasses.replace(config, method="low_rank"))
    watched = np.zeros((1, 20))
    watched[0, [0, 1]] = 1.0  # someone from the first audience
    for factors in (dense, low):
        scores = factors.scores(watched)[0]
        scores[[0, 1]] = -np.inf  # watched: never recommended
        assert set(np.argsort(-scores)[:8]) == set(range(2, 10)), factors.method


def test_auto_picks_the_dense_fit_up_to_its_limit_and_low_rank_above():
    config = ItemItemConfig(dense_max_titles=100)
    assert resolve_method(config, 100) == "dense"
    assert resolve_method(config, 101) == "low_rank"
    assert resolve_method(dataclasses.replace(config, method="low_rank"), 10) == "low_rank"
    factors = fit_item_item(np.arange(300) % 40, np.arange(300) % 150, 150,
                            dataclasses.replace(config, rank=4, components=16))
    assert factors.method == "low_rank" and factors.history.shape == (150, 4)


def test_data_without_watched_titles_trains_the_towers_alone():
    features = _features(200, seed=6)
    features.pop(F.WATCHED)
    data = _dataset(features, np.ones(200, dtype=np.int64))
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,), eval_k=1, cold_start=NO_PRIOR,
                             training=TrainingConfig(batch_size=64, epochs=1))
    assert config.item_item.enabled  # the default
    result = train_retrieval(data, data, SIZES, config)
    assert set(result.metrics) == {"recall_at_1"}
    assert result.model.query_tower.item_item is None


def test_a_batch_with_no_engaged_row_is_skipped_not_a_crash():
    # 200 rows in batches of 64: the last 8 rows (the fourth batch) are all unengaged, so
    # the positive-pair filter leaves that batch empty; training and the recall still run.
    features = _features(200, seed=6)
    labels = np.ones(200, dtype=np.int64)
    labels[192:] = 0
    data = _dataset(features, labels)
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,), eval_k=1,
                             item_item=ItemItemConfig(weights=(0.0,)), cold_start=NO_PRIOR,
                             training=TrainingConfig(batch_size=64, epochs=1))
    result = train_retrieval(data, data, SIZES, config)
    assert 0.0 <= result.metrics["recall_at_1"] <= 1.0
    assert len(result.history["loss"]) == 1
