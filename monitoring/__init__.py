"""Continuous evaluation: outcome metrics, calibration, drift, and the retrain decision.

The last stage of the data flow: it reads what the others wrote (ingested spans, served-list
logs, pushed models) and decides per span whether to do nothing, alert, or retrain.
"""

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)

from monitoring.config import MonitorConfig
from monitoring.decision import ALERT, NOTHING, RETRAIN, Decision, Signals, decide
from monitoring.drift import DriftMeasurement, compare, span_statistics

__all__ = ["ALERT", "Decision", "DriftMeasurement", "MonitorConfig", "NOTHING", "RETRAIN",
           "Signals", "compare", "decide", "span_statistics"]
