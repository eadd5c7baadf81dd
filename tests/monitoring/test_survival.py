"""Retention as survival: Kaplan-Meier by hand, the log-rank test, renewal per billing cycle."""

import doctest
import json
import math

import numpy as np
import pytest

from monitoring import survival
from monitoring.abtest import SHIP, Analysis, DecisionRule, decide, sample_ratio_check
from monitoring.survival import plot_retention, retention_survival

# Control: churned on days 2, 3, 5; censored on days 3 and 8.
# Treatment: censored on day 1; churned on day 4; censored on days 6, 9, 9.
ARMS = ["control"] * 5 + ["treatment"] * 5
DAYS = [2, 3, 3, 5, 8, 1, 4, 6, 9, 9]
CHURNED = [1, 1, 0, 1, 0, 0, 1, 0, 0, 0]


def test_kaplan_meier_by_hand():
    # Control: day 2, 1 of 5 at risk churns: S = 4/5 = 0.8; day 3, 1 of 4 (the other day-3
    # user is censored): S = 0.8 x 3/4 = 0.6; day 5, 1 of 2: S = 0.3; day 8 censored.
    # Treatment: day 1 censored; day 4, 1 of 4: S = 0.75; then only censoring.
    result = retention_survival(ARMS, DAYS, CHURNED, days=(7, 14))
    control, treatment = result.curves
    assert control.days == (0.0, 2.0, 3.0, 5.0, 8.0)
    assert control.retention == pytest.approx((1.0, 0.8, 0.6, 0.3, 0.3))
    assert control.at_risk == (5, 5, 4, 2, 1)
    assert (control.users, control.churned) == (5, 3)
    assert treatment.retention == pytest.approx((1.0, 1.0, 0.75, 0.75, 0.75))
    d7 = result.retention[0]
    assert (d7.metric, d7.control, d7.treatment) == ("retention_d7", pytest.approx(0.3),
                                                     pytest.approx(0.75))
    # Control's band at day 7 (exponential Greenwood): sum d/(n(n-d)) = 1/20 + 1/12 + 1/2
    # = 0.633333; v = 0.633333 / ln(0.3)^2 = 0.436924; S^exp(+-1.959964 sqrt(v)) =
    # 0.3^3.6530 = 0.012302 and 0.3^0.27375 = 0.719218.
    assert d7.control_ci == pytest.approx((0.012302, 0.719218), abs=1e-6)
    # Greenwood variances: 0.3^2 x 0.633333 = 0.057 and 0.75^2 x 1/12 = 0.046875; the
    # difference 0.45 +- 1.959964 sqrt(0.103875) = 0.45 +- 0.631689; p = 2 (1 - Phi(0.45 /
    # 0.322296 = 1.396232)) = 0.162645.
    assert d7.difference == pytest.approx(0.45)
    assert (d7.ci_low, d7.ci_high) == (pytest.approx(-0.181689, abs=1e-6),
                                       pytest.approx(1.081689, abs=1e-6))
    assert d7.p_value == pytest.approx(0.162645, abs=1e-6)
    assert d7.at_risk == (1, 2) and d7.users == (5, 5)
    # Nobody was observed through day 14 (longest: 8 and 9 days): not identified.
    d14 = result.retention[1]
    assert (d14.control, d14.treatment, d14.difference, d14.identified) == (
        None, None, None, False)
    # Nobody reached the first billing day (30): no renewal either.
    assert result.renewal == () and [c.metric for c in result.comparisons()] == ["retention_d7"]


def test_log_rank_by_hand():
    # A churns on 1, 2, 3; B churns on 2 and 5, censored on 4.
    #   day 1: 6 at risk (3 A), 1 churn (A): E_A = 3/6 = 0.5, V = 1 (3/6)(3/6)(5/5) = 0.25
    #   day 2: 5 at risk (2 A), 2 churns (1 A): E_A = 2 x 2/5 = 0.8, V = 2 (2/5)(3/5)(3/4) = 0.36
    #   day 3: 3 at risk (1 A), 1 churn (A): E_A = 1/3, V = (1/3)(2/3)(2/2) = 0.222222
    #   day 5: 1 at risk (0 A): E_A = 0, V = 0
    # O_A - E_A = 3 - 1.633333 = 1.366667; chi-square = 1.366667^2 / 0.832222 = 2.244326,
    # p = 0.134105 (1 degree of freedom).
    result = retention_survival(["a"] * 3 + ["b"] * 3, [1, 2, 3, 2, 4, 5], [1, 1, 1, 1, 0, 1],
                                arms=("a", "b"), days=(3,))
    assert result.logrank_statistic == pytest.approx(2.244326, abs=1e-6)
    assert result.logrank_p_value == pytest.approx(0.134105, abs=1e-6)


def test_renewal_per_billing_cycle_by_hand():
    # 4-day cycles; billing days 4 and 8 (the longest duration is 9).
    # Control: cycle 1, S(4) / S(0) = 0.6, Greenwood 0.36 x (1/20 + 1/12) = 0.048; cycle 2,
    # S(8) / S(4) = 0.3 / 0.6 = 0.5, Greenwood 0.25 x (1/2) = 0.125.
    # Treatment: cycle 1, 0.75, Greenwood 0.5625 x 1/12 = 0.046875; cycle 2, 0.75 / 0.75 = 1,
    # no churn: variance 0.
    result = retention_survival(ARMS, DAYS, CHURNED, days=(7,), cycle_days=4)
    first, second = result.renewal
    assert (first.metric, first.day, second.day) == ("renewal_d4", 4, 8)
    assert (first.control, first.treatment) == (pytest.approx(0.6), pytest.approx(0.75))
    # Difference 0.15 +- 1.959964 sqrt(0.048 + 0.046875 = 0.094875) = 0.15 +- 0.603704;
    # p = 2 (1 - Phi(0.15 / 0.308018)) = 0.626269.
    assert first.ci_high - first.difference == pytest.approx(0.603704, abs=1e-6)
    assert first.p_value == pytest.approx(0.626269, abs=1e-6)
    # Control's interval 0.6 +- 1.959964 x 0.219089 = [0.170593, 1.029407], clipped to 1.
    assert first.control_ci == pytest.approx((0.170593, 1.0), abs=1e-6)
    assert (second.control, second.treatment) == (pytest.approx(0.5), pytest.approx(1.0))
    assert second.ci_high - second.difference == pytest.approx(
        1.959964 * math.sqrt(0.125), abs=1e-6)
    assert second.at_risk == (1, 2)


def test_a_planted_retention_gain_is_detected_and_can_be_the_primary_metric(tmp_path):
    # Exponential churn at 2% a day against 1% a day, 800 users each, observed 40 days:
    # D28 retention exp(-0.56) = 0.571 against exp(-0.28) = 0.756.
    rng = np.random.default_rng(4)
    hazard = np.repeat([0.02, 0.01], 800)
    churn_day = rng.exponential(1 / hazard)
    observed = np.minimum(churn_day, 40.0)
    arms = ["control"] * 800 + ["treatment"] * 800
    result = retention_survival(arms, observed, (churn_day <= 40).astype(int))
    d28 = result.retention[2]
    assert d28.control == pytest.approx(math.exp(-0.56), abs=0.04)
    assert d28.treatment == pytest.approx(math.exp(-0.28), abs=0.04)
    assert d28.ci_low > 0.1 and result.logrank_p_value < 1e-10
    # The same data split at random: no difference.
    shuffled = rng.permutation(arms)
    null = retention_survival(shuffled, observed, (churn_day <= 40).astype(int))
    assert null.retention[2].ci_low < 0 < null.retention[2].ci_high
    # Pre-registered: retention at D28; its comparison joins the fixed-horizon analysis.
    analysis = Analysis("exp", ("control", "treatment"),
                        sample_ratio_check([800, 800], [1, 1]), result.comparisons())
    verdict = decide(analysis, DecisionRule("retention_d28", 0.05, 0.1))
    assert verdict.action == SHIP and "retention_d28" in verdict.reason
    report = json.loads(json.dumps(result.to_dict()))
    assert report["retention"][2]["significant"] is True
    assert [r["metric"] for r in report["renewal"]] == ["renewal_d30"]
    plot_retention(result, "planted", str(tmp_path / "retention.png"))
    assert (tmp_path / "retention.png").stat().st_size > 1000


def test_the_rule_names_survival_metrics_exactly():
    assert DecisionRule("renewal_d30").metric == "renewal_d30"
    for wrong in ("retention_28", "retention_d0", "retention_d28x"):
        with pytest.raises(ValueError, match="metric must be one of"):
            DecisionRule(wrong)


def test_bad_input_is_refused_with_what_to_fix():
    with pytest.raises(ValueError, match=r"duration must be finite days >= 0.*\{1: -2.0\}"):
        retention_survival(["control", "treatment"], [3, -2], [1, 0])
    with pytest.raises(ValueError, match=r"duration must be finite days >= 0.*\{0: nan\}"):
        retention_survival(["control", "treatment"], [float("nan"), 2], [1, 0])
    with pytest.raises(ValueError, match=r"arm must be one of \['control', 'treatment'\].*"
                                         r"\['contrl'\]"):
        retention_survival(["contrl", "treatment"], [3, 2], [1, 0])
    with pytest.raises(ValueError, match=r"arm must be at least one user in each.*"
                                         r"'treatment': 0"):
        retention_survival(["control", "control"], [3, 2], [1, 0])
    with pytest.raises(ValueError, match=r"churned must be 0/1.*\{1: 2\}"):
        retention_survival(["control", "treatment"], [3, 2], [1, 2])
    with pytest.raises(ValueError, match="duration/churned must be one value per user"):
        retention_survival(["control", "treatment"], [3], [1, 0])
    with pytest.raises(ValueError, match="days must be positive whole days"):
        retention_survival(["control", "treatment"], [3, 2], [1, 0], days=(0,))
    with pytest.raises(ValueError, match="cycle_days must be a positive whole number"):
        retention_survival(["control", "treatment"], [3, 2], [1, 0], cycle_days=0)
    with pytest.raises(ValueError, match="day must be a day both arms observed users"):
        retention_survival(["control", "treatment"], [3, 2], [1, 0], days=(7,)).retention[
            0].comparison()


def test_the_docstring_examples_run():
    assert doctest.testmod(survival).failed == 0
