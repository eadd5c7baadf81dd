"""Group-sequential A/B decisions: a look every day, stopping when a boundary is crossed.

    design       Lan-DeMets alpha spending (O'Brien-Fleming-type by default, Pocock-type),
                 two-sided and symmetric; each look's boundary is found by numerical
                 integration over the joint normal law of the looks' statistics
    each look    the primary metric of a pre-registered `DecisionRule`, as in the
                 fixed-horizon test: pooled two-proportion z for 0/1 metrics, Welch's z for
                 watch time, CUPED-adjusted (`monitoring.abtest.cuped`) for its CUPED variant
    verdict      at the first look whose |z| reaches its boundary, `decide`'s semantics:
                 stop on a loss, ship on a gain of at least the minimum effect, keep
                 otherwise; keep when the final look never crossed; continue while looks
                 remain; stop on a sample-ratio mismatch at any look
    A/A          the share of re-randomized splits of the same users that stop on a boundary,
                 which a sound design holds at about alpha

Why not spotify-confidence: its versions that accept the stack's pins (TFMA 0.47 needs
ipywidgets < 8, which rules out 3.x and later) import `pkg_resources`, which the locked
setuptools no longer ships, and they pull chartify, bokeh 2 and selenium 3. The boundaries
here are the standard recursive integration (Armitage, McPherson and Rowe 1969; Jennison and
Turnbull 2000, chapter 19) with Lan and DeMets' (1983) spending functions, and reproduce the
published values (K = 5, alpha = 0.05: 4.877, 3.357, 2.680, 2.290, 2.031).

Information. Look k's information fraction is k / looks (calendar time), or the users with a
value at that look over the planned users (both arms) when `planned_users` is given; the
planned final look, or the first to reach the planned users, spends whatever alpha is left.
A look at which the metric has no test (fewer than two users with a value in an arm) or no
new information spends nothing: what it would have spent carries over to the next look.
"""

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

from monitoring.abtest import (BINARY_METRICS, CONTINUOUS_METRIC, COVARIATE, KEEP, SHIP, SRM_ALPHA,
                               STOP, DecisionRule, Verdict, cuped, sample_ratio_check)
from recs.config import require

OBRIEN_FLEMING, POCOCK = "obrien_fleming", "pocock"
SPENDING_FUNCTIONS = (OBRIEN_FLEMING, POCOCK)
CONTINUE = "continue"
"""The verdict while no boundary was crossed and planned looks remain."""
BOUNDARY, SAMPLE_RATIO, FINAL_LOOK, RUNNING = "boundary", "sample_ratio", "final_look", "running"
"""Why a sequential test ended where it did (`SequentialResult.stopped_on`)."""
CUPED_METRIC = f"{CONTINUOUS_METRIC} (CUPED)"

_GRID_STEP = 0.05
"""Grid step of the integration, in standard deviations of the smaller neighbouring increment
of the score: with Simpson's rule, boundaries agree with published tables to 1e-4."""
_SCORE_RANGE = 8.0
"""An unbounded continuation region is integrated over +-8 standard deviations (mass beyond:
< 1e-15)."""


def alpha_spent(fractions: Sequence[float], alpha: float = 0.05,
                spending: str = OBRIEN_FLEMING) -> np.ndarray:
    """Cumulative two-sided type I error spent by each information fraction.

    O'Brien-Fleming-type, per side: 2 - 2 Phi(z_{1 - alpha/4} / sqrt(t)) (Lan and DeMets 1983;
    as gsDesign's `sfLDOF` and R's ldbounds); Pocock-type: alpha ln(1 + (e - 1) t). Both reach
    alpha at t = 1 and stay there beyond.

    Args:
        fractions: `[looks]` information fractions, > 0.
        alpha: the two-sided significance level.
        spending: one of `SPENDING_FUNCTIONS`.

    Returns:
        `[looks]` alpha spent up to each fraction.

    Raises:
        ValueError: an unknown spending function, alpha outside (0, 1) or a fraction <= 0.
    """
    require(spending in SPENDING_FUNCTIONS, "spending", f"one of {SPENDING_FUNCTIONS}",
            spending)
    require(0.0 < alpha < 1.0, "alpha", "in (0, 1)", alpha)
    t = np.minimum(np.asarray(fractions, float), 1.0)
    require(bool(np.all(t > 0)), "fractions", "information fractions > 0", list(fractions))
    if spending == OBRIEN_FLEMING:
        return 4.0 * stats.norm.sf(stats.norm.isf(alpha / 4.0) / np.sqrt(t))
    return alpha * np.log1p((math.e - 1.0) * t)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    t = tuple(float(f) for f in fractions)
    require(len(t) > 0 and all(0.0 < f <= 1.0 for f in t)
            and all(a < b for a, b in zip(t, t[1:])), "fractions",
            "a non-empty, strictly increasing sequence in (0, 1], e.g. (0.2, 0.4, ..., 1.0)",
            list(fractions))
    return t


def _simpson(bound: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """An odd number of points on [-bound, bound] no further apart than `step`, with
    Simpson's weights."""
    n = max(3, int(math.ceil(2.0 * bound / step)) + 1)
    n += 1 - n % 2
    x = np.linspace(-bound, bound, n)
    weights = np.ones(n)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return x, weights * (x[1] - x[0]) / 3.0


def _recursion(fractions: tuple[float, ...], drift: float,
               choose: Callable[[int, Callable[[float], tuple[float, float]]], float]
               ) -> tuple[list[float], list[float], list[float]]:
    """Walks the looks of a Brownian motion observed at `fractions` (the score S_k, with
    S_k ~ N(drift t_k, t_k) and independent increments; Z_k = S_k / sqrt(t_k)).

    At each look, `choose(k, exits)` returns the boundary c_k, where `exits(c)` gives the
    probabilities of first leaving through +c (upper) and -c (lower) at look k, having stayed
    inside every earlier boundary; the density of S_k inside the boundary is then carried on
    to the next look.

    Returns:
        (boundaries, upper exit probabilities, lower exit probabilities), one per look.
    """
    bounds, uppers, lowers = [], [], []
    x = weights = density = None
    for k, t in enumerate(fractions):
        previous = fractions[k - 1] if k else 0.0
        sd, root = math.sqrt(t - previous), math.sqrt(t)
        mean = drift * (t - previous)

        def exits(c: float, x=x, weights=weights, density=density, sd=sd, root=root,
                  mean=mean) -> tuple[float, float]:
            if x is None:
                return (float(stats.norm.sf(c - drift * root)),
                        float(stats.norm.cdf(-c - drift * root)))
            upper = stats.norm.sf((c * root - x - mean) / sd)
            lower = stats.norm.cdf((-c * root - x - mean) / sd)
            mass = weights * density
            return float(mass @ upper), float(mass @ lower)

        c = choose(k, exits)
        upper, lower = exits(c)
        bounds.append(c)
        uppers.append(upper)
        lowers.append(lower)
        if k + 1 == len(fractions):
            break
        step = _GRID_STEP * min(sd, math.sqrt(fractions[k + 1] - t))
        new_x, new_weights = _simpson(min(c, _SCORE_RANGE) * root, step)
        if x is None:
            new_density = stats.norm.pdf((new_x - mean) / sd) / sd
        else:
            new_density = (weights * density) @ stats.norm.pdf(
                (new_x[None, :] - x[:, None] - mean) / sd) / sd
        x, weights, density = new_x, new_weights, new_density
    return bounds, uppers, lowers


@functools.lru_cache(maxsize=256)
def _boundaries(fractions: tuple[float, ...], alpha: float, spending: str
                ) -> tuple[float, ...]:
    targets = alpha_spent(fractions, alpha, spending)
    spent = [0.0]

    def choose(k: int, exits: Callable[[float], tuple[float, float]]) -> float:
        increment = targets[k] - spent[0]
        if increment <= 1e-15:
            return math.inf  # Nothing left to spend here: this look cannot stop the test.
        if k == 0:
            c = float(stats.norm.isf(increment / 2.0))
        else:
            c = optimize.brentq(lambda c: sum(exits(c)) - increment, 0.0, 40.0, xtol=1e-10)
        spent[0] += sum(exits(c))
        return c

    return tuple(_recursion(fractions, 0.0, choose)[0])


def boundaries(fractions: Sequence[float], alpha: float = 0.05,
               spending: str = OBRIEN_FLEMING) -> tuple[float, ...]:
    """Two-sided group-sequential boundaries on the z scale: stop at look k when |Z_k| >= c_k.

    Under no effect, the probability of first crossing at look k is the alpha spent between
    look k - 1 and look k, so the test's overall type I error is `alpha`.

    Args:
        fractions: `[looks]` information fractions of the looks taken, strictly increasing in
            (0, 1]; the last is 1 at the final analysis.
        alpha: the two-sided significance level.
        spending: one of `SPENDING_FUNCTIONS`.

    Returns:
        `[looks]` boundaries c_k (math.inf where nothing is left to spend).

    Raises:
        ValueError: fractions not strictly increasing in (0, 1], an unknown spending function,
            or alpha outside (0, 1).

    Example:
        >>> [round(c, 3) for c in boundaries([0.2, 0.4, 0.6, 0.8, 1.0])]
        [4.877, 3.357, 2.68, 2.29, 2.031]
    """
    alpha_spent([1.0], alpha, spending)  # Validates alpha and spending.
    return _boundaries(_check_fractions(fractions), float(alpha), spending)


def crossing_probabilities(bounds: Sequence[float], fractions: Sequence[float],
                           drift: float = 0.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Probabilities of first crossing each look's boundary, upwards and downwards.

    Args:
        bounds: `[looks]` boundaries c_k > 0 on the z scale.
        fractions: `[looks]` their information fractions.
        drift: the expected z statistic at information fraction 1 (0 = no effect; an effect
            of `delta` with final standard error `se` has drift `delta / se`).

    Returns:
        (`[looks]` P(first exit at look k through +c_k), `[looks]` through -c_k); their total
        is the type I error (drift 0) or the power (drift != 0).

    Raises:
        ValueError: boundaries and fractions differ in length, or a boundary is not > 0.
    """
    t = _check_fractions(fractions)
    require(len(bounds) == len(t) and all(c > 0 for c in bounds), "bounds",
            f"{len(t)} boundaries > 0, one per fraction", list(bounds))
    _, upper, lower = _recursion(t, float(drift), lambda k, exits: float(bounds[k]))
    return tuple(upper), tuple(lower)


@dataclasses.dataclass(frozen=True)
class Look:
    """One daily look at the primary metric.

    Attributes:
        day: the look's day of the experiment (1 = the first day's data).
        n_control, n_treatment: users with a value of the metric in each arm.
        control, treatment: the arms' means (rates for 0/1 metrics); None without a test.
        difference: treatment - control.
        std_error: the standard error of the difference (unpooled).
        z: the test statistic (pooled for proportions, as `compare_proportions`).
        fraction: the information fraction; None when the look spent nothing (no test, or no
            information added since the last look).
        boundary: |z| at or above which the test stops here; None when the look spent nothing.
        ci_low, ci_high: the repeated confidence interval of the difference, difference +-
            boundary x std_error: it covers the true difference at every look at once with
            probability 1 - alpha (Jennison and Turnbull 2000, chapter 9).
        sample_ratio_p: the split check's p-value on the users counted at this look.
    """

    day: int
    n_control: int
    n_treatment: int
    control: float | None = None
    treatment: float | None = None
    difference: float | None = None
    std_error: float | None = None
    z: float | None = None
    fraction: float | None = None
    boundary: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    sample_ratio_p: float = 1.0

    @property
    def crossed(self) -> bool:
        return self.z is not None and self.boundary is not None and abs(self.z) >= self.boundary

    def to_dict(self) -> dict[str, Any]:
        return {**{key: _finite(value) for key, value in dataclasses.asdict(self).items()},
                "crossed": self.crossed}


def _finite(value: Any) -> Any:
    """JSON has no infinity or NaN: such a float is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclasses.dataclass(frozen=True)
class SequentialResult:
    """A group-sequential test of one experiment's primary metric, up to where it stopped.

    Attributes:
        metric: the rule's metric.
        arms: (control, treatment).
        looks: the looks taken, up to and including the one that ended the test.
        stopped_on: `BOUNDARY` (a crossing), `SAMPLE_RATIO` (a broken split), `FINAL_LOOK`
            (the planned end, never crossed) or `RUNNING` (looks remain).
        verdict: ship, keep or stop (`monitoring.abtest`), or `CONTINUE` while running.
        planned_looks: the design's number of daily looks.
        planned_users: the design's users (both arms) when information counts users; None
            when it counts days.
        spending: the alpha-spending function.
    """

    metric: str
    arms: tuple[str, str]
    looks: tuple[Look, ...]
    stopped_on: str
    verdict: Verdict
    planned_looks: int
    planned_users: int | None
    spending: str

    @property
    def stop_day(self) -> int | None:
        """The day the experiment stopped (None while it runs)."""
        return None if self.stopped_on == RUNNING else self.looks[-1].day

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "arms": list(self.arms), "stopped_on": self.stopped_on,
                "stop_day": self.stop_day, "verdict": self.verdict.to_dict(),
                "planned_looks": self.planned_looks, "planned_users": self.planned_users,
                "spending": self.spending, "looks": [look.to_dict() for look in self.looks]}


def _statistic(control: np.ndarray, treatment: np.ndarray, binary: bool
               ) -> tuple[float, float, float, float]:
    """(control mean, treatment mean, z, unpooled standard error of the difference)."""
    m0, m1 = float(control.mean()), float(treatment.mean())
    n0, n1 = len(control), len(treatment)
    if binary:
        std_error = math.sqrt(m0 * (1 - m0) / n0 + m1 * (1 - m1) / n1)
        pooled = (m0 * n0 + m1 * n1) / (n0 + n1)
        test_error = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    else:
        std_error = test_error = math.sqrt(control.var(ddof=1) / n0
                                           + treatment.var(ddof=1) / n1)
    if test_error > 0:
        z = (m1 - m0) / test_error
    else:  # Every value alike in both arms: no evidence either way, unless the arms differ.
        z = 0.0 if m1 == m0 else math.copysign(math.inf, m1 - m0)
    return m0, m1, z, std_error


def _is_binary(metric: str) -> bool:
    """True for a 0/1 metric; raises for one without a sequential test."""
    supported = (*BINARY_METRICS, CONTINUOUS_METRIC, CUPED_METRIC)
    require(metric in supported, "rule.metric", f"a metric with a sequential test, one of "
            f"{supported} (survival metrics are read once, with monitoring.survival)", metric)
    return metric in BINARY_METRICS


def sequential_test(values: np.ndarray, treatment: np.ndarray, rule: DecisionRule,
                    looks: int, *, covariates: np.ndarray | None = None,
                    planned_users: int | None = None,
                    weights: tuple[float, float] = (1.0, 1.0),
                    spending: str = OBRIEN_FLEMING,
                    arms: tuple[str, str] = ("control", "treatment")) -> SequentialResult:
    """Runs the daily looks of a group-sequential test on the rule's metric.

    Args:
        values: `[users, days]` the metric of each user as known at each daily look (0/1
            for `BINARY_METRICS`, seconds for watch time); NaN where the user has no value
            yet (not exposed, or a 7-day return whose horizon has not ended).
        treatment: `[users]` True for the treatment arm.
        rule: the pre-registered rule: its metric, alpha and minimum effect.
        looks: the planned number of daily looks; `values` may hold fewer (a running test).
        covariates: `[users]` pre-period watch time, required for the CUPED metric; NaN where
            unknown (those users are left out).
        planned_users: the design's users, both arms (e.g. twice `sample_size_proportions`);
            None: information is calendar time, day / looks.
        weights: the designed split (control, treatment), for the split check.
        spending: one of `SPENDING_FUNCTIONS`.
        arms: the arms' names, for the report.

    Returns:
        The looks up to the one that ended the test, why it ended, and the verdict.

    Raises:
        ValueError: mismatched shapes, more days than planned looks, a metric without a
            sequential test, CUPED without covariates, or a bad design parameter.
    """
    values = np.asarray(values, float)
    treatment = np.asarray(treatment, bool)
    require(values.ndim == 2 and values.shape[1] >= 1, "values",
            "a [users, days] array with at least one day", values.shape)
    require(treatment.shape == (values.shape[0],), "treatment", f"[{values.shape[0]}] flags, "
            "one per row of values", treatment.shape)
    require(isinstance(looks, int) and looks >= values.shape[1], "looks",
            f"an int >= the {values.shape[1]} days of values", looks)
    require(planned_users is None or (isinstance(planned_users, int) and planned_users > 1),
            "planned_users", "None or an int > 1", planned_users)
    alpha_spent([1.0], rule.alpha, spending)  # Validates the spending function.
    binary = _is_binary(rule.metric)
    cuped_metric = rule.metric == CUPED_METRIC
    if cuped_metric:
        require(covariates is not None and np.shape(covariates) == (values.shape[0],),
                "covariates", f"[{values.shape[0]}] pre-period values for {rule.metric!r}",
                None if covariates is None else np.shape(covariates))
        covariates = np.asarray(covariates, float)

    taken: list[Look] = []
    fractions: list[float] = []
    final = False
    for day in range(1, values.shape[1] + 1):
        final = day == looks
        column = values[:, day - 1]
        known = ~np.isnan(column)
        if cuped_metric:
            known &= ~np.isnan(covariates)
        n0, n1 = int((known & ~treatment).sum()), int((known & treatment).sum())
        ratio = sample_ratio_check([n0, n1], list(weights)).p_value if n0 + n1 else 1.0
        taken.append(Look(day, n0, n1, sample_ratio_p=ratio))
        if ratio < SRM_ALPHA:
            break
        if n0 < 2 or n1 < 2:
            continue
        control, treated = column[known & ~treatment], column[known & treatment]
        if cuped_metric and np.var(covariates[known]) > 0:
            control, treated, _ = cuped((control, treated), (covariates[known & ~treatment],
                                                             covariates[known & treatment]))
        m0, m1, z, std_error = _statistic(control, treated, binary)
        taken[-1] = dataclasses.replace(taken[-1], control=m0, treatment=m1,
                                        difference=m1 - m0, std_error=std_error, z=z)
        fraction = day / looks if planned_users is None else (n0 + n1) / planned_users
        final = final or fraction >= 1.0
        fraction = 1.0 if final else fraction
        if not fractions or fraction > fractions[-1]:
            fractions.append(fraction)
            taken[-1] = dataclasses.replace(taken[-1], fraction=fraction)
        if final:
            break
    # A look's boundary depends only on the looks before it, so one pass over every look
    # taken gives the boundaries the test would have used day by day.
    bounds = iter(boundaries(fractions, rule.alpha, spending) if fractions else ())
    for position, look in enumerate(taken):
        if look.fraction is not None:
            c = next(bounds)
            taken[position] = look = dataclasses.replace(
                look, boundary=c, ci_low=look.difference - c * look.std_error,
                ci_high=look.difference + c * look.std_error)
        if look.crossed:
            del taken[position + 1:]
            break
    last = taken[-1]
    stopped_on = (SAMPLE_RATIO if last.sample_ratio_p < SRM_ALPHA else BOUNDARY if last.crossed
                  else FINAL_LOOK if final else RUNNING)
    tests = sum(look.fraction is not None for look in taken)
    return SequentialResult(rule.metric, arms, tuple(taken), stopped_on,
                            _verdict(last, stopped_on, rule, tests, looks), looks, planned_users,
                            spending)


def _verdict(look: Look, stopped_on: str, rule: DecisionRule, tests: int, looks: int
             ) -> Verdict:
    """`monitoring.abtest.decide`'s semantics at the look that ended the test."""
    if stopped_on == SAMPLE_RATIO:
        return Verdict(STOP, f"day {look.day}: sample ratio mismatch (p = "
                       f"{look.sample_ratio_p:.3g} < {SRM_ALPHA}): fix the assignment and "
                       f"rerun; no result is trusted", rule)
    if look.z is None:
        return Verdict(CONTINUE if stopped_on == RUNNING else KEEP,
                       f"day {look.day}: {rule.metric} has no test yet (users with a value: "
                       f"{look.n_control}/{look.n_treatment})", rule)
    summary = (f"day {look.day} (look {tests}, information {look.fraction or 0:.0%}): "
               f"{rule.metric}: {look.treatment:.4g} vs {look.control:.4g}, difference "
               f"{look.difference:+.4g}, z = {look.z:.3f}, boundary "
               f"{_boundary_text(look.boundary)} (alpha {rule.alpha}, repeated CI "
               f"[{_number(look.ci_low)}, {_number(look.ci_high)}])")
    if stopped_on == BOUNDARY and look.difference < 0:
        return Verdict(STOP, f"{summary}: crossed, a significant loss", rule)
    if stopped_on == BOUNDARY and look.difference >= rule.minimum_effect:
        return Verdict(SHIP, f"{summary}: crossed, a significant gain of at least the minimum "
                       f"effect {rule.minimum_effect:g}", rule)
    if stopped_on == BOUNDARY:
        return Verdict(KEEP, f"{summary}: crossed, but below the minimum effect "
                       f"{rule.minimum_effect:g}", rule)
    if stopped_on == FINAL_LOOK:
        return Verdict(KEEP, f"{summary}: the final look, never crossed", rule)
    return Verdict(CONTINUE, f"{summary}: not crossed, {looks - look.day} of {looks} daily "
                   "looks remain", rule)


def _boundary_text(boundary: float | None) -> str:
    return "none" if boundary is None else f"{boundary:.3f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@dataclasses.dataclass(frozen=True)
class OutcomeMatrix:
    """Daily outcome rows as arrays: what `sequential_test` reads.

    Attributes:
        user_ids: `[users]` in the order of the rows of `values`.
        values: `[users, days]` the metric; NaN where a user has no value that day.
        treatment: `[users]` True for the second arm.
        covariates: `[users]` pre-period watch time (NaN where unknown).
    """

    user_ids: tuple[str, ...]
    values: np.ndarray
    treatment: np.ndarray
    covariates: np.ndarray


def outcome_matrix(rows_by_day: Sequence[Sequence[Mapping[str, Any]]], metric: str,
                   arms: tuple[str, str] = ("control", "treatment")) -> OutcomeMatrix:
    """Aligns daily outcome rows by user.

    Args:
        rows_by_day: `[days]` the outcome rows as they stood at each daily look (e.g.
            `transforms.outcomes` with `end_day` = that day), each {"user_id", "arm",
            the metric, optionally "pre_watch_seconds"}.
        metric: the metric to read (the CUPED variant reads watch time).
        arms: (control, treatment).

    Raises:
        ValueError: no days, a row without a user id, an arm outside `arms`, or a user whose
            arm changes between days.
    """
    require(len(rows_by_day) > 0, "rows_by_day", "at least one day of outcome rows",
            len(rows_by_day))
    column = CONTINUOUS_METRIC if metric == CUPED_METRIC else metric
    index: dict[str, int] = {}
    arm_of: list[str] = []
    cells: list[tuple[int, int, float]] = []
    covariates: dict[int, float] = {}
    for day, rows in enumerate(rows_by_day):
        for row in rows:
            user, arm = row.get("user_id"), row.get("arm")
            require(isinstance(user, str) and bool(user), "rows_by_day",
                    "rows with a 'user_id' string", row)
            require(arm in arms, "rows_by_day", f"rows whose arm is one of {list(arms)}", arm)
            if user not in index:
                index[user] = len(arm_of)
                arm_of.append(arm)
            position = index[user]
            require(arm_of[position] == arm, "rows_by_day",
                    f"one arm per user (user {user!r} was in {arm_of[position]!r})", arm)
            if row.get(column) is not None:
                cells.append((position, day, float(row[column])))
            if row.get(COVARIATE) is not None:
                covariates[position] = float(row[COVARIATE])
    values = np.full((len(arm_of), len(rows_by_day)), np.nan)
    for position, day, value in cells:
        values[position, day] = value
    covariate = np.full(len(arm_of), np.nan)
    for position, value in covariates.items():
        covariate[position] = value
    return OutcomeMatrix(tuple(index), values, np.array([a == arms[1] for a in arm_of], bool),
                         covariate)


def sequential_verdict(rows_by_day: Sequence[Sequence[Mapping[str, Any]]], rule: DecisionRule,
                       looks: int, *, arms: tuple[str, str] = ("control", "treatment"),
                       weights: tuple[float, float] = (1.0, 1.0),
                       planned_users: int | None = None,
                       spending: str = OBRIEN_FLEMING) -> SequentialResult:
    """`recs abtest --sequential`: the daily group-sequential verdict of an experiment.

    Args:
        rows_by_day: `[days]` the per-user outcome rows as they stood at each daily look (see
            `outcome_matrix`); fewer days than `looks` while the experiment runs.
        rule: the pre-registered rule (metric, alpha, minimum effect).
        looks: the planned daily looks.
        arms: (control, treatment), as the rows name them.
        weights: the designed split, for the daily split check.
        planned_users: the design's users, both arms; None for calendar information.
        spending: one of `SPENDING_FUNCTIONS`.

    Returns:
        The looks up to the stop, the stop day and the verdict (ship, keep, stop, continue).

    Raises:
        ValueError: rows `outcome_matrix` refuses, or what `sequential_test` refuses.
    """
    _is_binary(rule.metric)
    matrix = outcome_matrix(rows_by_day, rule.metric, arms)
    return sequential_test(matrix.values, matrix.treatment, rule, looks,
                           covariates=matrix.covariates, planned_users=planned_users,
                           weights=weights, spending=spending, arms=arms)


@dataclasses.dataclass(frozen=True)
class AAStoppingRate:
    """How often a sequential test of the same users split at random stops.

    Attributes:
        splits: re-randomized splits tested.
        alpha: the design's level.
        stopped_on: splits per reason the test ended (`BOUNDARY`, `SAMPLE_RATIO`,
            `FINAL_LOOK`, `RUNNING`).
        actions: splits per verdict.
        stop_days: the day of each boundary stop.
    """

    splits: int
    alpha: float
    stopped_on: dict[str, int]
    actions: dict[str, int]
    stop_days: tuple[int, ...]

    @property
    def rate(self) -> float:
        """Share of splits stopped on a boundary: a sound design holds it at about alpha."""
        return self.stopped_on.get(BOUNDARY, 0) / self.splits

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "stop_days": list(self.stop_days),
                "rate": self.rate}


def aa_stopping_rate(rows_by_day: Sequence[Sequence[Mapping[str, Any]]], rule: DecisionRule,
                     looks: int, *, splits: int = 200, seed: int = 0,
                     arms: tuple[str, str] = ("control", "treatment"),
                     planned_users: int | None = None,
                     spending: str = OBRIEN_FLEMING) -> AAStoppingRate:
    """The A/A stopping rate: the sequential test run on `splits` random 50/50 re-splits of
    the same users (their arms ignored), each a valid A/A test when no arm changed what
    users did (an A/A experiment's users, or one arm's alone).

    Args:
        rows_by_day: `[days]` outcome rows as `sequential_verdict` reads them.
        rule: the pre-registered rule.
        looks: the planned daily looks.
        splits: re-randomizations.
        seed: seeds the splits.
        arms: the arm names the rows use.
        planned_users: as `sequential_verdict`.
        spending: as `sequential_verdict`.

    Raises:
        ValueError: splits < 1, or what `sequential_verdict` refuses.
    """
    require(isinstance(splits, int) and splits >= 1, "splits", "an int >= 1", splits)
    _is_binary(rule.metric)
    matrix = outcome_matrix(rows_by_day, rule.metric, arms)
    generator = np.random.default_rng(seed)
    stopped_on: dict[str, int] = {}
    actions: dict[str, int] = {}
    stop_days = []
    for _ in range(splits):
        result = sequential_test(matrix.values, generator.random(len(matrix.user_ids)) < 0.5,
                                 rule, looks, covariates=matrix.covariates,
                                 planned_users=planned_users, spending=spending)
        stopped_on[result.stopped_on] = stopped_on.get(result.stopped_on, 0) + 1
        actions[result.verdict.action] = actions.get(result.verdict.action, 0) + 1
        if result.stopped_on == BOUNDARY:
            stop_days.append(result.looks[-1].day)
    return AAStoppingRate(splits, rule.alpha, stopped_on, actions, tuple(stop_days))


def draw_sequential(axis: Any, result: dict[str, Any]) -> None:
    """The z statistic of each look against its +-boundary on a matplotlib `axis`, from a
    `SequentialResult.to_dict()` (as results files keep it)."""
    looks = result["looks"]
    tested = [look for look in looks if look["boundary"] is not None]
    days = [look["day"] for look in tested]
    bound = [min(look["boundary"], 8.0) for look in tested]
    axis.plot(days, bound, color="tab:red", linestyle="--", label="boundary")
    axis.plot(days, [-b for b in bound], color="tab:red", linestyle="--")
    axis.plot([look["day"] for look in looks if look["z"] is not None],
              [look["z"] for look in looks if look["z"] is not None], marker="o",
              color="tab:blue", label="z")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xlabel("day")
    axis.set_ylabel(f"z of {result['metric']}")
    axis.set_title(f"{result['arms'][1]} vs {result['arms'][0]}: "
                   f"{result['verdict']['action']} (day {result['stop_day']})")
    axis.legend()
    axis.grid(alpha=0.3)


def plot_sequential(result: SequentialResult, path: str) -> None:
    """Writes the z statistic of each look against its +-boundary to a PNG."""
    from recs.plots import pyplot, save_figure

    figure, axis = pyplot().subplots(figsize=(6, 3.5))
    draw_sequential(axis, result.to_dict())
    save_figure(figure, path)
