"""The same-run peers (`recs.peers`) on toys whose figures are computable by hand."""

import numpy as np
import pytest

from recs.evaluation import pair_metrics, user_metrics
from recs.models.item_item import cooccurrence, ease_weights
from recs.peers import (EASE_L2, ease_scores, fit_ease, popular_scores, popularity,
                        user_histories)

# Three users, four items. Training: u0 {0, 1}, u1 {0, 2}, u2 {0, 1}; item counts 3, 2, 1, 0.
TRAIN_USERS = np.array(["u0", "u0", "u1", "u1", "u2", "u2"])
TRAIN_ITEMS = np.array([0, 1, 0, 2, 0, 1])


def test_most_popular_ranks_by_training_count_and_recall_follows_by_hand():
    counts = popularity(TRAIN_ITEMS, 4)
    np.testing.assert_array_equal(counts, [3, 2, 1, 0])
    score = popular_scores(counts)
    # Test items: u0 {2}, u1 {1}, u2 {3}. Training items masked, every user's ranking is what
    # is left in count order: u0 [2, 3], u1 [1, 3], u2 [2, 3]. At K=1: u0 and u1 hit, u2
    # not -> Recall@1 = 2/3; at K=2 all three hit -> 1. NDCG@2: u2's hit is at rank 2
    # (1 / log2(3) = 0.6309) -> (1 + 1 + 0.6309) / 3 = 0.8770.
    metrics = user_metrics(score, [np.array([2]), np.array([1]), np.array([3])], (1, 2),
                           exclude=[np.array([0, 1]), np.array([0, 2]), np.array([0, 1])])
    assert metrics["recall_at_1"] == pytest.approx(2 / 3)
    assert metrics["recall_at_2"] == pytest.approx(1.0)
    assert metrics["ndcg_at_2"] == pytest.approx((2 + 1 / np.log2(3)) / 3)


def test_user_histories_are_each_query_users_items_once():
    histories = user_histories(np.array(["u1", "u9", "u0", "u1"]),
                               np.array(["u0", "u1", "u1", "u0"]), np.array([3, 0, 0, 1]), 4)
    # u1 has item 0 twice -> one 1; u9 has no pairs -> an empty row.
    np.testing.assert_array_equal(histories.toarray(), [[1, 0, 0, 0], [0, 0, 0, 0],
                                                        [0, 1, 0, 1], [1, 0, 0, 0]])


def test_ease_scores_are_history_times_the_closed_form_weights():
    fitted = fit_ease(TRAIN_USERS, TRAIN_ITEMS, 4, l2s=(1.0,))
    # One penalty: fitted directly, nothing held out.
    assert fitted.l2 == 1.0 and fitted.held_out_recall_by_l2 == {}
    expected = ease_weights(cooccurrence(TRAIN_USERS, TRAIN_ITEMS, 4), 1.0)
    np.testing.assert_allclose(fitted.weights, expected, rtol=1e-6)
    assert np.all(np.diag(fitted.weights) == 0)  # an item never recommends itself
    histories = user_histories(np.array(["u1"]), TRAIN_USERS, TRAIN_ITEMS, 4)
    scores = ease_scores(fitted.weights, histories)(np.array([0]))
    # u1 had items 0 and 2: its scores are rows 0 and 2 of B summed.
    np.testing.assert_allclose(scores, [expected[0] + expected[2]], rtol=1e-6)


def test_ease_recommends_what_co_occurs():
    # Items 0 and 1 always together, 2 and 3 always together, across 20 users.
    users = np.repeat(np.arange(20), 2)
    items = np.where(np.arange(20) < 10, 0, 2).repeat(2) + np.tile([0, 1], 20)
    fitted = fit_ease(users, items, 4, l2s=(1.0,))
    histories = user_histories(np.array([100, 101]), np.array([100, 101]), np.array([0, 3]), 4)
    # A user with item 0 is ranked item 1 first; one with item 3, item 2 (pair-level, the
    # own item included as a candidate: B's zero diagonal never ranks it first).
    metrics = pair_metrics(ease_scores(fitted.weights, histories), np.array([1, 2]), (1,))
    assert metrics["recall_at_1"] == 1.0


def test_the_penalty_is_chosen_on_held_out_pairs_and_refitted_on_all():
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(200), 5)
    # Two tastes: users below 100 draw from items 0-9, the others from 10-19.
    items = np.concatenate([rng.choice(10, 5, replace=False) + 10 * (user >= 100)
                            for user in range(200)])
    fitted = fit_ease(users, items, 20, k=5, seed=1)
    assert set(fitted.held_out_recall_by_l2) == set(EASE_L2)
    best = max(fitted.held_out_recall_by_l2.values())
    assert fitted.held_out_recall_by_l2[fitted.l2] == best
    # The returned weights are the chosen penalty's, fitted on every pair.
    np.testing.assert_allclose(fitted.weights,
                               ease_weights(cooccurrence(users, items, 20), fitted.l2),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kwargs, message", [
    ({"l2s": ()}, "l2s must be at least one penalty"),
    ({"held_out_share": 1.0}, r"held_out_share must be in \(0, 1\)"),
])
def test_fit_ease_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_ease(TRAIN_USERS, TRAIN_ITEMS, 4, **kwargs)


def test_fit_ease_needs_pairs():
    with pytest.raises(ValueError, match="items must be at least one training pair"):
        fit_ease(np.array([]), np.array([], dtype=np.int64), 4)
