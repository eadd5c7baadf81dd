"""A/B test analysis of logged per-user outcomes (statsmodels and SciPy).

    engagement, retention   two-proportion z-test, CI of the difference (Newcombe's score method)
    watch time              Welch's t-test, with CUPED variance reduction by a pre-period covariate
    the split itself        chi-square sample-ratio-mismatch check against the designed weights
    design                  sample size per arm for a minimum detectable effect and power
    `recs abtest`           `run_abtest`: the fixed-horizon analysis and verdict, Kaplan-Meier
                            retention when the rows carry survival fields
                            (`monitoring.survival`), and with a `SequentialDesign` the daily
                            group-sequential looks (`monitoring.sequential`)

The experiments and their arms are `serving.online.experiments`' (where users are assigned);
the per-user rows are `recs.contract.outcomes`' (written by `recs outcomes`).
"""

import dataclasses
import re
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from recs.config import Config, require
from recs.contract import outcomes as O
from serving.online.experiments import Arm, Experiment

if TYPE_CHECKING:  # Both import this module.
    from monitoring.sequential import AAStoppingRate, SequentialResult
    from monitoring.survival import SurvivalAnalysis

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


BINARY_METRICS = (O.ENGAGED, O.RETURNED, O.RENEWED)
"""Per-user 0/1 outcomes compared with the two-proportion z-test; a user whose value is None
(e.g. no renewal decision within the window) is left out of that metric only."""
CONTINUOUS_METRIC = O.WATCH_SECONDS
COVARIATE = O.PRE_WATCH_SECONDS
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
    unknown = sorted({row[O.ARM] for row in rows} - set(names))
    require(not unknown, "rows' arms", f"among {names}", unknown)
    by_arm = {name: [row for row in rows if row[O.ARM] == name] for name in names}
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


@dataclasses.dataclass(frozen=True)
class SequentialDesign(Config):
    """The pre-registered design of `recs abtest --sequential`.

    Attributes:
        looks: the planned daily looks (the experiment's length in days).
        spending: the alpha-spending function, one of `monitoring.sequential`'s
            `SPENDING_FUNCTIONS` ("obrien_fleming", "pocock").
        aa_splits: re-randomized 50/50 splits of the same users on which to measure the A/A
            stopping rate (`monitoring.sequential.aa_stopping_rate`); 0 = none.
        seed: seeds those splits.
    """

    looks: int
    spending: str = "obrien_fleming"  # monitoring.sequential.OBRIEN_FLEMING (it imports us).
    aa_splits: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        from monitoring.sequential import SPENDING_FUNCTIONS

        require(type(self.looks) is int and self.looks >= 1, "looks",
                "a whole number of daily looks >= 1, e.g. 14", self.looks)
        require(self.spending in SPENDING_FUNCTIONS, "spending", f"one of {SPENDING_FUNCTIONS}",
                self.spending)
        require(type(self.aa_splits) is int and self.aa_splits >= 0, "aa_splits",
                "a whole number >= 0 (0 = no A/A re-splits)", self.aa_splits)


FIXED_HORIZON, SEQUENTIAL = "fixed_horizon", "sequential"
"""`recs abtest`'s modes (`ABTestResult.mode`)."""


@dataclasses.dataclass(frozen=True)
class ABTestResult:
    """What `recs abtest` found, and the files it wrote.

    Attributes:
        mode: `FIXED_HORIZON` or `SEQUENTIAL`.
        analysis: the comparisons, survival metrics (retention_dN, renewal_dN) included when
            the rows carry survival fields; in sequential mode, of the rows as they stood on
            `rows_day`.
        verdict: the pre-registered rule's verdict: `decide`'s, or the sequential test's.
        survival: Kaplan-Meier retention per arm; None when the rows carry no survival fields
            (no subscription decisions) for both arms.
        sequential: the daily looks up to the stop; None in fixed-horizon mode.
        aa: the A/A stopping rate over re-splits; None unless asked for.
        rows_day: sequential mode: the experiment day whose rows `analysis` and `survival`
            read (the stop day, or the last day while the test runs); None otherwise.
        json_path: the report, `abtest_<experiment>.json`.
        plots: what each PNG beside it shows -> its path ("lifts", and "retention",
            "sequential" when there is such a result).
    """

    mode: str
    analysis: Analysis
    verdict: Verdict
    survival: "SurvivalAnalysis | None"
    sequential: "SequentialResult | None"
    aa: "AAStoppingRate | None"
    rows_day: int | None
    json_path: str
    plots: dict[str, str]

    @property
    def split_broken(self) -> bool:
        """The sample-ratio check failed (at any look, in sequential mode)."""
        if self.sequential is not None:
            from monitoring.sequential import SAMPLE_RATIO

            return self.sequential.stopped_on == SAMPLE_RATIO
        return self.analysis.sample_ratio.mismatch

    def to_dict(self) -> dict:
        """The report as JSON: `Analysis.to_dict()`'s keys (experiment, arms, sample_ratio,
        comparisons), then verdict, mode, rows_day, survival, sequential, aa (None when
        absent) and plots (file names beside the JSON)."""
        import pathlib

        return {**self.analysis.to_dict(), "verdict": self.verdict.to_dict(),
                "mode": self.mode, "rows_day": self.rows_day,
                "survival": None if self.survival is None else self.survival.to_dict(),
                "sequential": None if self.sequential is None else self.sequential.to_dict(),
                "aa": None if self.aa is None else self.aa.to_dict(),
                "plots": {name: pathlib.Path(path).name for name, path in self.plots.items()}}

    def text(self) -> str:
        """The primary metric, the comparisons, retention, the looks and the verdict, for
        a terminal."""
        rule = self.verdict.rule
        lines = [f"primary metric (pre-registered): {rule.metric}, alpha {rule.alpha}, "
                 f"minimum effect {rule.minimum_effect:g}; mode: {self.mode}"]
        if self.rows_day is not None:
            lines.append(f"comparisons of the rows as of experiment day {self.rows_day}")
        lines.append(self.analysis.table())
        if self.survival is not None:
            lines += _survival_lines(self.survival)
        if self.sequential is not None:
            lines += _sequential_lines(self.sequential)
        if self.aa is not None:
            lines.append(f"A/A: {self.aa.rate:.1%} of {self.aa.splits} re-splits stopped on a "
                         f"boundary (alpha {self.aa.alpha}); verdicts {self.aa.actions}")
        lines.append(f"verdict: {self.verdict.action.upper()} ({self.verdict.reason})")
        return "\n".join(lines)


def _number(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def _survival_lines(survival: "SurvivalAnalysis") -> list[str]:
    arms = survival.arms
    churned = ", ".join(f"{c.arm} {c.churned} of {c.users}" for c in survival.curves)
    lines = [f"retention (Kaplan-Meier; churned: {churned}), log-rank p = "
             f"{survival.logrank_p_value:.3g}",
             f"  {'metric':<16} {arms[0]:>26} {arms[1]:>26} {'difference [CI]':>30} {'p':>8}"]
    for c in (*survival.retention, *survival.renewal):
        control = _number(c.control, ".3f") + _interval(c.control_ci)
        treatment = _number(c.treatment, ".3f") + _interval(c.treatment_ci)
        difference = ("not identified" if not c.identified else
                      f"{c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}]")
        lines.append(f"  {c.metric:<16} {control:>26} {treatment:>26} {difference:>30} "
                     f"{_number(c.p_value, '.3g'):>8}")
    return lines


def _sequential_lines(result: "SequentialResult") -> list[str]:
    lines = [f"sequential: {result.planned_looks} daily looks, {result.spending} spending, "
             f"{result.metric}",
             f"  {'day':>4} {'n':>13} {'z':>8} {'boundary':>9} {'crossed':>8}"]
    for look in result.looks:
        lines.append(f"  {look.day:>4} {f'{look.n_control}/{look.n_treatment}':>13} "
                     f"{_number(look.z, '.3f'):>8} {_number(look.boundary, '.3f'):>9} "
                     f"{'yes' if look.crossed else '':>8}")
    stop = ("still running" if result.stop_day is None else
            f"stopped on day {result.stop_day} ({result.stopped_on})")
    lines.append(f"  {stop}: {result.verdict.action}")
    return lines


def _arms(weights: str) -> tuple[Arm, ...]:
    arms = []
    for part in weights.split(","):
        name, _, weight = part.partition("=")
        try:
            arms.append(Arm(name.strip(), float(weight or 1.0)))
        except ValueError as error:
            raise ValueError(f"weights must be name=weight pairs such as "
                             f"'control=1,treatment=1'; received {weights!r} ({error}).") from error
    return tuple(arms)


def _survival(rows: list[dict], arms: tuple[str, str], alpha: float
              ) -> "SurvivalAnalysis | None":
    """Kaplan-Meier retention of the rows that carry survival fields, when both arms have
    some."""
    from monitoring.survival import retention_survival

    known = [row for row in rows if row[O.ARM] in arms and O.has_survival(row)]
    if not all(any(row[O.ARM] == arm for row in known) for arm in arms):
        return None
    return retention_survival([row[O.ARM] for row in known],
                              [row[O.DAYS_OBSERVED] for row in known],
                              [row[O.CHURNED] for row in known], arms=arms, alpha=alpha)


def run_abtest(outcomes_path: str, experiment_name: str, weights: str, out_dir: str,
               alpha: float = 0.05, rule: DecisionRule | None = None,
               sequential: SequentialDesign | None = None) -> ABTestResult:
    """`recs abtest`: analyzes per-user outcome rows (JSON lines from `recs outcomes`),
    applies the pre-registered decision rule, and writes `abtest_<name>.json`
    (`ABTestResult.to_dict`) and its plots to `out_dir`: `abtest_<name>.png` (the lifts),
    `abtest_<name>_retention.png` (Kaplan-Meier curves, when the rows carry survival
    fields), `abtest_<name>_sequential.png` (z against the boundary, sequential mode).

    Fixed horizon (`sequential` None): every row once, `decide`'s verdict. Sequential: the
    daily rows (`recs outcomes --daily`), the group-sequential verdict at the first crossed
    boundary (`monitoring.sequential.sequential_verdict`), and the comparisons of the rows as
    they stood on the stop day.

    Args:
        outcomes_path: one JSON object per user (see `analyze`), or per user and day in
            sequential mode (`recs.contract.outcomes.DAILY_FIELDS`).
        experiment_name: the experiment.
        weights: the designed split, control first, e.g. "control=1,treatment=1".
        out_dir: where the report and the plots go.
        alpha: the significance level of the intervals.
        rule: the rollout rule, named before the run; default: `DecisionRule(alpha=alpha)`
            (7-day return). A survival metric ("retention_d28") needs rows with survival
            fields; the sequential mode needs a metric with a sequential test.
        sequential: the sequential design; None for the fixed-horizon test.

    Raises:
        ValueError: a malformed `weights`, outcome rows `analyze` refuses, daily rows without
            a sequential design or plain rows with one, a rule whose metric the rows do not
            hold, or a design the sequential test refuses.
    """
    import json
    import pathlib

    from recs.data.catalogue import read_jsonl
    from recs.plots import plot_experiment

    experiment = Experiment(experiment_name, arms=_arms(weights))
    rule = rule or DecisionRule(alpha=alpha)
    rows = read_jsonl(outcomes_path)
    out = pathlib.Path(out_dir)
    stem = f"abtest_{experiment_name}"
    plots = {"lifts": str(out / f"{stem}.png")}
    result = aa = None
    rows_day = None
    if sequential is None:
        daily = [row for row in rows if O.EXPERIMENT_DAY in row]
        require(not daily, "outcomes", "one row per user for the fixed-horizon test; these "
                f"are daily rows (with {O.EXPERIMENT_DAY}): pass --sequential --looks N, or "
                f"the rows file beside them (without {O.DAILY_SUFFIX})", outcomes_path)
    else:
        from monitoring.sequential import aa_stopping_rate, sequential_verdict

        by_day = O.rows_by_day(rows)
        names = tuple(arm.name for arm in experiment.arms[:2])
        shares = tuple(arm.weight for arm in experiment.arms[:2])
        result = sequential_verdict(by_day, rule, sequential.looks, arms=names,
                                    weights=shares, spending=sequential.spending)
        if sequential.aa_splits:
            aa = aa_stopping_rate(by_day, rule, sequential.looks, splits=sequential.aa_splits,
                                  seed=sequential.seed, arms=names,
                                  spending=sequential.spending)
        rows_day = result.stop_day or len(by_day)
        rows = list(by_day[rows_day - 1])
        plots["sequential"] = str(out / f"{stem}_sequential.png")
    analysis = analyze(experiment, rows, alpha)
    survival = _survival(rows, analysis.arms, alpha)
    if survival is not None:
        analysis = dataclasses.replace(analysis, comparisons=[*analysis.comparisons,
                                                               *survival.comparisons()])
        plots["retention"] = str(out / f"{stem}_retention.png")
    verdict = result.verdict if result is not None else decide(analysis, rule)
    report = ABTestResult(SEQUENTIAL if sequential else FIXED_HORIZON, analysis, verdict,
                          survival, result, aa, rows_day, str(out / f"{stem}.json"), plots)
    out.mkdir(parents=True, exist_ok=True)
    written = report.to_dict()
    pathlib.Path(report.json_path).write_text(json.dumps(written, indent=2) + "\n")
    title = f"{experiment_name}: {analysis.arms[1]} vs {analysis.arms[0]}"
    plot_experiment(written["comparisons"], title, plots["lifts"])
    if survival is not None:
        from monitoring.survival import plot_retention

        plot_retention(survival, title, plots["retention"])
    if result is not None:
        from monitoring.sequential import plot_sequential

        plot_sequential(result, plots["sequential"])
    return report
