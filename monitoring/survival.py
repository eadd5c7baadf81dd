"""Retention as survival: Kaplan-Meier curves per arm, retention at day marks, renewal per
billing cycle, and the log-rank test (lifelines).

A subscriber who cancels is gone; one still subscribed when the observation ends is censored:
we know only that they stayed at least that long. Per user the input is the arm, the days
observed (until the churn, or until censoring) and whether they churned. Retention at day d is
the Kaplan-Meier S(d), the share still subscribed after d days (a churn on day d counts as
lost by d).

    curves       KaplanMeierFitter per arm, with its pointwise band (exponential Greenwood,
                 lifelines' default)
    day marks    S(d) per arm with that band, and the difference of the arms with a normal
                 interval from Greenwood's variance, Var S(d) = S(d)^2 sum d_i / (n_i (n_i - d_i))
    renewal      at billing day k L (cycle length L): S(kL) / S((k-1)L), the share of those
                 subscribed at the start of cycle k who are still subscribed after its billing
                 day; its variance is Greenwood's over the cycle's churn times
    overall      the log-rank test of equal survival curves

An estimate at a day no user of an arm reached (all censored earlier) is not identified: it is
None, never the curve's last value carried on.
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from monitoring.abtest import Comparison
from recs.config import require

RETENTION_DAYS = (7, 14, 28)
"""The day marks of retention (D7, D14, D28)."""
CYCLE_DAYS = 30
"""Days between billing days."""


def retention_metric(day: int) -> str:
    """The metric name of retention at `day`, e.g. "retention_d28"."""
    return f"retention_d{day}"


def renewal_metric(day: int) -> str:
    """The metric name of renewal at billing day `day`, e.g. "renewal_d30"."""
    return f"renewal_d{day}"


@dataclasses.dataclass(frozen=True)
class RetentionCurve:
    """One arm's Kaplan-Meier curve: a step function, constant between the days listed.

    Attributes:
        arm: the arm.
        users: its users.
        churned: of those, who churned.
        days: `[steps]` 0 and each distinct day observed.
        retention: `[steps]` S at each of those days.
        ci_low, ci_high: `[steps]` the pointwise band (exponential Greenwood).
        at_risk: `[steps]` users observed through each day (churn or censoring on or after).
    """

    arm: str
    users: int
    churned: int
    days: tuple[float, ...]
    retention: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    at_risk: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class SurvivalComparison:
    """Treatment against control at one day: retention at a day mark, or renewal at a billing
    day. Estimates are None where an arm has no user observed through `day`.

    Attributes:
        metric: e.g. "retention_d28" or "renewal_d30".
        day: the day.
        control, treatment: the arms' estimates.
        control_ci, treatment_ci: their intervals (lifelines' band for retention; Greenwood
            normal intervals, clipped to [0, 1], for renewal).
        difference: treatment - control.
        ci_low, ci_high: its interval (Greenwood variances, normal approximation).
        p_value: of no difference (two-sided z).
        alpha: the level of the intervals.
        at_risk: (control, treatment) users observed through `day`.
        users: (control, treatment) users in each arm.
    """

    metric: str
    day: int
    control: float | None
    treatment: float | None
    control_ci: tuple[float, float] | None
    treatment_ci: tuple[float, float] | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    alpha: float
    at_risk: tuple[int, int]
    users: tuple[int, int]

    @property
    def identified(self) -> bool:
        return self.difference is not None

    def comparison(self) -> Comparison:
        """As a fixed-horizon `Comparison`, for `monitoring.abtest.decide` and its table.

        Raises:
            ValueError: the estimate is not identified (no user observed through the day).
        """
        require(self.identified, "day", f"a day both arms observed users through for "
                f"{self.metric}", {"day": self.day, "at_risk": self.at_risk})
        return Comparison(self.metric, self.control, self.treatment, self.difference,
                          self.ci_low, self.ci_high, self.p_value, self.alpha, *self.users)


@dataclasses.dataclass(frozen=True)
class SurvivalAnalysis:
    """Retention of an experiment's arms as survival.

    Attributes:
        arms: (control, treatment).
        curves: their Kaplan-Meier curves.
        retention: one comparison per day mark.
        renewal: one comparison per billing day within the observed days.
        logrank_statistic, logrank_p_value: the log-rank test of equal curves.
        alpha: the level of every interval.
        cycle_days: the billing cycle.
    """

    arms: tuple[str, str]
    curves: tuple[RetentionCurve, RetentionCurve]
    retention: tuple[SurvivalComparison, ...]
    renewal: tuple[SurvivalComparison, ...]
    logrank_statistic: float
    logrank_p_value: float
    alpha: float
    cycle_days: int

    def comparisons(self) -> list[Comparison]:
        """The identified retention and renewal comparisons, to join an `Analysis`'s."""
        return [c.comparison() for c in (*self.retention, *self.renewal) if c.identified]

    def to_dict(self) -> dict[str, Any]:
        return {"arms": list(self.arms), "alpha": self.alpha, "cycle_days": self.cycle_days,
                "logrank": {"statistic": self.logrank_statistic,
                            "p_value": self.logrank_p_value},
                "curves": [dataclasses.asdict(curve) for curve in self.curves],
                "retention": [_comparison_dict(c) for c in self.retention],
                "renewal": [_comparison_dict(c) for c in self.renewal]}


def _comparison_dict(comparison: SurvivalComparison) -> dict[str, Any]:
    return {**dataclasses.asdict(comparison), "identified": comparison.identified,
            "significant": comparison.identified and comparison.p_value < comparison.alpha}


def _check(arm: Sequence[str], duration: Sequence[float], churned: Sequence[Any],
           arms: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(arm, dtype=object)
    n = len(labels)
    require(len(duration) == n and len(churned) == n, "duration/churned",
            f"one value per user ({n} arms given)", (len(duration), len(churned)))
    require(len(arms) == 2 and arms[0] != arms[1], "arms",
            "two distinct names (control, treatment)", arms)
    unknown = sorted({str(a) for a in labels} - set(arms))
    require(not unknown, "arm", f"one of {list(arms)} for every user; pass the experiment's "
            "arms as `arms`", unknown)
    days = np.asarray(duration, dtype=float)
    bad = np.flatnonzero(~np.isfinite(days) | (days < 0))
    require(bad.size == 0, "duration", "finite days >= 0 (days observed until churn or "
            "censoring); drop or fix these users", {int(i): float(days[i]) for i in bad[:5]})
    flags = np.asarray(churned, dtype=object)
    bad = [i for i, value in enumerate(flags) if value not in (0, 1)]
    require(not bad, "churned", "0/1 or False/True (1 = churned, 0 = censored)",
            {i: flags[i] for i in bad[:5]})
    counts = [int((labels == name).sum()) for name in arms]
    require(all(counts), "arm", f"at least one user in each of {list(arms)}",
            dict(zip(arms, counts)))
    return labels, days, flags.astype(float)


def _greenwood_sum(table: Any, start: float, end: float) -> float:
    """Sum of d_i / (n_i (n_i - d_i)) over churn days in (start, end]; inf when every user
    at risk churned (the curve reaches 0)."""
    days = table.index.to_numpy(float)
    part = table[(days > start) & (days <= end)]
    deaths, at_risk = part["observed"].to_numpy(float), part["at_risk"].to_numpy(float)
    deaths, at_risk = deaths[deaths > 0], at_risk[deaths > 0]
    if np.any(deaths >= at_risk):
        return math.inf
    return float(np.sum(deaths / (at_risk * (at_risk - deaths))))


def _step(values: Any, day: float) -> float:
    """A step function's (index: days) value at `day`."""
    days = values.index.to_numpy(float)
    return float(values.iloc[int(np.searchsorted(days, day, side="right")) - 1])


def _compare(metric: str, day: int, estimates: list[float | None],
             intervals: list[tuple[float, float] | None], variances: list[float],
             at_risk: tuple[int, int], users: tuple[int, int], alpha: float
             ) -> SurvivalComparison:
    if estimates[0] is None or estimates[1] is None:
        return SurvivalComparison(metric, day, estimates[0], estimates[1], intervals[0],
                                  intervals[1], None, None, None, None, alpha, at_risk, users)
    difference = estimates[1] - estimates[0]
    error = math.sqrt(variances[0] + variances[1])
    z = stats.norm.isf(alpha / 2)
    if error > 0:
        p_value = float(2 * stats.norm.sf(abs(difference) / error))
    else:  # Both arms exactly known (no churn yet, or every user churned).
        p_value = 1.0 if difference == 0 else 0.0
    return SurvivalComparison(metric, day, estimates[0], estimates[1], intervals[0],
                              intervals[1], difference, difference - z * error,
                              difference + z * error, p_value, alpha, at_risk, users)


def retention_survival(arm: Sequence[str], duration: Sequence[float],
                       churned: Sequence[Any], arms: tuple[str, str] = ("control", "treatment"),
                       days: Sequence[int] = RETENTION_DAYS, cycle_days: int = CYCLE_DAYS,
                       alpha: float = 0.05) -> SurvivalAnalysis:
    """Kaplan-Meier retention of two arms, compared at day marks and billing days.

    Args:
        arm: `[users]` each user's arm.
        duration: `[users]` days observed: until the churn, or until censoring (still
            subscribed when observation ended).
        churned: `[users]` 1 churned, 0 censored.
        arms: (control, treatment).
        days: the day marks of retention, e.g. (7, 14, 28).
        cycle_days: days between billing days (renewal at cycle_days, 2 cycle_days, ... up to
            the longest duration observed).
        alpha: the level of every interval.

    Returns:
        The curves, retention per day mark, renewal per billing day, and the log-rank test.

    Raises:
        ValueError: lengths that differ, an arm outside `arms` or without users, a duration
            that is negative or not finite, a churn flag other than 0/1, a day mark or cycle
            <= 0, or alpha outside (0, 1).

    Example:
        >>> result = retention_survival(["control"] * 3 + ["treatment"] * 3,
        ...                             [2, 5, 9, 4, 9, 9], [1, 1, 0, 1, 0, 0], days=(7,))
        >>> round(result.retention[0].control, 4), round(result.retention[0].treatment, 4)
        (0.3333, 0.6667)
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    require(0.0 < alpha < 1.0, "alpha", "in (0, 1)", alpha)
    require(len(days) > 0 and all(isinstance(d, int) and d > 0 for d in days), "days",
            "positive whole days such as (7, 14, 28)", days)
    require(isinstance(cycle_days, int) and cycle_days > 0, "cycle_days",
            "a positive whole number of days such as 30", cycle_days)
    labels, durations, flags = _check(arm, duration, churned, arms)
    members = [labels == name for name in arms]
    fits = [KaplanMeierFitter().fit(durations[m], flags[m], label=name, alpha=alpha)
            for name, m in zip(arms, members)]
    users = (int(members[0].sum()), int(members[1].sum()))

    def reached(m: np.ndarray, day: float) -> int:
        return int((durations[m] >= day).sum())

    curves = []
    for name, m, fit in zip(arms, members, fits):
        band = fit.confidence_interval_survival_function_
        timeline = fit.survival_function_.index.to_numpy(float)
        curves.append(RetentionCurve(
            name, int(m.sum()), int(flags[m].sum()), tuple(float(t) for t in timeline),
            tuple(float(s) for s in fit.survival_function_.iloc[:, 0]),
            tuple(float(v) for v in band.iloc[:, 0]), tuple(float(v) for v in band.iloc[:, 1]),
            tuple(reached(m, t) for t in timeline)))

    retention = []
    for day in days:
        estimates, intervals, variances = [], [], []
        for m, fit in zip(members, fits):
            if not reached(m, day):
                estimates.append(None)
                intervals.append(None)
                variances.append(math.nan)
                continue
            survival = _step(fit.survival_function_.iloc[:, 0], day)
            band = fit.confidence_interval_survival_function_
            estimates.append(survival)
            intervals.append((_step(band.iloc[:, 0], day), _step(band.iloc[:, 1], day)))
            greenwood = _greenwood_sum(fit.event_table, -math.inf, day)
            variances.append(0.0 if survival == 0 else survival ** 2 * greenwood)
        retention.append(_compare(retention_metric(day), day, estimates, intervals, variances,
                                  (reached(members[0], day), reached(members[1], day)), users,
                                  alpha))

    renewal = []
    z = stats.norm.isf(alpha / 2)
    for day in range(cycle_days, int(durations.max()) + 1, cycle_days):
        estimates, intervals, variances = [], [], []
        for m, fit in zip(members, fits):
            curve = fit.survival_function_.iloc[:, 0]
            start = _step(curve, day - cycle_days)
            if not reached(m, day) or start == 0:
                estimates.append(None)
                intervals.append(None)
                variances.append(math.nan)
                continue
            rate = _step(curve, day) / start
            greenwood = _greenwood_sum(fit.event_table, day - cycle_days, day)
            variance = 0.0 if rate == 0 else rate ** 2 * greenwood
            estimates.append(rate)
            intervals.append((max(0.0, rate - z * math.sqrt(variance)),
                              min(1.0, rate + z * math.sqrt(variance))))
            variances.append(variance)
        renewal.append(_compare(renewal_metric(day), day, estimates, intervals, variances,
                                (reached(members[0], day), reached(members[1], day)), users,
                                alpha))

    test = logrank_test(durations[members[0]], durations[members[1]], flags[members[0]],
                        flags[members[1]])
    return SurvivalAnalysis(tuple(arms), tuple(curves), tuple(retention), tuple(renewal),
                            float(test.test_statistic), float(test.p_value), alpha, cycle_days)


def draw_retention(axis: Any, survival: dict[str, Any], title: str) -> None:
    """Both arms' Kaplan-Meier curves with their bands on a matplotlib `axis`, from a
    `SurvivalAnalysis.to_dict()` (as results files keep it)."""
    for curve, color in zip(survival["curves"], ("tab:gray", "tab:blue")):
        axis.step(curve["days"], curve["retention"], where="post", color=color,
                  label=f"{curve['arm']} ({curve['users']:,} users)")
        axis.fill_between(curve["days"], curve["ci_low"], curve["ci_high"], step="post",
                          color=color, alpha=0.2)
    for comparison in survival["retention"]:
        axis.axvline(comparison["day"], color="black", linewidth=0.5, linestyle=":")
    axis.set_xlabel("days")
    axis.set_ylabel("still subscribed")
    axis.set_title(f"{title} (log-rank p = {survival['logrank']['p_value']:.3g})")
    axis.legend()
    axis.grid(alpha=0.3)


def plot_retention(analysis: SurvivalAnalysis, title: str, path: str) -> None:
    """Writes both arms' Kaplan-Meier curves with their bands to a PNG."""
    from recs.plots import pyplot, save_figure

    figure, axis = pyplot().subplots(figsize=(6, 3.5))
    draw_retention(axis, analysis.to_dict(), title)
    save_figure(figure, path)
