"""The monitor's thresholds: one typed config, validated where it is written."""

import dataclasses

from recs import features as F
from recs.config import Config, require


@dataclasses.dataclass(frozen=True)
class MonitorConfig(Config):
    """What the monitor watches and where it acts.

    Drift is measured by TensorFlow Data Validation against the training spans' statistics:
    the L-infinity distance between value distributions for categorical features, the
    approximate Jensen-Shannon divergence between histograms for numeric ones.

    Attributes:
        categorical_features: features compared with L-infinity distance.
        numeric_features: features compared with Jensen-Shannon divergence.
        linf_threshold: L-infinity distance above which a categorical feature has drifted.
        js_threshold: Jensen-Shannon divergence above which a numeric feature has drifted.
        alert_drifted_features: drifted features that raise an alert.
        retrain_drifted_features: drifted features that ask for a retrain.
        max_unseen_title_share: share of a span's interactions on titles the served model
            has never seen (a launch) that asks for a retrain.
        min_auc: engagement AUC of the served ranker below which it is retrained.
        max_auc_drop: fall of AUC below the model's baseline (its first monitored spans) that
            asks for a retrain.
        max_ece: expected calibration error above which an alert is raised.
        min_engagement_ratio: engagement rate of recommended titles, as a share of its
            baseline, below which an alert is raised.
        baseline_spans: monitored spans after a push that set the model's baselines.
        cooldown_spans: spans after a retrain during which another retrain is held back (the
            new model needs its own baseline first).
        window_spans: spans of the rolling training window of a retrain.
    """

    categorical_features: tuple[str, ...] = (F.DEVICE_TYPE, F.GENRE, F.COUNTRY,
                                             F.SUBSCRIPTION_TIER, F.TITLE_ID)
    numeric_features: tuple[str, ...] = (F.WATCH_RATIO, F.WATCH_SECONDS, F.AGE, F.HOUR,
                                         F.POPULARITY, F.RELEASE_YEAR)
    linf_threshold: float = 0.1
    js_threshold: float = 0.1
    alert_drifted_features: int = 1
    retrain_drifted_features: int = 2
    max_unseen_title_share: float = 0.05
    min_auc: float = 0.6
    max_auc_drop: float = 0.03
    max_ece: float = 0.05
    min_engagement_ratio: float = 0.9
    baseline_spans: int = 1
    cooldown_spans: int = 1
    window_spans: int = 7

    def __post_init__(self) -> None:
        for name in ("linf_threshold", "js_threshold"):
            require(0.0 < getattr(self, name) <= 1.0, name, "in (0, 1]", getattr(self, name))
        require(0 < self.alert_drifted_features <= self.retrain_drifted_features,
                "alert_drifted_features", "positive and <= retrain_drifted_features",
                (self.alert_drifted_features, self.retrain_drifted_features))
        for name in ("max_unseen_title_share", "min_auc", "max_auc_drop", "max_ece",
                     "min_engagement_ratio"):
            require(0.0 <= getattr(self, name) <= 1.0, name, "in [0, 1]", getattr(self, name))
        for name in ("baseline_spans", "window_spans"):
            require(getattr(self, name) > 0, name, "> 0", getattr(self, name))
        require(self.cooldown_spans >= 0, "cooldown_spans", ">= 0", self.cooldown_spans)
        overlap = set(self.categorical_features) & set(self.numeric_features)
        require(not overlap, "categorical_features", "disjoint from numeric_features",
                sorted(overlap))
