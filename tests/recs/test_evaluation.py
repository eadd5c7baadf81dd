"""Offline metrics on hand-computable rankings: pair, user and blended metrics, calibration,
exact top-k and recall against it (the MovieLens adapters: tests/recs/data/test_movielens.py)."""

import numpy as np
import pytest

from recs.evaluation import (blended_metric, calibration, exact_top_k, pair_metrics,
                             parse_pair_metric, recall_against_exact, user_metrics)

# Four candidates; scores per query row.
SCORES = np.array([[0.9, 0.1, 0.5, 0.3],    # ranking: 0, 2, 3, 1
                   [0.2, 0.8, 0.6, 0.4]],   # ranking: 1, 2, 3, 0
                  dtype=np.float32)


def _score(rows: np.ndarray) -> np.ndarray:
    return SCORES[rows]


def test_pair_metrics_rank_each_target_against_all_candidates():
    # Query 0's target (2) is at rank 1; query 1's target (0) is at rank 3.
    metrics = pair_metrics(_score, np.array([2, 0]), ks=(1, 2, 4))
    assert metrics["recall_at_1"] == 0.0
    assert metrics["recall_at_2"] == 0.5
    assert metrics["recall_at_4"] == 1.0
    # NDCG@4: (1/log2(3) + 1/log2(5)) / 2.
    assert metrics["ndcg_at_4"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / 2)


def test_pair_metrics_mask_seen_titles_but_never_the_target():
    # Masking candidate 0 for query 0 lifts target 2 to rank 0; masking the target is ignored.
    metrics = pair_metrics(_score, np.array([2, 0]), ks=(1,),
                           exclude=[np.array([0, 2]), np.array([], dtype=np.int64)])
    assert metrics["recall_at_1"] == 0.5


def test_user_metrics_follow_recbole_definitions():
    # User 0: test {2, 1}, top-2 = [0, 2] -> recall 1/2, hit 1, NDCG (1/log2 3)/(1 + 1/log2 3).
    # User 1: training title 1 masked -> top-2 = [2, 3]; test {3} -> recall 1, NDCG 1/log2 3.
    metrics = user_metrics(_score, [np.array([2, 1]), np.array([3])], ks=(2,),
                           exclude=[np.array([], dtype=np.int64), np.array([1])])
    assert metrics["recall_at_2"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["hit_at_2"] == 1.0
    user0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert metrics["ndcg_at_2"] == pytest.approx((user0 + 1 / np.log2(3)) / 2)


@pytest.mark.parametrize("kind", ["recall", "ndcg"])
def test_blended_metric_equals_pair_metrics_for_every_weight(kind):
    # Continuous random scores have no ties, where the two definitions agree exactly.
    rng = np.random.default_rng(0)
    base, extra = rng.normal(size=(300, 50)), rng.normal(size=(300, 50))
    targets = rng.integers(0, 50, 300)
    weights = (0.0, 0.3, 2.0)
    blended = blended_metric(lambda r: base[r], lambda r: extra[r], weights, targets, k=5,
                             kind=kind, batch=64)
    for weight in weights:
        expected = pair_metrics(lambda r: base[r] + weight * extra[r], targets, (5,))
        assert blended[weight] == pytest.approx(expected[f"{kind}_at_5"])


def test_blended_ndcg_discounts_a_hit_by_its_rank():
    # The target (column 2) is third at weight 0 and first at weight 1.
    base = np.array([[3.0, 2.0, 1.0]])
    extra = np.array([[0.0, 0.0, 5.0]])
    blended = blended_metric(lambda r: base[r], lambda r: extra[r], [0.0, 1.0],
                             np.array([2]), k=3, kind="ndcg")
    assert blended == {0.0: pytest.approx(1 / np.log2(4)), 1.0: pytest.approx(1.0)}
    assert blended_metric(lambda r: base[r], lambda r: extra[r], [0.0], np.array([2]), k=2,
                          kind="ndcg") == {0.0: 0.0}


def test_blended_metric_leaves_the_excluded_titles_out_but_never_the_target():
    # Row 0's target (column 2) is behind columns 0 and 1; row 1's target is column 0.
    base = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    extra = np.zeros_like(base)
    targets = np.array([2, 0])

    def blended(exclude):
        return blended_metric(lambda r: base[r], lambda r: extra[r], [0.0], targets, k=1,
                              exclude=exclude)[0.0]

    assert blended(None) == 0.5
    assert blended([np.array([0]), np.array([0])]) == 0.5  # Row 1's own target stays.
    assert blended([np.array([0, 1]), np.array([0, 1])]) == 1.0


@pytest.mark.parametrize("name", ["ndcg", "ndcg_at_", "ndcg_at_x", "ndcg_at_0", "map_at_10",
                                  "recall_at_-1"])
def test_a_pair_metric_name_that_is_not_kind_at_k_is_refused(name):
    with pytest.raises(ValueError, match=f"recall_at_K or ndcg_at_K with K > 0; received "
                                         f"'{name}'"):
        parse_pair_metric(name)


def test_blended_metric_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match=r"kind must be one of \('recall', 'ndcg'\); "
                                         r"received 'map'"):
        blended_metric(lambda r: r, lambda r: r, [0.0], np.array([0]), k=1, kind="map")


def test_user_metrics_with_a_cut_off_beyond_the_catalogue():
    # 4 candidates, K = 10: the list is all 4, [0, 2, 3, 1]; user 0's test titles {2, 1} are
    # at ranks 1 and 3: recall 1, NDCG (1/log2 3 + 1/log2 5) / (1 + 1/log2 3).
    metrics = user_metrics(_score, [np.array([2, 1])], ks=(10,))
    assert metrics["recall_at_10"] == 1.0 and metrics["hit_at_10"] == 1.0
    assert metrics["ndcg_at_10"] == pytest.approx(
        (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))


def test_calibration_error_is_the_weighted_gap_per_bin():
    # Bin [0.2, 0.3): predicted 0.2, observed 0.5 (2 rows); bin [0.8, 0.9): 0.8 vs 1.0 (2 rows).
    table = calibration(np.array([0.2, 0.2, 0.8, 0.8]), np.array([0, 1, 1, 1]))
    assert table["ece"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert sum(b["count"] for b in table["bins"]) == 4
    with pytest.raises(ValueError, match="equal length; received 2 and 1"):
        calibration(np.array([0.1, 0.2]), np.array([1]))


def test_recall_against_exact_is_the_overlap_share():
    approximate = np.array([[b"a", b"b"], [b"c", b"x"]], dtype=object)
    exact = np.array([[b"b", b"a"], [b"c", b"d"]], dtype=object)
    assert recall_against_exact(approximate, exact) == 0.75  # (2 + 1) / 4
    with pytest.raises(ValueError, match="same shape"):
        recall_against_exact(approximate[:1], exact)


def test_exact_top_k_matches_a_full_sort():
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]], dtype="f4")
    queries = np.array([[1.0, 0.1], [0.0, -1.0]], dtype="f4")
    # Scores: q0 -> [1.0, 0.1, 0.77, -1.0]; q1 -> [0.0, -1.0, -0.7, 0.0] (ties keep either).
    top = exact_top_k(candidates, queries, k=2, chunk=1)
    assert top[0].tolist() == [0, 2]
    assert set(top[1].tolist()) == {0, 3}
    assert exact_top_k(candidates, queries, k=10).shape == (2, 4)  # k capped at the catalogue.
