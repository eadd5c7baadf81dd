"""The cold-start popularity prior: its table, its layers, the towers that carry it, and its
fit on held-out users."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import ColdStartConfig, ItemItemConfig, RetrievalConfig, TrainingConfig
from recs.models.cold_start import (HISTORY_BUCKETS, KNOWN, NEW, ColdStartPrior, PriorQuery,
                                    average_start, history_bucket, restore_row,
                                    segment_log_popularity)
from recs.models.retrieval import Tower, TwoTowerModel
from recs.training import first_plays, train_retrieval
from tests.recs._helpers import SIZES, _dataset, _features

T = F.transformed_name


def test_segment_log_popularity_by_hand():
    # 3 titles (the last is out of vocabulary), plays: segment 0 watched title 0 twice,
    # segment 1 watched title 1 once. N = 3; p(title) = (c + 1) / (N + 3) = [3/6, 2/6, 1/6].
    # Segment 0 with m = 1: (c_0 + p) / (N_0 + 1) = [(2 + 1/2) / 3, (0 + 1/3) / 3, ...].
    table = segment_log_popularity(np.array([0, 0, 1]), np.array([0, 0, 1]), 3, smoothing=1.0)
    assert table.shape == (3, F.AGE_BUCKETS) and table.dtype == np.float32
    np.testing.assert_allclose(np.exp(table[:2, 0]), [2.5 / 3, (1 / 3) / 3], rtol=1e-6)
    np.testing.assert_allclose(np.exp(table[:2, 1]), [0.5 / 2, (1 + 1 / 3) / 2], rtol=1e-6)
    # A segment with no plays is the whole audience's distribution.
    np.testing.assert_allclose(np.exp(table[:2, 5]), [3 / 6, 2 / 6], rtol=1e-6)
    # The out-of-vocabulary title (a new one) gets the known titles' mean log-probability.
    np.testing.assert_allclose(table[2], table[:2].mean(axis=0), rtol=1e-6)


def test_the_default_grid_reaches_the_whole_audiences_popularity():
    # Segment 1 prefers title 1, the audience title 0 ([3/6, 2/6] as above): the grid's
    # largest smoothing gives every segment the audience's distribution, and so the
    # most-popular list, for the prior to back off to.
    largest = max(ColdStartConfig().smoothing)
    table = segment_log_popularity(np.array([0, 0, 1]), np.array([0, 0, 1]), 3, largest)
    np.testing.assert_allclose(np.exp(table[:2]), np.array([[3 / 6], [2 / 6]])
                               * np.ones((1, F.AGE_BUCKETS)), rtol=1e-6)


@pytest.mark.parametrize("segments, titles, smoothing, message", [
    ([0], [0], 0.0, "smoothing must be > 0"),
    ([F.AGE_BUCKETS], [0], 1.0, "segments must be in"),
    ([0], [3], 1.0, "titles must be in"),
])
def test_bad_plays_are_clear_errors(segments, titles, smoothing, message):
    with pytest.raises(ValueError, match=message):
        segment_log_popularity(np.array(segments), np.array(titles), 3, smoothing)


@pytest.mark.parametrize("field, value", [("weights", ()), ("weights", (-1.0,)),
                                          ("smoothing", (0.0,)), ("min_pairs", 0),
                                          ("max_pairs", 1)])
def test_cold_start_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(ColdStartConfig(), **{field: value})


def test_history_buckets():
    assert history_bucket(np.array([0, 1, 2, 3, 4, 5, 6, 10, 11, 20, 21, 300])).tolist() == \
        [0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 7]


def test_query_layer_weighs_the_age_one_hot_by_known_id_and_history_length():
    weights = np.zeros((2, HISTORY_BUCKETS), np.float32)
    weights[NEW, 0], weights[NEW, 2], weights[KNOWN, 2] = 1.0, 0.5, 0.25
    layer = PriorQuery(users=5, weights=weights)
    history = np.zeros((3, F.MAX_HISTORY), np.int64)
    history[1:, :2] = 3  # rows 1 and 2 have two plays (bucket 2); row 0 none (bucket 0)
    out = layer({T(F.USER_ID): np.array([4, 4, 1]),  # 4 is the out-of-vocabulary user
                 T(F.AGE): np.array([2, 0, 5]), T(F.HISTORY): history}).numpy()
    expected = np.zeros((3, F.AGE_BUCKETS), np.float32)
    expected[0, 2], expected[1, 0], expected[2, 5] = 1.0, 0.5, 0.25
    np.testing.assert_array_equal(out, expected)


def test_the_query_layer_buckets_every_history_length_as_history_bucket_does():
    plays = np.arange(F.MAX_HISTORY + 1)
    history = (np.arange(F.MAX_HISTORY)[None, :] < plays[:, None]).astype(np.int64) * 2
    weights = np.tile(np.arange(HISTORY_BUCKETS, dtype=np.float32), (2, 1))  # weight = bucket
    out = PriorQuery(users=5, weights=weights)({
        T(F.USER_ID): np.zeros(len(plays), np.int64), T(F.AGE): np.zeros(len(plays), np.int64),
        T(F.HISTORY): history}).numpy()
    np.testing.assert_array_equal(out[:, 0], history_bucket(plays))


def test_first_plays_skip_out_of_vocabulary_gaps():
    # Most recent first; 0 is padding or an out-of-vocabulary title. Row 0 played 4 known
    # titles, oldest 3: its first two plays are 8 then 3 (most recent first: [8, 3]).
    histories = np.array([[5, 0, 8, 3, 0, 0], [2, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    eligible, first = first_plays(histories, 2)
    assert eligible.tolist() == [0] and first.tolist() == [[8, 3]]
    eligible, first = first_plays(histories, 0)
    assert eligible.tolist() == [0, 1, 2] and first.shape == (3, 0)


def test_a_prior_with_a_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="log_popularity must be"):
        ColdStartPrior(np.zeros((3, 2), np.float32), np.zeros((2, HISTORY_BUCKETS)), 1.0)
    with pytest.raises(ValueError, match="weights must be"):
        ColdStartPrior(np.zeros((3, F.AGE_BUCKETS), np.float32), np.zeros((1, 8)), 1.0)


def _prior(seed: int = 0) -> ColdStartPrior:
    rng = np.random.default_rng(seed)
    table = np.log(rng.dirichlet(np.ones(SIZES.titles), F.AGE_BUCKETS).T).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, (2, HISTORY_BUCKETS)).astype(np.float32)
    return ColdStartPrior(table, weights, smoothing=10.0)


def test_blended_score_is_tower_score_plus_weight_times_segment_log_popularity():
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,))
    model = TwoTowerModel(SIZES, config)
    features = _features(20, seed=1)
    plain = model.query_tower(features).numpy(), model.candidate_tower(features).numpy()
    prior = _prior()
    model.attach_cold_start(prior)
    query, candidate = model.query_tower(features).numpy(), model.candidate_tower(features).numpy()
    assert query.shape == candidate.shape == (20, 8 + F.AGE_BUCKETS)
    plays = (features[T(F.HISTORY)] != 0).sum(axis=1)
    known = (features[T(F.USER_ID)] < SIZES.users - 1).astype(int)
    weight = prior.weights[known, history_bucket(plays)]
    ages, titles = features[T(F.AGE)], features[T(F.TITLE_ID)]
    expected = (plain[0] @ plain[1].T
                + weight[:, None] * prior.log_popularity[titles][:, ages].T)
    np.testing.assert_allclose(query @ candidate.T, expected, rtol=1e-5, atol=1e-5)


def test_tower_with_the_prior_round_trips_its_config_and_saved_model(tmp_path):
    model = TwoTowerModel(SIZES, RetrievalConfig(embedding_dim=4, tower_layers=(8,)))
    features = _features(10, seed=2)
    model.query_tower(features)
    model.candidate_tower(features)
    model.attach_cold_start(_prior(1))
    for tower in (model.query_tower, model.candidate_tower):
        expected = tower(features).numpy()
        clone = Tower.from_config(tower.get_config())
        clone(features)
        clone.set_weights(tower.get_weights())
        np.testing.assert_allclose(clone(features).numpy(), expected, rtol=1e-6)
        path = str(tmp_path / tower.name)
        tf.saved_model.save(tower, path)
        np.testing.assert_allclose(tf.saved_model.load(path)(features).numpy(), expected,
                                   rtol=1e-6)


def test_average_start_sets_the_out_of_vocabulary_row_to_the_play_weighted_mean():
    model = TwoTowerModel(SIZES, RetrievalConfig(embedding_dim=4, tower_layers=(8,)))
    model.query_tower(_features(4))
    table = model.query_tower.encoder.embeddings[F.USER_ID].embeddings
    rows = table.numpy()
    counts = np.array([1, 0, 0, 3, 7])  # the last count (out of vocabulary) is ignored
    old = average_start(model.query_tower, F.USER_ID, counts)
    np.testing.assert_allclose(table.numpy()[-1], (rows[0] + 3 * rows[3]) / 4, rtol=1e-5)
    np.testing.assert_array_equal(old, rows[-1])
    restore_row(model.query_tower, F.USER_ID, old)
    np.testing.assert_array_equal(table.numpy(), rows)


def _age_world(n: int, seed: int) -> dict[str, np.ndarray]:
    """People of age bucket a mostly engage with title a % 5: what a segment watches is
    all there is to learn (history and ids are noise)."""
    features = _features(n, seed=seed)
    rng = np.random.default_rng(seed)
    ages = features[T(F.AGE)]
    features[T(F.TITLE_ID)] = np.where(rng.random(n) < 0.8, ages % 5, rng.integers(0, 5, n))
    return features


def test_train_retrieval_fits_the_prior_on_held_out_users_and_attaches_it():
    train, held_out = _age_world(1500, seed=3), _age_world(600, seed=4)
    # Towers trained so little that they barely learn the age effect: the prior must carry
    # the new users.
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,), eval_k=1,
                             selection="recall_at_1", item_item=ItemItemConfig(enabled=False),
                             cold_start=ColdStartConfig(weights=(0.0, 0.1, 1.0),
                                                        smoothing=(1.0, 100.0)),
                             training=TrainingConfig(batch_size=64, epochs=1,
                                                     learning_rate=1e-4))
    result = train_retrieval(_dataset(train, np.ones(1500, np.int64)),
                             _dataset(held_out, np.ones(600, np.int64)), SIZES, config)
    metrics, model = result.metrics, result.model
    # With the prior a zero-play new user gets their age's title first about 80% + 20%/5 of
    # the time; without it, the near-untrained towers are far below.
    assert metrics["new_user_recall_at_1_plays_0_prior"] > 0.7
    assert metrics["new_user_recall_at_1_plays_0_prior"] > \
        metrics["new_user_recall_at_1_plays_0"] + 0.2
    assert metrics["cold_start_weight_new_0"] > 0
    assert metrics["cold_start_smoothing"] in (1.0, 100.0)
    assert model.query_tower.cold_start is not None
    assert model.query_tower(next(iter(_dataset(held_out, np.ones(600))))).shape[1] == \
        8 + F.AGE_BUCKETS
    weights = model.query_tower.cold_start.table.numpy()
    assert weights[NEW, 0] == np.float32(metrics["cold_start_weight_new_0"])
    assert weights[KNOWN, 7] == np.float32(metrics["cold_start_weight_known_7"])


def test_a_prior_whose_weights_are_all_zero_is_not_attached():
    features = _features(300, seed=5)
    data = _dataset(features, np.ones(300, np.int64))
    config = RetrievalConfig(embedding_dim=4, tower_layers=(8,), eval_k=1,
                             item_item=ItemItemConfig(enabled=False),
                             cold_start=ColdStartConfig(weights=(0.0,)),
                             training=TrainingConfig(batch_size=64, epochs=1))
    result = train_retrieval(data, data, SIZES, config)
    assert result.model.query_tower.cold_start is None
    assert result.model.candidate_tower(next(iter(data))).shape[1] == 8
    assert all(result.metrics[f"cold_start_weight_{row}_{bucket}"] == 0
               for row in ("new", "known") for bucket in range(HISTORY_BUCKETS))
