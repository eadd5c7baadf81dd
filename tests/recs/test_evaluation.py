"""Offline metrics on hand-computable rankings, and the MovieLens adapters on the real files."""

import numpy as np
import pytest

from recs import features as F
from recs.evaluation import (blended_metric, calibration, pair_metrics, parse_pair_metric,
                             user_metrics)

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


def test_movielens_100k_maps_into_the_interaction_schema(shared_data):
    from recs.data.movielens import interaction_records, read_ml100k

    data = read_ml100k(str(shared_data / "movielens-100k"))
    assert data.num_ratings == 100_000
    assert len(data.catalogue) == 1664  # 1,682 movies, duplicate titles collapsed.
    rows = np.arange(10)
    records = interaction_records(data, rows, reference=rows)
    assert all(set(r) == set(F.RAW_FEATURE_DTYPES) for r in records)
    for record, rating in zip(records, data.ratings[rows]):
        assert record[F.LABEL] == int(rating >= 4)
        assert record[F.WATCH_RATIO] == rating / 5
        assert 0 <= record[F.HOUR] < 24 and record[F.DEVICE_TYPE] == "web"
    # u.data's first row: user 196 rated "Kolya (1996)" (item 242) 3.
    assert (records[0][F.USER_ID], records[0][F.TITLE_ID]) == ("u196", "Kolya (1996)")
    assert records[0][F.RELEASE_YEAR] == 1997 and "comedy" in records[0][F.DESCRIPTION].lower()
    # History: the user's reference ratings strictly before this one, most recent first.
    # u196's rating at row 20 has earlier ratings of u196 to look back on.
    mine = np.flatnonzero(data.users == "u196")
    row = mine[np.argsort(data.timestamps[mine])[20]]
    full = interaction_records(data, [row], reference=mine)[0][F.HISTORY].split("|")
    earlier = mine[data.timestamps[mine] < data.timestamps[row]]
    expected = data.titles[earlier[np.argsort(-data.timestamps[earlier], kind="stable")]]
    assert len(full) == min(F.MAX_WATCHED, len(earlier))
    assert set(full) <= set(expected.tolist()) and data.titles[row] not in full
    assert full[0] in data.titles[earlier[data.timestamps[earlier] ==
                                          data.timestamps[earlier].max()]]
    # Derived features look only at the reference ratings.
    blind = interaction_records(data, rows, reference=np.array([], dtype=np.int64))
    assert all(r[F.PREFERRED_GENRES] == "" and r[F.POPULARITY] == 0.0 and r[F.HISTORY] == ""
               for r in blind)


def test_movielens_1m_fallback_ratings_load(shared_data):
    from recs.data.movielens import read_ml1m

    data = read_ml1m(str(shared_data / "movielens-1m"))
    assert data.num_ratings == 1_000_209
    assert len(data.catalogue) == 3706 and len(data.profiles) == 6040
    assert np.bincount(data.ratings)[1:].tolist() == [56174, 107557, 261197, 348971, 226310]


def test_missing_movielens_files_are_named(tmp_path):
    from recs.data.movielens import read_ml100k

    with pytest.raises(FileNotFoundError, match=r"lacks \['u.data'"):
        read_ml100k(str(tmp_path))


def test_plots_write_png_files(tmp_path):
    from recs.plots import plot_index_tuning, plot_reliability, plot_training_curves

    paths = [tmp_path / name for name in ("reliability.png", "curves.png", "tuning.png")]
    plot_reliability(calibration(np.array([0.1, 0.9]), np.array([0, 1])), "t", str(paths[0]))
    plot_training_curves({"loss": [1.0, 0.5]}, "t", str(paths[1]))
    plot_index_tuning([{"num_leaves": 4, "recall": 0.97, "ms_per_query": 0.1},
                       {"num_leaves": 4, "recall": 0.5, "ms_per_query": None}], 0.95,
                      str(paths[2]))
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in paths)
