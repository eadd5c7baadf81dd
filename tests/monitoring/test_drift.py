"""Continuous evaluation: TFDV comparators on hand-made distributions, outcome metrics, and the
decision logic at its thresholds."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from monitoring import ALERT, NOTHING, RETRAIN, DriftMeasurement, MonitorConfig, Signals
from monitoring import compare, decide
from monitoring.outcomes import (Records, engagement, prediction_quality, return_rate,
                                 served_engagement, unseen_share)
from recs import features as F

CONFIG = MonitorConfig(categorical_features=("device",), numeric_features=("watch",),
                       linf_threshold=0.3, js_threshold=0.1)


def _stats(devices: dict[str, int], watch: np.ndarray):
    column = [name for name, count in devices.items() for _ in range(count)]
    return tfdv.generate_statistics_from_dataframe(
        pd.DataFrame({"device": column, "watch": watch[:len(column)]}))


@pytest.fixture(scope="module")
def reference():
    return _stats({"tv": 50, "mobile": 50}, np.linspace(0, 1, 100))


def _by_feature(measurements):
    return {m.feature: m for m in measurements}


def test_identical_spans_do_not_drift(reference):
    found = _by_feature(compare(_stats({"tv": 50, "mobile": 50}, np.linspace(0, 1, 100)),
                                reference, CONFIG))
    assert (found["device"].value, found["watch"].value) == (0.0, 0.0)
    assert not any(m.exceeded for m in found.values())


def test_linf_is_the_largest_change_of_a_value_share(reference):
    # tv 50% -> 90%, mobile 50% -> 10%: L-infinity = 0.4 > 0.3.
    moved = _by_feature(compare(_stats({"tv": 90, "mobile": 10}, np.linspace(0, 1, 100)),
                                reference, CONFIG))["device"]
    assert (moved.comparator, moved.value, moved.exceeded) == ("L_INFTY", pytest.approx(0.4),
                                                              True)
    # tv 50% -> 70%: 0.2, under the 0.3 threshold.
    small = _by_feature(compare(_stats({"tv": 70, "mobile": 30}, np.linspace(0, 1, 100)),
                                reference, CONFIG))["device"]
    assert (small.value, small.exceeded) == (pytest.approx(0.2), False)


def test_jensen_shannon_of_disjoint_and_half_overlapping_histograms(reference):
    disjoint = _by_feature(compare(_stats({"tv": 50, "mobile": 50}, np.linspace(5, 6, 100)),
                                   reference, CONFIG))["watch"]
    assert (disjoint.comparator, disjoint.value) == ("JENSEN_SHANNON_DIVERGENCE",
                                                     pytest.approx(1.0))
    # Half the mass moved away: the exact divergence is 0.311 bits; TFDV's histogram
    # approximation lands near it.
    half = np.concatenate([np.linspace(0, 1, 50), np.linspace(5, 6, 50)])
    moved = _by_feature(compare(_stats({"tv": 50, "mobile": 50}, half), reference,
                                CONFIG))["watch"]
    assert 0.25 < moved.value < 0.45 and moved.exceeded
    lenient = dataclasses.replace(CONFIG, js_threshold=0.5)
    assert not _by_feature(compare(_stats({"tv": 50, "mobile": 50}, half), reference,
                                   lenient))["watch"].exceeded


def test_serving_skew_is_measured_beside_drift(reference):
    serving = _stats({"tv": 100}, np.linspace(0, 1, 100))
    found = compare(reference, reference, CONFIG, serving=serving)
    skew = {m.feature: m for m in found if m.kind == "skew"}
    assert skew["device"].value == pytest.approx(0.5) and skew["device"].exceeded


def test_unknown_feature_in_config_is_a_clear_error(reference):
    with pytest.raises(ValueError, match=r"features \['age'\] are not in the reference"):
        compare(reference, reference, dataclasses.replace(CONFIG, numeric_features=("age",)))


def _signals(**overrides) -> Signals:
    values = dict(span=8, auc=0.70, ece=0.02, baseline_auc=0.70)
    return Signals(**{**values, **overrides})


def _drift(*values: float) -> tuple[DriftMeasurement, ...]:
    return tuple(DriftMeasurement(f"f{i}", "L_INFTY", v, 0.1) for i, v in enumerate(values))


DEFAULTS = MonitorConfig()


@pytest.mark.parametrize("overrides, action", [
    ({}, NOTHING),
    ({"auc": 0.60, "baseline_auc": None}, NOTHING),  # At min_auc: fine (strictly below).
    ({"auc": 0.5999, "baseline_auc": None}, RETRAIN),
    ({"auc": 0.67}, NOTHING),                 # Drop 0.03 = max_auc_drop: fine.
    ({"auc": 0.6699}, RETRAIN),               # Drop just beyond it.
    ({"drift": _drift(0.1, 0.05)}, NOTHING),  # At the threshold is not above it.
    ({"drift": _drift(0.11, 0.05)}, ALERT),   # One drifted feature alerts.
    ({"drift": _drift(0.11, 0.2)}, RETRAIN),  # Two ask for a retrain.
    ({"unseen_title_share": 0.05}, NOTHING),
    ({"unseen_title_share": 0.051}, RETRAIN),
    ({"ece": 0.05}, NOTHING),
    ({"ece": 0.0501}, ALERT),
    ({"served_engagement_rate": 0.09, "baseline_served_engagement_rate": 0.1}, NOTHING),
    ({"served_engagement_rate": 0.0899, "baseline_served_engagement_rate": 0.1}, ALERT),
    ({"auc": 0.5, "spans_since_retrain": 0}, ALERT),  # Cooldown holds the retrain back.
    ({"auc": 0.5, "spans_since_retrain": 1}, RETRAIN),
])
def test_decision_at_its_thresholds(overrides, action):
    decision = decide(_signals(**overrides), DEFAULTS)
    assert decision.action == action, decision.reasons
    assert (decision.reasons == ()) == (action == NOTHING)
    assert json.loads(decision.to_json())["action"] == action


def test_decision_names_the_numbers_behind_it():
    decision = decide(_signals(auc=0.55, drift=_drift(0.3, 0.2)), DEFAULTS)
    text = " ".join(decision.reasons)
    assert "auc 0.5500 < min_auc 0.6" in text and "2 features drifted: f0 0.300>0.1" in text


@pytest.mark.parametrize("kwargs, message", [
    ({"linf_threshold": 0.0}, "linf_threshold must be in"),
    ({"alert_drifted_features": 3, "retrain_drifted_features": 2},
     "alert_drifted_features must be positive"),
    ({"categorical_features": ("age",)}, "disjoint from numeric_features"),
])
def test_monitor_config_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MonitorConfig(**kwargs)


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


def _records(users, titles, labels, watch=None) -> Records:
    n = len(users)
    return Records({F.USER_ID: np.array(users, dtype=object),
                    F.TITLE_ID: np.array(titles, dtype=object), F.LABEL: np.array(labels),
                    F.WATCH_SECONDS: np.array(watch or [600.0] * n),
                    F.COMPLETED: np.zeros(n), F.LIKED: np.zeros(n)})


def test_engagement_and_served_engagement():
    records = _records([b"u1", b"u1", b"u2"], [b"t1", b"t2", b"t1"], [1, 0, 1],
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
    records = _records([b"u"] * 4, [b"t1", b"new", b"t2", b"new"], [1, 1, 0, 0])
    assert unseen_share(records, [b"t1", b"t2"]) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_stats(tiny_world):
    from monitoring.drift import span_statistics

    return span_statistics(tiny_world.examples_glob)


def test_monitor_span_scores_compares_decides_records_and_reports(tiny_world, tiny_stats,
                                                                  tmp_path):
    from monitoring.monitor import ServedModel, _read_decisions, monitor_span
    from recs.contract.models import newest_version_dir

    stats = tiny_stats
    model = ServedModel(ranker_dir=newest_version_dir(str(tiny_world.serving_dir), "ranker"),
                        baseline_auc=0.99, known_titles=(b"t000001",))
    config = MonitorConfig(min_auc=0.0, max_auc_drop=0.05)
    log = tmp_path / "decisions.jsonl"
    decision, quality = monitor_span(3, tiny_world.examples_glob, model, stats, stats, config,
                                     str(log), str(tmp_path / "reports"))
    # The same statistics on both sides: nothing drifted, every distance is 0.
    assert decision.signals.drift and all(m.value == 0.0 for m in decision.signals.drift)
    # Far below the 0.99 baseline, and almost every title unknown to the model: retrain.
    assert decision.action == RETRAIN
    assert decision.signals.unseen_title_share > 0.9
    assert 0.0 <= quality["auc"] <= 1.0 and set(quality["slices"]) == {"device_type", "country",
                                                                      "user"}
    assert _read_decisions(str(log)) == [decision]
    page = (tmp_path / "reports" / "span-3.html").read_text()
    assert "Span 3: retrain" in page
    for suffix in ("trends", "reliability", "drift"):
        assert (tmp_path / "reports" / f"span-3-{suffix}.png").stat().st_size > 1000


def test_the_newest_version_is_one_with_a_saved_model_never_a_half_copied_folder(tmp_path):
    from recs.contract.models import newest_version_dir

    with pytest.raises(FileNotFoundError, match="no pushed version of 'ranker'"):
        newest_version_dir(str(tmp_path), "ranker")
    (tmp_path / "ranker" / "3").mkdir(parents=True)
    (tmp_path / "ranker" / "3" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "ranker" / "4").mkdir()  # Being copied in: no saved_model.pb yet.
    assert newest_version_dir(str(tmp_path), "ranker") == str(tmp_path / "ranker" / "3")


def test_an_undefined_auc_and_an_empty_served_log_trigger_nothing():
    # A span with one class only has no AUC: it must not read as 0 and retrain.
    signals = Signals(span=1, auc=None, ece=0.0, baseline_auc=0.8)
    assert decide(signals, MonitorConfig(min_auc=0.6)).action == NOTHING
    # Nothing served: no engagement rate at all, not a rate of 0 and an alert.
    rate = served_engagement([], _records([b"u1"], [b"t1"], [1], [60.0]))["engagement_rate"]
    assert rate is None
    signals = Signals(span=1, auc=0.7, ece=0.0, served_engagement_rate=rate,
                      baseline_served_engagement_rate=0.3)
    assert decide(signals, MonitorConfig()).action == NOTHING


def test_monitor_command_exits_with_the_action(tiny_world, tmp_path):
    from recs_cli.main import main

    workdir = tmp_path / "w"
    (workdir / "serving").mkdir(parents=True)
    (workdir / "serving" / "ranker").symlink_to(tiny_world.serving_dir / "ranker")
    config = tmp_path / "monitor.json"
    config.write_text(MonitorConfig(min_auc=0.0, max_unseen_title_share=1.0).to_json())
    code = main(["monitor", "--workdir", str(workdir), "--span", "1", "--examples",
                 tiny_world.examples_glob, "--reference", tiny_world.examples_glob,
                 "--config", str(config)])
    decisions = (workdir / "monitoring" / "decisions.jsonl").read_text().splitlines()
    action = json.loads(decisions[-1])["action"]
    assert code == {"nothing": 0, "alert": 3, "retrain": 4}[action]
    assert action in ("nothing", "alert")  # Same data as the reference: no retrain reason.
