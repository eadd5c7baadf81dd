"""The monitor's decision for a span: nothing, alert, or retrain, with the numbers behind it."""

import dataclasses
import json
from collections.abc import Sequence

from monitoring.config import MonitorConfig
from monitoring.drift import DriftMeasurement

NOTHING, ALERT, RETRAIN = "nothing", "alert", "retrain"


@dataclasses.dataclass(frozen=True)
class Signals:
    """What was measured for one span under the served model.

    Attributes:
        span: the span number (day).
        auc: engagement AUC of the served ranker on the span's records; None when it is
            undefined (a span whose records are all engaged, or none is): no AUC rule applies.
        ece: its expected calibration error there.
        baseline_auc: the same model's AUC over its baseline spans; None while it has none.
        drift: TFDV measurements against the training spans.
        unseen_title_share: share of the span's interactions on titles the model never saw.
        served_engagement_rate: engagement rate of recommended titles; None if nothing served.
        baseline_served_engagement_rate: its baseline value.
        spans_since_retrain: spans since the served model was pushed; None if never retrained.
    """

    span: int
    auc: float | None
    ece: float
    baseline_auc: float | None = None
    drift: tuple[DriftMeasurement, ...] = ()
    unseen_title_share: float = 0.0
    served_engagement_rate: float | None = None
    baseline_served_engagement_rate: float | None = None
    spans_since_retrain: int | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    span: int
    action: str
    reasons: tuple[str, ...]
    signals: Signals

    def to_json(self) -> str:
        return json.dumps({"span": self.span, "action": self.action,
                           "reasons": list(self.reasons),
                           "signals": dataclasses.asdict(self.signals)}, sort_keys=True)


def drifted(measurements: Sequence[DriftMeasurement]) -> list[DriftMeasurement]:
    return [m for m in measurements if m.kind == "drift" and m.exceeded]


def decide(signals: Signals, config: MonitorConfig) -> Decision:
    """Applies the thresholds of `config` to a span's signals.

    Retrain when the ranker's AUC is below `min_auc` or has fallen more than `max_auc_drop`
    below its baseline, when `retrain_drifted_features` or more features drifted, or when new
    titles take more than `max_unseen_title_share` of the span. Alert on calibration above
    `max_ece`, on fewer drifted features, or on recommended-title engagement below
    `min_engagement_ratio` of its baseline. A retrain asked for within `cooldown_spans` of the
    last one is held back as an alert.
    """
    retrain, alert = [], []
    if signals.auc is not None and signals.auc < config.min_auc:
        retrain.append(f"auc {signals.auc:.4f} < min_auc {config.min_auc}")
    # Rounded so that a drop equal to the threshold is not pushed over it by float error.
    if signals.auc is not None and signals.baseline_auc is not None and (
            round(signals.baseline_auc - signals.auc, 9) > config.max_auc_drop):
        retrain.append(f"auc {signals.auc:.4f} fell {signals.baseline_auc - signals.auc:.4f} "
                       f"below its baseline {signals.baseline_auc:.4f} (max_auc_drop "
                       f"{config.max_auc_drop})")
    moved = drifted(signals.drift)
    names = ", ".join(f"{m.feature} {m.value:.3f}>{m.threshold}" for m in moved)
    if len(moved) >= config.retrain_drifted_features:
        retrain.append(f"{len(moved)} features drifted: {names}")
    elif len(moved) >= config.alert_drifted_features:
        alert.append(f"{len(moved)} feature drifted: {names}")
    if signals.unseen_title_share > config.max_unseen_title_share:
        retrain.append(f"{signals.unseen_title_share:.1%} of interactions on titles the model "
                       f"never saw (max {config.max_unseen_title_share:.1%})")
    if signals.ece > config.max_ece:
        alert.append(f"ece {signals.ece:.4f} > max_ece {config.max_ece}")
    if (signals.served_engagement_rate is not None
            and signals.baseline_served_engagement_rate
            and round(signals.served_engagement_rate
                      / signals.baseline_served_engagement_rate, 9)
            < config.min_engagement_ratio):
        alert.append(f"recommended-title engagement {signals.served_engagement_rate:.4f} < "
                     f"{config.min_engagement_ratio} x baseline "
                     f"{signals.baseline_served_engagement_rate:.4f}")
    if retrain and signals.spans_since_retrain is not None and (
            signals.spans_since_retrain < config.cooldown_spans):
        alert += [f"retrain held back ({signals.spans_since_retrain} < cooldown_spans "
                  f"{config.cooldown_spans}): {reason}" for reason in retrain]
        retrain = []
    action = RETRAIN if retrain else ALERT if alert else NOTHING
    return Decision(span=signals.span, action=action, reasons=tuple(retrain + alert),
                    signals=signals)
