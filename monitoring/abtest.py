"""A/B test analysis of logged per-user outcomes (statsmodels and SciPy).

    engagement, retention   two-proportion z-test, CI of the difference (Newcombe's score method)
    watch time              Welch's t-test, with CUPED variance reduction by a pre-period covariate
    the split itself        chi-square sample-ratio-mismatch check against the designed weights
    design                  sample size per arm for a minimum detectable effect and power

The experiments and their arms are `serving.online.experiments`' (where users are assigned).
"""

import dataclasses
import re

import numpy as np
from scipy import stats

from recs.config import Config, require
from serving.online.experiments import Experiment

SRM_ALPHA = 0.001
"""p-value below which a split counts as broken (conventional for SRM checks)."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Treatment against control on one metric."""

    metric: str
    control: float
    treatment: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    alpha: float
    n_control: int
    n_treatment: int

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def relative_lift(self) -> float:
        return self.difference / self.control if self.control else float("nan")


def compare_proportions(metric: str, successes: tuple[int, int], totals: tuple[int, int],
                        alpha: float = 0.05) -> Comparison:
    """Two-proportion z-test (pooled variance) of treatment against control.

    Args:
        successes: (control, treatment) counts, e.g. engaged sessions or returning users.
        totals: (control, treatment) sample sizes.

    Raises:
        ValueError: a total is zero or a count exceeds its total.
    """
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    for count, total in zip(successes, totals):
        require(total > 0 and 0 <= count <= total, "successes/totals",
                "0 <= successes <= totals and totals > 0", (successes, totals))
    _, p_value = proportions_ztest([successes[1], successes[0]], [totals[1], totals[0]])
    low, high = confint_proportions_2indep(successes[1], totals[1], successes[0], totals[0],
                                           method="newcomb", alpha=alpha)
    control, treatment = successes[0] / totals[0], successes[1] / totals[1]
    return Comparison(metric, control, treatment, treatment - control, float(low),
                      float(high), float(np.nan_to_num(p_value, nan=1.0)), alpha,
                      totals[0], totals[1])


def compare_means(metric: str, control: np.ndarray, treatment: np.ndarray,
                  alpha: float = 0.05) -> Comparison:
    """Welch's t-test (unequal variances) of treatment's mean against control's.

    Raises:
        ValueError: an arm has fewer than two observations.
    """
    control, treatment = np.asarray(control, float), np.asarray(treatment, float)
    require(len(control) >= 2 and len(treatment) >= 2, "arms", "at least two observations each",
            (len(control), len(treatment)))
    result = stats.ttest_ind(treatment, control, equal_var=False)
    low, high = result.confidence_interval(confidence_level=1 - alpha)
    return Comparison(metric, float(control.mean()), float(treatment.mean()),
                      float(treatment.mean() - control.mean()), float(low), float(high),
                      float(result.pvalue), alpha, len(control), len(treatment))


def cuped(values: tuple[np.ndarray, np.ndarray], covariates: tuple[np.ndarray, np.ndarray]
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """CUPED: subtracts theta * (covariate - its mean) from each value, with theta fitted on
    both arms pooled, so the arms' difference is unbiased and its variance shrinks by the
    squared correlation between metric and covariate.

    Args:
        values: (control, treatment) in-experiment metric, e.g. watch time.
        covariates: the same users' pre-experiment metric.

    Returns:
        (adjusted control, adjusted treatment, theta).

    Raises:
        ValueError: values and covariates differ in length, or the covariate is constant.
    """
    for value, covariate in zip(values, covariates):
        require(len(value) == len(covariate), "covariates", "one per value",
                (len(value), len(covariate)))
    y = np.concatenate(values).astype(float)
    x = np.concatenate(covariates).astype(float)
    require(x.var() > 0, "covariates", "not constant", float(x.var()))
    theta = float(np.cov(y, x, ddof=1)[0, 1] / x.var(ddof=1))
    mean = x.mean()
    return (np.asarray(values[0], float) - theta * (np.asarray(covariates[0], float) - mean),
            np.asarray(values[1], float) - theta * (np.asarray(covariates[1], float) - mean),
            theta)


@dataclasses.dataclass(frozen=True)
class SampleRatio:
    observed: tuple[int, ...]
    expected_share: tuple[float, ...]
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA


def sample_ratio_check(counts: list[int], weights: list[float]) -> SampleRatio:
    """Chi-square goodness of fit of the arms' user counts to the designed split.

    Raises:
        ValueError: counts and weights differ in length, or no users at all.
    """
    require(len(counts) == len(weights) >= 2, "counts/weights", "equal lengths >= 2",
            (counts, weights))
    total = sum(counts)
    require(total > 0, "counts", "> 0 in total", counts)
    shares = np.asarray(weights, float) / np.sum(weights)
    _, p_value = stats.chisquare(counts, f_exp=shares * total)
    return SampleRatio(tuple(counts), tuple(float(s) for s in shares), float(p_value))


def sample_size_proportions(baseline: float, minimum_effect: float, alpha: float = 0.05,
                            power: float = 0.8) -> int:
    """Users per arm to detect an absolute change `minimum_effect` of a rate `baseline`
    (two-sided z-test, equal arms)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    require(0 < baseline < 1 and 0 < baseline + minimum_effect < 1 and minimum_effect != 0,
            "baseline/minimum_effect", "rates inside (0, 1) that differ", (baseline,
                                                                           minimum_effect))
    effect = proportion_effectsize(baseline + minimum_effect, baseline)
    return int(np.ceil(NormalIndPower().solve_power(abs(effect), alpha=alpha, power=power)))


def sample_size_means(std: float, minimum_effect: float, alpha: float = 0.05,
                      power: float = 0.8) -> int:
    """Users per arm to detect a change `minimum_effect` of a mean with standard deviation
    `std` (two-sided t-test, equal arms)."""
    from statsmodels.stats.power import TTestIndPower

    require(std > 0 and minimum_effect != 0, "std/minimum_effect", "std > 0, effect != 0",
            (std, minimum_effect))
    return int(np.ceil(TTestIndPower().solve_power(abs(minimum_effect) / std, alpha=alpha,
                                                   power=power)))


BINARY_METRICS = ("engaged", "returned", "renewed")
"""Per-user 0/1 outcomes compared with the two-proportion z-test; a user whose value is None
(e.g. no renewal decision within the window) is left out of that metric only."""
CONTINUOUS_METRIC = "watch_seconds"
COVARIATE = "pre_watch_seconds"
"""Optional per-user pre-experiment watch time; when present, watch time is CUPED-adjusted."""
SURVIVAL_METRIC = r"(retention|renewal)_d[1-9][0-9]*"
"""The names of `monitoring.survival`'s comparisons: retention at a day, renewal at a billing
day."""
SHIP, KEEP, STOP = "ship", "keep", "stop"
"""Rollout verdicts: roll the treatment out to everyone, keep the control (no proven gain
worth the change), or stop the treatment (it hurts, or the split cannot be trusted)."""


@dataclasses.dataclass(frozen=True)
class Analysis:
    """One experiment's result: the split check and one comparison per metric."""

    experiment: str
    arms: tuple[str, str]
    sample_ratio: SampleRatio
    comparisons: list[Comparison]

    def comparison(self, metric: str) -> Comparison:
        """The comparison of `metric`.

        Raises:
            ValueError: the analysis has no such metric.
        """
        for comparison in self.comparisons:
            if comparison.metric == metric:
                return comparison
        raise ValueError(f"metric must be one of the analysed metrics "
                         f"{[c.metric for c in self.comparisons]}; received {metric!r}.")

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "arms": list(self.arms),
                "sample_ratio": {**dataclasses.asdict(self.sample_ratio),
                                 "mismatch": self.sample_ratio.mismatch},
                "comparisons": [{**dataclasses.asdict(c), "significant": c.significant,
                                 "relative_lift": c.relative_lift} for c in self.comparisons]}

    def table(self) -> str:
        """The split check and the comparisons as a text table."""
        ratio = self.sample_ratio
        lines = [f"{self.experiment}: users {dict(zip(self.arms, ratio.observed))}, "
                 f"sample-ratio p = {ratio.p_value:.3g}"
                 + ("  *** SAMPLE RATIO MISMATCH: do not trust the results ***"
                    if ratio.mismatch else ""),
                 f"  {'metric':<24} {'control':>10} {'treatment':>10} {'lift':>8} "
                 f"{'CI of difference':>24} {'p':>8} {'n':>13}"]
        for c in self.comparisons:
            lines.append(f"  {c.metric:<24} {c.control:>10.4g} {c.treatment:>10.4g} "
                         f"{100 * c.relative_lift:>7.2f}% [{c.ci_low:>10.4g}, "
                         f"{c.ci_high:>10.4g}] {c.p_value:>8.3g} "
                         f"{f'{c.n_control}/{c.n_treatment}':>13}"
                         f"{' *' if c.significant else ''}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class DecisionRule(Config):
    """The pre-registered rollout rule of an experiment.

    Attributes:
        metric: the primary metric the decision rests on (one of `BINARY_METRICS`,
            `CONTINUOUS_METRIC` or its CUPED variant "watch_seconds (CUPED)"), or a survival
            metric of `monitoring.survival` ("retention_d28", "renewal_d30": join its
            `comparisons()` to the analysis's before deciding).
        alpha: its significance level.
        minimum_effect: the smallest absolute difference (treatment - control) worth
            shipping, in the metric's units (a rate for 0/1 metrics, seconds for watch time).
    """

    metric: str = "returned"
    alpha: float = 0.05
    minimum_effect: float = 0.0

    def __post_init__(self) -> None:
        metrics = (*BINARY_METRICS, CONTINUOUS_METRIC, f"{CONTINUOUS_METRIC} (CUPED)")
        require(self.metric in metrics or re.fullmatch(SURVIVAL_METRIC, self.metric) is not None,
                "metric", f"one of {metrics} or a survival metric such as 'retention_d28' or "
                "'renewal_d30'", self.metric)
        require(0.0 < self.alpha < 1.0, "alpha", "in (0, 1)", self.alpha)
        require(self.minimum_effect >= 0.0, "minimum_effect", ">= 0", self.minimum_effect)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the rule says about an experiment, and why."""

    action: str
    reason: str
    rule: DecisionRule

    def to_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "rule": self.rule.to_dict()}


def decide(analysis: Analysis, rule: DecisionRule) -> Verdict:
    """Applies the pre-registered rule: stop on a sample-ratio mismatch (the split is broken,
    no metric can be trusted) or on a significant loss; ship on a significant gain of at
    least `minimum_effect`; otherwise keep the control.

    Raises:
        ValueError: the analysis lacks the rule's metric.
    """
    if analysis.sample_ratio.mismatch:
        return Verdict(STOP, f"sample ratio mismatch (p = {analysis.sample_ratio.p_value:.3g} "
                       f"< {SRM_ALPHA}): fix the assignment and rerun; no result is trusted",
                       rule)
    c = analysis.comparison(rule.metric)
    significant = c.p_value < rule.alpha  # The rule's level, whatever the analysis used.
    summary = (f"{rule.metric}: {c.treatment:.4g} vs {c.control:.4g}, difference "
               f"{c.difference:+.4g}, p = {c.p_value:.3g} (alpha {rule.alpha})")
    if significant and c.difference < 0:
        return Verdict(STOP, f"{summary}: a significant loss", rule)
    if significant and c.difference >= rule.minimum_effect:
        return Verdict(SHIP, f"{summary}: a significant gain of at least the minimum effect "
                       f"{rule.minimum_effect:g}", rule)
    if significant:
        return Verdict(KEEP, f"{summary}: significant, but below the minimum effect "
                       f"{rule.minimum_effect:g}", rule)
    return Verdict(KEEP, f"{summary}: not significant", rule)


def analyze(experiment: Experiment, rows: list[dict], alpha: float = 0.05) -> Analysis:
    """Compares the first two arms of `experiment` on per-user outcome rows.

    Args:
        rows: one per user: {"arm", "engaged", "returned", "renewed", "watch_seconds"} and
            optionally "pre_watch_seconds"; a metric is compared on the rows that hold a
            value for it (absent or None elsewhere), when each arm has one.
        alpha: significance level.

    Raises:
        ValueError: a row names an arm the experiment does not have, or an arm is empty.
    """
    names = [arm.name for arm in experiment.arms]
    unknown = sorted({row["arm"] for row in rows} - set(names))
    require(not unknown, "rows' arms", f"among {names}", unknown)
    by_arm = {name: [row for row in rows if row["arm"] == name] for name in names}
    counts = [len(by_arm[name]) for name in names]
    ratio = sample_ratio_check(counts, [arm.weight for arm in experiment.arms])
    control, treatment = by_arm[names[0]], by_arm[names[1]]
    require(bool(control) and bool(treatment), "arms", "non-empty", counts[:2])

    def having(arm_rows: list[dict], *metrics: str) -> list[dict]:
        return [r for r in arm_rows if all(r.get(m) is not None for m in metrics)]

    comparisons = []
    for metric in BINARY_METRICS:
        known = having(control, metric), having(treatment, metric)
        if all(known):
            comparisons.append(compare_proportions(
                metric, (sum(int(r[metric]) for r in known[0]),
                         sum(int(r[metric]) for r in known[1])),
                (len(known[0]), len(known[1])), alpha))
    known = having(control, CONTINUOUS_METRIC), having(treatment, CONTINUOUS_METRIC)
    if all(len(arm) >= 2 for arm in known):
        values = tuple(np.array([r[CONTINUOUS_METRIC] for r in arm], float) for arm in known)
        comparisons.append(compare_means(CONTINUOUS_METRIC, *values, alpha=alpha))
        paired = having(control, CONTINUOUS_METRIC, COVARIATE), having(
            treatment, CONTINUOUS_METRIC, COVARIATE)
        if all(len(arm) >= 2 for arm in paired):
            adjusted_control, adjusted_treatment, _ = cuped(
                tuple(np.array([r[CONTINUOUS_METRIC] for r in arm], float) for arm in paired),
                tuple(np.array([r[COVARIATE] for r in arm], float) for arm in paired))
            comparisons.append(compare_means(f"{CONTINUOUS_METRIC} (CUPED)", adjusted_control,
                                             adjusted_treatment, alpha))
    return Analysis(experiment.name, (names[0], names[1]), ratio, comparisons)


def run_abtest(outcomes_path: str, experiment_name: str, weights: str, out_dir: str,
               alpha: float = 0.05, rule: DecisionRule | None = None
               ) -> tuple[Analysis, Verdict]:
    """`recs abtest`: analyzes per-user outcome rows (JSON lines, e.g. from `recs outcomes`),
    applies the pre-registered decision rule, and writes `abtest_<name>.json` (the analysis
    and its verdict) and `abtest_<name>.png` to `out_dir`.

    Args:
        outcomes_path: one JSON object per user (see `analyze`).
        experiment_name: the experiment.
        weights: the designed split, control first, e.g. "control=1,treatment=1".
        out_dir: where the report and the plot go.
        alpha: the significance level of the intervals.
        rule: the rollout rule; default: `DecisionRule(alpha=alpha)` (7-day return).

    Raises:
        ValueError: a malformed `weights`, outcome rows `analyze` refuses, or a rule whose
            metric the rows do not hold.
    """
    import json
    import pathlib

    from recs.data.catalogue import read_jsonl
    from recs.plots import plot_experiment
    from serving.online.experiments import Arm

    arms = []
    for part in weights.split(","):
        name, _, weight = part.partition("=")
        try:
            arms.append(Arm(name.strip(), float(weight or 1.0)))
        except ValueError as error:
            raise ValueError(f"weights must be name=weight pairs such as "
                             f"'control=1,treatment=1'; received {weights!r} ({error}).") from error
    analysis = analyze(Experiment(experiment_name, arms=tuple(arms)),
                       read_jsonl(outcomes_path), alpha)
    verdict = decide(analysis, rule or DecisionRule(alpha=alpha))
    report = {**analysis.to_dict(), "verdict": verdict.to_dict()}
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"abtest_{experiment_name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_experiment(report["comparisons"], f"{experiment_name}: {analysis.arms[1]} vs "
                    f"{analysis.arms[0]}", str(out / f"abtest_{experiment_name}.png"))
    return analysis, verdict
