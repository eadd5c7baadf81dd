"""The rollout verdict (ship, keep, stop) and per-metric missing values in the analysis."""

import json

import pytest

from monitoring.abtest import (KEEP, SHIP, STOP, Analysis, Comparison, DecisionRule, analyze,
                               decide, run_abtest, sample_ratio_check)
from serving.online.experiments import Experiment


def _analysis(difference: float, p_value: float, counts=(1000, 1000)) -> Analysis:
    comparison = Comparison("returned", 0.5, 0.5 + difference, difference, difference - 0.01,
                            difference + 0.01, p_value, 0.05, *counts)
    return Analysis("exp", ("control", "treatment"), sample_ratio_check(list(counts), [1, 1]),
                    [comparison])


def test_a_significant_gain_of_the_minimum_effect_ships():
    verdict = decide(_analysis(0.03, 0.001), DecisionRule("returned", 0.05, 0.02))
    assert verdict.action == SHIP and "significant gain" in verdict.reason


def test_a_significant_gain_below_the_minimum_effect_keeps_the_control():
    verdict = decide(_analysis(0.01, 0.001), DecisionRule("returned", 0.05, 0.02))
    assert verdict.action == KEEP and "below the minimum effect" in verdict.reason


def test_no_significant_difference_keeps_the_control():
    # p = 0.03 is significant at 0.05 but not at the pre-registered 0.01.
    assert decide(_analysis(0.03, 0.03), DecisionRule("returned", 0.05)).action == SHIP
    verdict = decide(_analysis(0.03, 0.03), DecisionRule("returned", 0.01))
    assert verdict.action == KEEP and "not significant" in verdict.reason


def test_a_significant_loss_stops():
    assert decide(_analysis(-0.03, 0.001), DecisionRule()).action == STOP


def test_a_broken_split_stops_whatever_the_metric_says():
    # 1000 against 1200 on a 1:1 design: chi-square p ~ 2e-5 < 0.001.
    verdict = decide(_analysis(0.05, 1e-9, counts=(1000, 1200)), DecisionRule())
    assert verdict.action == STOP and "sample ratio mismatch" in verdict.reason


def test_the_rule_must_name_an_analysed_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        DecisionRule(metric="clicks")
    with pytest.raises(ValueError, match="analysed metrics"):
        decide(_analysis(0.0, 0.5), DecisionRule(metric="renewed"))
    with pytest.raises(ValueError, match="minimum_effect"):
        DecisionRule(minimum_effect=-1.0)


def test_a_metric_is_compared_on_the_users_who_have_it():
    # Renewal is known for 2 of 3 control users and 1 of 3 treatment users; return for all.
    rows = [{"arm": "control", "engaged": 1, "returned": 1, "renewed": 1, "watch_seconds": 10.0},
            {"arm": "control", "engaged": 0, "returned": 0, "renewed": 0, "watch_seconds": 20.0},
            {"arm": "control", "engaged": 1, "returned": 1, "renewed": None,
             "watch_seconds": 30.0},
            {"arm": "treatment", "engaged": 1, "returned": 1, "renewed": 1,
             "watch_seconds": 40.0},
            {"arm": "treatment", "engaged": 1, "returned": 0, "renewed": None,
             "watch_seconds": 50.0},
            {"arm": "treatment", "engaged": 0, "returned": 1, "watch_seconds": 60.0}]
    analysis = analyze(Experiment("exp"), rows)
    renewed = analysis.comparison("renewed")
    assert (renewed.n_control, renewed.n_treatment) == (2, 1)
    assert (renewed.control, renewed.treatment) == (0.5, 1.0)
    returned = analysis.comparison("returned")
    assert (returned.n_control, returned.n_treatment) == (3, 3)
    # No covariate anywhere: no CUPED comparison.
    assert [c.metric for c in analysis.comparisons] == ["engaged", "returned", "renewed",
                                                        "watch_seconds"]


def test_run_abtest_writes_the_verdict(tmp_path):
    rows = ([{"arm": "control", "engaged": 0, "returned": int(i < 300), "watch_seconds": 1.0}
             for i in range(1000)]
            + [{"arm": "treatment", "engaged": 0, "returned": int(i < 400),
                "watch_seconds": 1.0} for i in range(1000)])
    path = tmp_path / "outcomes.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    # Return 0.30 -> 0.40 with 1000 users each: z ~ 4.7, far past alpha; 0.10 >= 0.05.
    verdict = run_abtest(str(path), "exp", "control=1,treatment=1", str(tmp_path / "out"),
                         rule=DecisionRule("returned", 0.05, 0.05)).verdict
    assert verdict.action == SHIP
    written = json.loads((tmp_path / "out" / "abtest_exp.json").read_text())
    assert written["verdict"]["action"] == SHIP
    assert written["verdict"]["rule"] == {"metric": "returned", "alpha": 0.05,
                                          "minimum_effect": 0.05}
