"""Outcome metrics on hand-computable records: prediction quality overall, by decile and by
slice; engagement, served engagement, return rate and the unseen-title share."""

import json

import numpy as np
import pytest

from monitoring.outcomes import (engagement, prediction_quality, return_rate,
                                 served_engagement, unseen_share)
from tests.monitoring._helpers import make_records


def test_prediction_quality_overall_by_decile_and_slice():
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7, 0.6, 0.4])
    devices = np.array([b"tv"] * 4 + [b"mobile"] * 4)
    quality = prediction_quality(scores, labels, {"device": devices})
    # Mobile: positives 0.7, 0.4 vs negatives 0.3, 0.6 -> 3 of 4 pairs ordered right.
    assert quality["slices"]["device"]["mobile"]["auc"] == pytest.approx(0.75)
    assert quality["slices"]["device"]["tv"]["auc"] == pytest.approx(1.0)
    # All: 15 of 16 positive-negative pairs ordered right (only 0.4 < 0.6 is not).
    assert quality["auc"] == pytest.approx(15 / 16)
    assert sum(d["count"] for d in quality["deciles"]) == 8
    assert quality["slices"]["device"]["tv"]["observed"] == pytest.approx(0.5)


def test_engagement_and_served_engagement():
    records = make_records([b"u1", b"u1", b"u2"], [b"t1", b"t2", b"t1"], [1, 0, 1],
                       [1200.0, 60.0, 600.0])
    assert engagement(records)["watch_minutes_per_active_user"] == pytest.approx(31 / 2)
    lines = [json.dumps({"user_id": "u1", "items": [{"title_id": "t1", "score": 0.8},
                                                    {"title_id": "t2", "score": 0.4}]}),
             json.dumps({"user_id": "u2", "items": [{"title_id": "t3", "score": 0.3}]})]
    # Served u1/t1 (engaged), u1/t2 (not), u2/t3 (not watched): 1 of 3.
    result = served_engagement(lines, records)
    assert (result["served"], result["engaged"]) == (3, 1)
    assert result["mean_predicted"] == pytest.approx(0.5)


def test_return_rate_needs_the_whole_horizon():
    active = {0: {"a", "b", "c", "d"}, 1: {"a"}, 2: {"b", "z"}}
    assert return_rate(active, 0, horizon=2) == pytest.approx(0.5)
    assert return_rate(active, 1, horizon=2) is None


def test_unseen_share_counts_interactions_on_new_titles():
    records = make_records([b"u"] * 4, [b"t1", b"new", b"t2", b"new"], [1, 1, 0, 0])
    assert unseen_share(records, [b"t1", b"t2"]) == pytest.approx(0.5)
