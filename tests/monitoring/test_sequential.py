"""Group-sequential decisions: boundaries against published tables, the verdict at each look,
and the false stop rate of A/A tests."""

import doctest
import json
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from monitoring import sequential
from monitoring.abtest import (KEEP, SHIP, STOP, DecisionRule, analyze, compare_means, cuped,
                               decide)
from monitoring.sequential import (BOUNDARY, CONTINUE, FINAL_LOOK, POCOCK, RUNNING,
                                   SAMPLE_RATIO, aa_stopping_rate, alpha_spent, boundaries,
                                   crossing_probabilities, outcome_matrix, plot_sequential,
                                   sequential_test, sequential_verdict)
from serving.online.experiments import Arm, Experiment

FIVE = (0.2, 0.4, 0.6, 0.8, 1.0)


def test_obrien_fleming_spending_matches_the_published_boundaries():
    # Lan-DeMets O'Brien-Fleming-type spending, K = 5 equally spaced looks, two-sided 0.05
    # (DeMets and Lan 1994, Table 1; gsDesign sfLDOF; R ldbounds).
    np.testing.assert_allclose(boundaries(FIVE), [4.877, 3.357, 2.680, 2.290, 2.031],
                               atol=1e-3)


def test_pocock_spending_matches_the_published_boundaries():
    # Lan-DeMets Pocock-type spending, K = 5, two-sided 0.05 (same table).
    np.testing.assert_allclose(boundaries(FIVE, spending=POCOCK),
                               [2.438, 2.427, 2.410, 2.397, 2.386], atol=1e-3)


def test_the_classic_designs_spend_exactly_alpha():
    # Jennison and Turnbull (2000), Tables 2.1 and 2.3, K = 5, two-sided 0.05: Pocock's
    # constant 2.413; O'Brien-Fleming's C = 2.040 at the last look, C sqrt(5 / k) before it,
    # i.e. 4.562, 3.226, 2.634, 2.281, 2.040.
    for bounds in ([2.413] * 5, [2.040 * math.sqrt(5 / k) for k in range(1, 6)]):
        upper, lower = crossing_probabilities(bounds, FIVE)
        assert sum(upper) + sum(lower) == pytest.approx(0.05, abs=3e-4)
        np.testing.assert_allclose(upper, lower, rtol=1e-9)  # Symmetric under no effect.


def test_looking_five_times_at_1_96_inflates_the_error_to_0_142():
    # Armitage, McPherson and Rowe (1969); Jennison and Turnbull Table 1.1: 0.142 for K = 5.
    upper, lower = crossing_probabilities([1.959964] * 5, FIVE)
    assert sum(upper) + sum(lower) == pytest.approx(0.142, abs=1e-3)


def test_one_look_is_the_fixed_horizon_test():
    assert boundaries([1.0]) == pytest.approx((1.959964,), abs=1e-6)
    assert boundaries([1.0], spending=POCOCK) == pytest.approx((1.959964,), abs=1e-6)


def test_alpha_spent_by_hand():
    # O'Brien-Fleming-type at t = 0.5: 4 (1 - Phi(2.241403 / sqrt(0.5) = 3.16983)) = 0.0030506.
    # Pocock-type at t = 0.5: 0.05 ln(1 + (e - 1) 0.5) = 0.05 ln(1.859141) = 0.0310057.
    np.testing.assert_allclose(alpha_spent([0.5, 1.0]), [0.0030506, 0.05], atol=1e-7)
    np.testing.assert_allclose(alpha_spent([0.5, 1.0, 1.5], spending=POCOCK),
                               [0.0310057, 0.05, 0.05], atol=1e-7)


def test_power_under_a_planted_drift_is_near_the_fixed_horizon_power():
    # Drift 2.8016 = z_0.975 + z_0.8 gives 80% power to one fixed test; O'Brien-Fleming's five
    # looks cost about one point of it (Jennison and Turnbull Table 2.4: R = 1.028).
    upper, lower = crossing_probabilities(boundaries(FIVE), FIVE, drift=2.8016)
    assert 0.78 < sum(upper) < 0.80 and sum(lower) < 1e-5


def _binary_days(control: list[int], treatment: list[int], days: int = 1) -> tuple:
    """Every user known from day 1, the same 0/1 value each day."""
    values = np.array([control + treatment] * days, float).T
    return values, np.array([False] * len(control) + [True] * len(treatment))


def test_a_single_look_agrees_with_the_fixed_horizon_test_and_verdict():
    # 3/10 against 7/10: pooled rate 0.5, standard error sqrt(0.25 (1/10 + 1/10)) = 0.223607,
    # z = 0.4 / 0.223607 = 1.788854 < 1.959964: the final look, not crossed -> keep.
    values, treated = _binary_days([1] * 3 + [0] * 7, [1] * 7 + [0] * 3)
    result = sequential_test(values, treated, DecisionRule("returned"), 1)
    assert result.looks[0].z == pytest.approx(1.788854, abs=1e-6)
    assert result.looks[0].z == pytest.approx(proportions_ztest([7, 3], [10, 10])[0])
    assert result.looks[0].boundary == pytest.approx(1.959964, abs=1e-6)
    assert (result.stopped_on, result.stop_day, result.verdict.action) == (FINAL_LOOK, 1, KEEP)
    # 2/10 against 8/10: z = 0.6 / 0.223607 = 2.683282 >= 1.96 -> ship, as decide() says.
    values, treated = _binary_days([1] * 2 + [0] * 8, [1] * 8 + [0] * 2)
    result = sequential_test(values, treated, DecisionRule("returned"), 1)
    assert result.looks[0].z == pytest.approx(2.683282, abs=1e-6)
    rows = [{"arm": "treatment" if t else "control", "returned": int(v)}
            for v, t in zip(values[:, 0], treated)]
    fixed = decide(analyze(Experiment("e", arms=(Arm("control"), Arm("treatment"))), rows),
                   DecisionRule("returned"))
    assert result.verdict.action == fixed.action == SHIP
    assert (result.stopped_on, result.stop_day) == (BOUNDARY, 1)


def test_the_stop_day_and_verdict_of_a_planted_gain_a_loss_and_a_small_gain():
    # 100 users per arm, 5 daily looks; day 1: 20/100 against 60/100 returned: pooled rate
    # 0.4, standard error sqrt(0.24 x 0.02) = 0.069282, z = 0.4 / 0.069282 = 5.7735 >= 4.877.
    values, treated = _binary_days([1] * 20 + [0] * 80, [1] * 60 + [0] * 40, days=5)
    result = sequential_test(values, treated, DecisionRule("returned"), 5)
    assert result.looks[0].z == pytest.approx(5.773503, abs=1e-5)
    assert (result.stopped_on, result.stop_day, result.verdict.action) == (BOUNDARY, 1, SHIP)
    assert len(result.looks) == 1  # Nothing is looked at after the stop.
    # The repeated CI: 0.4 +- 4.877 x sqrt(0.2 x 0.8 / 100 + 0.6 x 0.4 / 100) = 0.4 +- 0.3084.
    assert result.looks[0].ci_low == pytest.approx(0.4 - 4.8769 * math.sqrt(0.004), abs=1e-3)
    flipped = sequential_test(values, ~treated, DecisionRule("returned"), 5)
    assert (flipped.verdict.action, flipped.stop_day) == (STOP, 1)
    # The same gain of 0.4 against a minimum effect of 0.5: significant, not worth shipping.
    small = sequential_test(values, treated, DecisionRule("returned", 0.05, 0.5), 5)
    assert small.verdict.action == KEEP and "below the minimum effect" in small.verdict.reason
    # 3/10 against 8/10: pooled rate 0.55, standard error sqrt(0.2475 x 0.2) = 0.222486,
    # z = 0.5 / 0.222486 = 2.2473, below 2.290 (day 4), above 2.031 (day 5).
    values, treated = _binary_days([1] * 3 + [0] * 7, [1] * 8 + [0] * 2, days=5)
    result = sequential_test(values, treated, DecisionRule("returned"), 5)
    assert result.looks[4].z == pytest.approx(2.247333, abs=1e-6)
    assert [look.crossed for look in result.looks] == [False] * 4 + [True]
    assert (result.stop_day, result.verdict.action) == (5, SHIP)
    running = sequential_test(values[:, :3], treated, DecisionRule("returned"), 5)
    assert (running.stopped_on, running.stop_day, running.verdict.action) == (
        RUNNING, None, CONTINUE)
    assert "2 of 5 daily looks remain" in running.verdict.reason


def test_days_without_a_test_spend_nothing_and_carry_their_alpha_over():
    # A 7-day return is unknown on days 1-2 of a 5-look design: the first test is on day 3
    # (fraction 0.6), a first look spending alpha_spent(0.6) = 4 (1 - Phi(2.241403 /
    # sqrt(0.6))) = 0.00762 at once: boundary Phi^-1(1 - 0.00762 / 2) = 2.668.
    values, treated = _binary_days([1] * 2 + [0] * 8, [1] * 8 + [0] * 2, days=5)
    values[:, :2] = np.nan
    result = sequential_test(values, treated, DecisionRule("returned"), 5)
    assert [look.boundary for look in result.looks[:2]] == [None, None]
    expected = stats.norm.isf(alpha_spent([0.6])[0] / 2)
    assert result.looks[2].boundary == pytest.approx(expected, rel=1e-9)
    assert result.looks[2].boundary < boundaries(FIVE)[2]  # Days 1-2's alpha carried over.


def test_information_by_users_accrued_ends_at_the_planned_users():
    # Users join over days (4, 8, 12, 16 per arm); planned 24 users: fractions 8/24, 16/24,
    # then 24/24 = 1 on day 3, the final look (day 4 is never taken).
    values = np.full((32, 4), np.nan)
    treated = np.arange(32) % 2 == 1
    rng = np.random.default_rng(0)
    outcome = (rng.random(32) < 0.5).astype(float)
    for day in range(4):
        values[:8 * (day + 1), day] = outcome[:8 * (day + 1)]
    result = sequential_test(values, treated, DecisionRule("returned"), 10, planned_users=24)
    assert [look.fraction for look in result.looks] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert result.stopped_on in (FINAL_LOOK, BOUNDARY) and result.stop_day <= 3


def test_a_broken_split_stops_at_the_look_that_shows_it():
    # Day 2 counts 100 control against 160 treatment users on a 1:1 design: chi-square
    # (30^2 / 130) x 2 = 13.85, p = 0.0002 < 0.001.
    values = np.ones((260, 3))
    treated = np.arange(260) >= 100
    values[200:, 0] = np.nan  # Day 1: 100 against 100 (z = 0: every user returned).
    result = sequential_test(values, treated, DecisionRule("returned"), 3)
    assert (result.stopped_on, result.stop_day, result.verdict.action) == (SAMPLE_RATIO, 2, STOP)
    assert result.looks[1].sample_ratio_p == pytest.approx(0.000198, rel=0.02)


def test_cuped_looks_use_the_fixed_horizon_adjustment():
    rng = np.random.default_rng(3)
    pre = rng.gamma(2.0, 600.0, 400)
    watch = 0.8 * pre + rng.normal(0.0, 200.0, 400)
    treated = np.arange(400) % 2 == 0
    watch[treated] += 60.0
    rule = DecisionRule("watch_seconds (CUPED)")
    result = sequential_test(watch[:, None], treated, rule, 1, covariates=pre)
    control, treatment, _ = cuped((watch[~treated], watch[treated]), (pre[~treated],
                                                                       pre[treated]))
    fixed = compare_means("watch_seconds (CUPED)", control, treatment)
    # Welch's t statistic is the look's z; its two-sided p is the fixed test's.
    assert result.looks[0].difference == pytest.approx(fixed.difference)
    assert 2 * stats.norm.sf(abs(result.looks[0].z)) == pytest.approx(fixed.p_value, rel=0.02)
    plain = sequential_test(watch[:, None], treated, DecisionRule("watch_seconds"), 1)
    assert result.looks[0].std_error < 0.5 * plain.looks[0].std_error


def _null_false_stop_rate(simulations: int, bounds_kind: str | None = None) -> float:
    """Share of `simulations` A/A experiments (0/1 metric, rate 0.3, 200 new users per arm a
    day, 5 daily looks) stopped on a boundary."""
    rng = np.random.default_rng(11)
    stops = 0
    treated = np.arange(2000) % 2 == 1
    for _ in range(simulations):
        outcome = (rng.random(2000) < 0.3).astype(float)
        values = np.full((2000, 5), np.nan)
        for day in range(5):
            values[:400 * (day + 1), day] = outcome[:400 * (day + 1)]
        result = sequential_test(values, treated, DecisionRule("returned"), 5)
        stops += result.stopped_on == BOUNDARY
    return stops / simulations


def test_the_false_stop_rate_of_null_experiments_is_alpha():
    # 1500 simulations: standard deviation of the rate sqrt(0.05 x 0.95 / 1500) = 0.0056;
    # five naive looks at 1.96 would stop 0.142 of them (see above).
    rate = _null_false_stop_rate(1500)
    assert 0.033 < rate < 0.067


def test_a_planted_effect_is_detected_as_often_as_the_design_says():
    # Rates 0.30 against 0.36 with 1000 users per arm at the end: standard error at the end
    # sqrt(0.3 x 0.7 / 1000 + 0.36 x 0.64 / 1000) = 0.02101, drift 0.06 / 0.02101 = 2.856.
    drift = 0.06 / math.sqrt(0.3 * 0.7 / 1000 + 0.36 * 0.64 / 1000)
    upper, _ = crossing_probabilities(boundaries(FIVE), FIVE, drift=drift)
    rng = np.random.default_rng(5)
    treated = np.arange(2000) % 2 == 1
    detected, days = 0, []
    for _ in range(300):
        outcome = (rng.random(2000) < np.where(treated, 0.36, 0.30)).astype(float)
        values = np.full((2000, 5), np.nan)
        for day in range(5):
            values[:400 * (day + 1), day] = outcome[:400 * (day + 1)]
        result = sequential_test(values, treated, DecisionRule("returned"), 5)
        detected += result.verdict.action == SHIP
        days.append(result.stop_day)
    # Power about 0.80 (sd over 300 runs: 0.023); the ships come before day 5 on average.
    assert detected / 300 == pytest.approx(sum(upper), abs=0.07)
    assert np.mean(days) < 4.6


def _aa_rows(users: int, days: int, seed: int) -> list[list[dict]]:
    """Daily rows of an A/A experiment: users join over the days; a 0/1 `returned` known from
    the day after they join."""
    rng = np.random.default_rng(seed)
    joined = rng.integers(0, days, users)
    returned = (rng.random(users) < 0.4).astype(int)
    return [[{"user_id": f"u{u}", "arm": "control" if u % 2 else "treatment",
              "returned": int(returned[u]) if day > joined[u] else None}
             for u in range(users) if joined[u] <= day] for day in range(days)]


def test_the_aa_stopping_rate_over_resplits_is_near_alpha():
    rows = _aa_rows(3000, 6, seed=2)
    result = aa_stopping_rate(rows, DecisionRule("returned"), 6, splits=400, seed=7)
    # 400 splits: standard deviation of the rate sqrt(0.05 x 0.95 / 400) = 0.011.
    assert 0.015 < result.rate < 0.085
    assert sum(result.stopped_on.values()) == 400 == sum(result.actions.values())
    assert len(result.stop_days) == result.stopped_on.get(BOUNDARY, 0)
    assert all(2 <= day <= 6 for day in result.stop_days)  # Day 1 has no return known.
    again = aa_stopping_rate(rows, DecisionRule("returned"), 6, splits=400, seed=7)
    assert again == result
    json.dumps(result.to_dict())


def test_sequential_verdict_reads_daily_rows(tmp_path):
    # Control 1 of 4 returned, treatment 4 of 4 on day 2 (day 1: nothing known yet).
    day1 = [{"user_id": f"c{i}", "arm": "control", "returned": None} for i in range(4)] + [
        {"user_id": f"t{i}", "arm": "treatment", "returned": None} for i in range(4)]
    day2 = [{**row, "returned": int(row["user_id"] in ("c0", "t0", "t1", "t2", "t3"))}
            for row in day1]
    result = sequential_verdict([day1, day2], DecisionRule("returned"), 2)
    # Pooled rate 5/8, standard error sqrt(0.234375 x 0.5) = 0.342327, z = 0.75 / 0.342327
    # = 2.19089; a first look at the final fraction 1 has boundary 1.96: ship.
    assert result.looks[1].z == pytest.approx(2.190890, abs=1e-6)
    assert (result.stop_day, result.verdict.action) == (2, SHIP)
    report = json.loads(json.dumps(result.to_dict()))
    assert report["looks"][0]["z"] is None and report["looks"][1]["crossed"] is True
    plot_sequential(result, str(tmp_path / "sequential.png"))
    assert (tmp_path / "sequential.png").stat().st_size > 1000
    matrix = outcome_matrix([day1, day2], "returned")
    assert matrix.user_ids[:2] == ("c0", "c1") and matrix.values.shape == (8, 2)


def test_bad_input_is_refused_with_what_to_fix():
    rule = DecisionRule("returned")
    values, treated = _binary_days([1, 0, 1], [0, 1, 1], days=2)
    with pytest.raises(ValueError, match="fractions must be a non-empty, strictly increasing"):
        boundaries([0.5, 0.4, 1.0])
    with pytest.raises(ValueError, match="fractions must be"):
        boundaries([0.5, 1.5])
    with pytest.raises(ValueError, match="spending must be one of"):
        boundaries(FIVE, spending="haybittle")
    with pytest.raises(ValueError, match="bounds must be 5 boundaries"):
        crossing_probabilities([2.0] * 4, FIVE)
    with pytest.raises(ValueError, match="looks must be an int >= the 2 days"):
        sequential_test(values, treated, rule, 1)
    with pytest.raises(ValueError, match=r"treatment must be \[6\] flags"):
        sequential_test(values, treated[:5], rule, 2)
    with pytest.raises(ValueError, match="rule.metric must be a metric with a sequential"):
        sequential_test(values, treated, DecisionRule("retention_d28"), 2)
    with pytest.raises(ValueError, match=r"covariates must be \[6\] pre-period values"):
        sequential_test(values, treated, DecisionRule("watch_seconds (CUPED)"), 2)
    with pytest.raises(ValueError, match="planned_users must be None or an int > 1"):
        sequential_test(values, treated, rule, 2, planned_users=0)
    with pytest.raises(ValueError, match=r"arm is one of \['control', 'treatment'\]"):
        sequential_verdict([[{"user_id": "u", "arm": "b", "returned": 1}]], rule, 1)
    with pytest.raises(ValueError, match="one arm per user"):
        sequential_verdict([[{"user_id": "u", "arm": "control"}],
                            [{"user_id": "u", "arm": "treatment"}]], rule, 2)
    with pytest.raises(ValueError, match="rows with a 'user_id' string"):
        sequential_verdict([[{"arm": "control", "returned": 1}]], rule, 1)
    with pytest.raises(ValueError, match="rows_by_day must be at least one day"):
        sequential_verdict([], rule, 1)
    with pytest.raises(ValueError, match="splits must be an int >= 1"):
        aa_stopping_rate([[{"user_id": "u", "arm": "control"}]], rule, 1, splits=0)


def test_the_docstring_examples_run():
    assert doctest.testmod(sequential).failed == 0
