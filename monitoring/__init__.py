"""Continuous evaluation: outcome metrics, calibration, drift, and the retrain decision.

The last stage of the data flow: it reads what the others wrote (ingested spans, served-list
logs, pushed models) and decides per span whether to do nothing, alert, or retrain.
"""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "MonitorConfig": "monitoring.config",
    **{name: "monitoring.decision" for name in ("ALERT", "Decision", "NOTHING", "RETRAIN",
                                                "Signals", "decide")},
    **{name: "monitoring.drift" for name in ("DriftMeasurement", "compare", "span_statistics")},
    **{name: "monitoring.sequential" for name in (
        "AAStoppingRate", "Look", "OutcomeMatrix", "SequentialResult", "aa_stopping_rate",
        "alpha_spent", "boundaries", "crossing_probabilities", "outcome_matrix",
        "plot_sequential", "sequential_test", "sequential_verdict")},
    **{name: "monitoring.survival" for name in (
        "RetentionCurve", "SurvivalAnalysis", "SurvivalComparison", "plot_retention",
        "retention_survival")},
})
