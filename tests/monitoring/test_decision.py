"""The decision logic at its thresholds: nothing, alert or retrain, with the numbers behind
it, and undefined signals triggering nothing."""

import json

import pytest

from monitoring import ALERT, NOTHING, RETRAIN, DriftMeasurement, MonitorConfig, Signals
from monitoring import decide
from monitoring.outcomes import served_engagement
from tests.monitoring._helpers import make_records


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


def test_an_undefined_auc_and_an_empty_served_log_trigger_nothing():
    # A span with one class only has no AUC: it must not read as 0 and retrain.
    signals = Signals(span=1, auc=None, ece=0.0, baseline_auc=0.8)
    assert decide(signals, MonitorConfig(min_auc=0.6)).action == NOTHING
    # Nothing served: no engagement rate at all, not a rate of 0 and an alert.
    rate = served_engagement([], make_records([b"u1"], [b"t1"], [1], [60.0]))["engagement_rate"]
    assert rate is None
    signals = Signals(span=1, auc=0.7, ece=0.0, served_engagement_rate=rate,
                      baseline_served_engagement_rate=0.3)
    assert decide(signals, MonitorConfig()).action == NOTHING
