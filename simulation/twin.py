"""Twin worlds: the same subscribers, with the same random streams, once under each policy.

A closed-loop run (`simulation.loop`) draws each user's randomness from streams keyed by
(seed, day, user, use). Running the loop twice from the same starting state (the same world,
the same profile store), once with every user served by policy A and once by policy B, gives
each user's outcome under both: a twin world, common random numbers. The per-user difference
is the policy's effect on that user; its mean over users is the true average effect, with an
interval far narrower than an A/B test's, as each user's own variation cancels. Two runs
under the same policy give identical outcomes (the determinism the loop's docstring states),
so the paired difference of an A/A twin is exactly zero.

    twin_experiment     the experiment as the service should run it in a twin: the A/B
                        test's name (so the logs and the outcome job read the same), both
                        arms the one policy (so every user gets it)
    paired_differences  per metric: the mean of the per-user differences and its interval
    retained_at         a user's retention at a day mark, as `monitoring.survival` counts it
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from recs.config import require

TWIN_SUFFIX = "_twin"
"""The second arm of a twin experiment is the policy's arm under this suffix."""


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """The true effect of treatment over control on one metric, from a twin world.

    Attributes:
        metric: the metric.
        users: users with a value under both policies.
        control, treatment: the metric's mean over those users under each policy.
        difference: mean of the per-user differences (treatment - control).
        ci_low, ci_high: its interval (t, two-sided, at the given alpha).
        std: standard deviation of the per-user differences.
        identical: users whose value is the same under both policies.
        alpha: the interval's level.
    """

    metric: str
    users: int
    control: float
    treatment: float
    difference: float
    ci_low: float
    ci_high: float
    std: float
    identical: int
    alpha: float

    def covered_by(self, low: float, high: float) -> bool:
        """Whether an interval (e.g. an A/B test's) holds this true difference."""
        return low <= self.difference <= high


def twin_experiment(experiment: Any, arm: str, layer: str = "") -> Any:
    """`experiment` with every user on `arm`: the same name and salt, both arms that arm (the
    second named with `TWIN_SUFFIX`), all of its layer's traffic.

    Args:
        experiment: a `serving.online.experiments.Experiment`.
        arm: the name of one of its arms.
        layer: the layer to run it in ("" keeps the experiment's): a twin run of one policy
            may log it under several experiments' names, one layer each, when their arms
            are the same policy.

    Raises:
        ValueError: the experiment has no such arm.

    Example:
        twin_experiment(Experiment("recs_vs_popularity", arms=(Arm("popularity",
        policy="popularity"), Arm("recs"))), "recs")  # arms recs, recs_twin
    """
    from serving.online.experiments import Experiment

    names = [candidate.name for candidate in experiment.arms]
    require(arm in names, "arm", f"one of the arms of {experiment.name!r}: {names}", arm)
    chosen = experiment.arms[names.index(arm)]
    return Experiment(experiment.name, arms=(chosen, dataclasses.replace(
        chosen, name=f"{arm}{TWIN_SUFFIX}")), traffic=1.0, layer=layer or experiment.layer,
        salt=experiment.salt)


def retained_at(duration: float, churned: bool, day: int) -> int | None:
    """1 when a user was still subscribed after `day` days, 0 when they had churned by
    then, None when observation ended before `day` (censored): Kaplan-Meier's S(day) counts
    a churn on `day` as lost, and a user censored on `day` as retained
    (`monitoring.survival`).

    Example: churned after 5 days -> retained_at(5, True, 7) == 0; censored after 9 days ->
    retained_at(9, False, 7) == 1 and retained_at(9, False, 14) is None.
    """
    if churned and duration <= day:
        return 0
    if duration >= day:
        return 1
    return None


def paired_differences(control: Mapping[str, Mapping[str, Any]],
                       treatment: Mapping[str, Mapping[str, Any]], metrics: Sequence[str],
                       alpha: float = 0.05) -> list[PairedDifference]:
    """Per metric, the mean per-user difference between two twin runs and its interval.

    Args:
        control, treatment: user id -> that user's outcome row under each policy (e.g.
            `transforms.outcomes` rows by `user_id`); a metric is read where it is not None
            in both rows.
        metrics: the row keys to compare.
        alpha: the intervals' level.

    Returns:
        One `PairedDifference` per metric with values for at least two users, in `metrics`'
        order.

    Raises:
        ValueError: no metrics, alpha outside (0, 1), or no user in both runs.

    Example:
        control = {"a": {"x": 1.0}, "b": {"x": 2.0}, "c": {"x": 3.0}}
        treatment = {"a": {"x": 2.0}, "b": {"x": 3.0}, "c": {"x": 4.0}}
        paired_differences(control, treatment, ["x"])[0].difference  # 1.0, interval [1, 1]
    """
    require(len(metrics) > 0, "metrics", "at least one row key", list(metrics))
    require(0.0 < alpha < 1.0, "alpha", "in (0, 1)", alpha)
    users = sorted(set(control) & set(treatment))
    require(bool(users), "control/treatment", "rows of the same users (the twin runs' users); "
            "check both runs simulated the same sample", (len(control), len(treatment)))
    results = []
    for metric in metrics:
        pairs = np.array([(float(control[u][metric]), float(treatment[u][metric]))
                          for u in users if control[u].get(metric) is not None
                          and treatment[u].get(metric) is not None]).reshape(-1, 2)
        if len(pairs) < 2:
            continue
        differences = pairs[:, 1] - pairs[:, 0]
        mean, std = float(differences.mean()), float(differences.std(ddof=1))
        half = float(stats.t.ppf(1 - alpha / 2, len(pairs) - 1)) * std / math.sqrt(len(pairs))
        results.append(PairedDifference(metric, len(pairs), float(pairs[:, 0].mean()),
                                        float(pairs[:, 1].mean()), mean, mean - half,
                                        mean + half, std, int((differences == 0).sum()),
                                        alpha))
    return results
