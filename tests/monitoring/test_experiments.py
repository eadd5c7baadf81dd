"""A/B assignment and analysis, exploration policies and off-policy estimators, on hand-made
numbers and seeded simulations with known truth."""

import re

import numpy as np
import pytest

from monitoring.abtest import (compare_means, compare_proportions, cuped, sample_ratio_check,
                               sample_size_means, sample_size_proportions)
from monitoring.off_policy import off_policy_value
from serving.online.experiments import Arm, Assigner, Experiment, ModelTarget, Route
from serving.online.exploration import BetaPosteriors, epsilon_greedy_slot, thompson_slot

USERS = [f"u{i:06d}" for i in range(40_000)]


def test_assignment_is_deterministic_and_splits_as_designed():
    assigner = Assigner([Experiment("ranker-v2", arms=(Arm("control", 1), Arm("treatment", 3)))])
    first = [assigner.assign(u)["ranker-v2"] for u in USERS]
    assert first == [Assigner([Experiment("ranker-v2", arms=(
        Arm("control", 1), Arm("treatment", 3)))]).assign(u)["ranker-v2"] for u in USERS]
    share = first.count("treatment") / len(USERS)
    assert abs(share - 0.75) < 0.01  # 3:1 weights; binomial sd is 0.002.


def test_layers_make_experiments_exclusive_and_holdouts_see_none():
    assigner = Assigner([Experiment("a", traffic=0.5), Experiment("b", traffic=0.5),
                         Experiment("c", layer="ui")], holdout=0.1)
    assigned = [assigner.assign(u) for u in USERS]
    held_out = sum(1 for a in assigned if not a) / len(USERS)
    assert abs(held_out - 0.1) < 0.01
    assert not any("a" in a and "b" in a for a in assigned)  # Same layer: exclusive.
    in_a = sum("a" in a for a in assigned) / len(USERS)
    in_a_and_c = sum("a" in a and "c" in a for a in assigned) / len(USERS)
    assert abs(in_a - 0.45) < 0.01 and abs(in_a_and_c - 0.45) < 0.01  # Layers overlap.


def test_a_new_salt_reshuffles_users():
    before = Assigner([Experiment("x")])
    after = Assigner([Experiment("x", salt="x-v2")])
    same = np.mean([before.assign(u)["x"] == after.assign(u)["x"] for u in USERS])
    assert abs(same - 0.5) < 0.02


@pytest.mark.parametrize("experiments, message", [
    ([Experiment("a", traffic=0.7), Experiment("b", traffic=0.4)],
     "traffic of layer 'default' must be at most 1 in total; received 1.1"),
    ([Experiment("a"), Experiment("a", layer="other")], "experiment names must be unique"),
])
def test_bad_experiment_sets_are_refused(experiments, message):
    with pytest.raises(ValueError, match=message):
        Assigner(experiments)


def test_single_arm_experiments_are_refused():
    with pytest.raises(ValueError, match="arms must be at least two"):
        Experiment("solo", arms=(Arm("control"),))


@pytest.mark.parametrize("text, target", [
    ("ranker_b", ModelTarget("ranker_b")),
    ("ranker@canary", ModelTarget("ranker", label="canary")),
    ("@stable", ModelTarget(label="stable")),
    ("ranker@3", ModelTarget("ranker", version=3)),
    ("@3", ModelTarget(version=3)),
    ("retrieval_exact@blue-green_2", ModelTarget("retrieval_exact", label="blue-green_2")),
])
def test_model_targets_parse_and_print_back(text, target):
    assert ModelTarget.parse(text) == target
    assert str(target.resolved("ranker")) == (text if text[0] != "@" else "ranker" + text)


FORMS = re.escape('must be "name", "name@label", "@label", "name@<version>" or "@<version>"')


@pytest.mark.parametrize("target", ["", "@", "ranker@", "@0", "a@b@c", "rank/er", "@can ary",
                                    "..", 3])
def test_a_bad_model_target_is_refused_naming_the_arm_and_the_role(target):
    with pytest.raises(ValueError, match=rf"^models\['ranker'\] of arm 'canary' {FORMS}.*"
                                         rf"received {re.escape(repr(target))}\.$"):
        Arm("canary", models={"ranker": target})


@pytest.mark.parametrize("arm, message", [
    (dict(models={"rankr": "@canary"}),
     "models of arm 'x' must be keyed by roles ('retrieval', 'ranker', 'recommender'); "
     "received ['rankr']."),
    (dict(policy="random"),
     "policy of arm 'x' must be one of ('models', 'popularity'); received 'random'."),
    (dict(policy="popularity", models={"ranker": "@canary"}),
     "models of arm 'x' must be empty for a popularity arm (it calls no model); received "
     "{'ranker': '@canary'}."),
    (dict(policy="popularity", settings={"diversity": 0.5}),
     "settings of arm 'x' must be empty for a popularity arm (the popularity list is not "
     "re-ranked); received {'diversity': 0.5}."),
])
def test_bad_arms_are_refused(arm, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Arm("x", **arm)


def test_a_model_target_names_a_label_or_a_version_not_both():
    with pytest.raises(ValueError, match="model target must be a label or a version, not both"):
        ModelTarget("ranker", label="canary", version=2)


def test_routes_merge_and_say_whether_the_one_call_bundle_may_serve():
    canary = Arm("canary", models={"ranker": "@canary"}).route
    assert canary == Route(ranker=ModelTarget(label="canary")) and not canary.bundle_usable
    assert Route().bundle_usable  # Nothing routed: the bundle is the service's own models.
    bundled = Route(recommender=ModelTarget(label="canary"))
    assert bundled.bundle_usable and canary.merged(bundled).bundle_usable
    assert canary.merged(bundled).routed() == {"ranker": ModelTarget(label="canary"),
                                               "recommender": ModelTarget(label="canary")}


def test_experiments_with_routed_and_popularity_arms_round_trip():
    experiment = Experiment("canary", arms=(
        Arm("control", models={"ranker": "@stable"}),
        Arm("canary", 2.0, models={"ranker": "ranker@canary", "retrieval": "@7"}),
        Arm("baseline", policy="popularity")))
    again = Experiment.from_json(experiment.to_json())
    assert again == experiment
    assert again.arms[1].route == Route(retrieval=ModelTarget(version=7),
                                        ranker=ModelTarget("ranker", label="canary"))
    assert again.arms[2].policy == "popularity" and again.arms[2].route == Route()


def test_two_proportion_z_test_on_hand_computed_numbers():
    # 300/1000 vs 360/1000: pooled p = 0.33, se = sqrt(0.33 * 0.67 * 2 / 1000) = 0.02103,
    # z = 0.06 / 0.02103 = 2.853, two-sided p = 0.0043.
    result = compare_proportions("engaged", (300, 360), (1000, 1000))
    assert result.difference == pytest.approx(0.06)
    assert result.p_value == pytest.approx(0.0043, abs=1e-4)
    assert result.significant and result.ci_low > 0 and result.ci_low < 0.06 < result.ci_high
    assert result.relative_lift == pytest.approx(0.2)
    with pytest.raises(ValueError, match="0 <= successes <= totals"):
        compare_proportions("engaged", (10, 20), (5, 100))


def test_welch_t_test_on_hand_computed_numbers():
    # Means 2.5 and 3.5, both variances 5/3: se = sqrt(2 * (5/3) / 4) = 0.9129, t = 1.095,
    # Welch's df = 6, two-sided p = 0.315.
    result = compare_means("watch", np.array([1, 2, 3, 4]), np.array([2, 3, 4, 5]))
    assert result.difference == pytest.approx(1.0)
    assert result.p_value == pytest.approx(0.3153, abs=1e-3)
    assert not result.significant and result.ci_low < 0 < result.ci_high


def test_cuped_keeps_the_effect_and_shrinks_the_variance():
    rng = np.random.default_rng(0)
    pre = [rng.gamma(2.0, 600.0, 5000) for _ in range(2)]
    watch = [0.8 * pre[0] + rng.normal(0, 300, 5000),
             0.8 * pre[1] + rng.normal(0, 300, 5000) + 60.0]  # True effect: +60 s.
    raw = compare_means("watch", watch[0], watch[1])
    control, treatment, theta = cuped((watch[0], watch[1]), (pre[0], pre[1]))
    adjusted = compare_means("watch", control, treatment)
    assert theta == pytest.approx(0.8, abs=0.03)
    assert adjusted.difference == pytest.approx(60.0, abs=15.0)
    width = lambda c: c.ci_high - c.ci_low  # noqa: E731
    # Correlation ~0.92, so the CI shrinks to about sqrt(1 - 0.85) = 0.39 of its width.
    assert width(adjusted) < 0.5 * width(raw)
    assert adjusted.significant


def test_sample_ratio_mismatch_alarm():
    assert not sample_ratio_check([5000, 5000], [1, 1]).mismatch
    broken = sample_ratio_check([5200, 4800], [1, 1])  # chi2 = 16, p = 6.3e-5.
    assert broken.mismatch and broken.p_value == pytest.approx(6.33e-5, rel=0.01)
    assert not sample_ratio_check([2520, 7480], [1, 3]).mismatch


def test_sample_sizes_match_the_textbook_formulas():
    # Cohen's h for 0.30 -> 0.32 is 0.04325; n = 2 * ((1.96 + 0.8416) / h)^2 = 8,392 per arm.
    assert sample_size_proportions(0.30, 0.02) == 8393
    # d = 0.1: n = 2 * (2.8016 / 0.1)^2 + t-distribution correction = 1,571 per arm.
    assert sample_size_means(std=100.0, minimum_effect=10.0) == 1571


def test_a_a_tests_reject_at_about_alpha():
    rng = np.random.default_rng(1)
    rejections = 0
    for _ in range(400):
        a, b = rng.binomial(1000, 0.3, size=2)
        rejections += compare_proportions("engaged", (int(a), int(b)), (1000, 1000)).significant
    # Binomial(400, 0.05): mean 20, sd 4.4.
    assert 8 <= rejections <= 34


def test_epsilon_greedy_propensities_match_frequencies():
    rng = np.random.default_rng(2)
    pool = ["f1", "f2", "best"]
    shown = [epsilon_greedy_slot("best", pool, 0.3, rng) for _ in range(20_000)]
    for title in pool:
        frequency = np.mean([s.title_id == title for s in shown])
        propensity = next(s.propensity for s in shown if s.title_id == title)
        assert frequency == pytest.approx(propensity, abs=0.015)
    assert next(s for s in shown if s.title_id == "best").propensity == pytest.approx(0.8)


def test_thompson_propensity_estimates_match_frequencies():
    rng = np.random.default_rng(3)
    posteriors = BetaPosteriors()
    for title, engaged, shown in (("a", 30, 100), ("b", 25, 100), ("c", 1, 3)):
        for i in range(shown):
            posteriors.update(title, i < engaged)
    picks = [thompson_slot(["a", "b", "c"], posteriors, rng, propensity_draws=500)
             for _ in range(2000)]
    for title in "abc":
        frequency = np.mean([p.title_id == title for p in picks])
        mean_propensity = np.mean([p.propensity for p in picks if p.title_id == title])
        assert frequency == pytest.approx(mean_propensity, abs=0.04)


def test_inverse_propensity_estimates_are_unbiased_on_simulated_logs():
    rng = np.random.default_rng(4)
    rates = np.array([0.30, 0.10, 0.20, 0.05, 0.15])
    titles = [f"t{i}" for i in range(5)]
    target = np.array([0.1, 0.4, 0.3, 0.1, 0.1])  # A policy the logs never followed.
    truth = float(target @ rates)  # 0.15
    ips, snips = [], []
    for _ in range(300):
        logs = [epsilon_greedy_slot("t0", titles, 0.5, rng) for _ in range(1000)]
        chosen = np.array([titles.index(s.title_id) for s in logs])
        rewards = rng.random(len(chosen)) < rates[chosen]
        estimate = off_policy_value(rewards, np.array([s.propensity for s in logs]),
                                    target[chosen])
        ips.append(estimate.ips)
        snips.append(estimate.snips)
    # The mean of 300 estimates has a standard error near 0.0007.
    assert np.mean(ips) == pytest.approx(truth, abs=0.003)
    assert np.mean(snips) == pytest.approx(truth, abs=0.003)
    assert np.std(snips) < np.std(ips)
    with pytest.raises(ValueError, match=r"logged_propensities must be in \(0, 1\]"):
        off_policy_value(np.ones(2), np.array([0.5, 0.0]), np.ones(2))


def test_abtest_command_reports_lifts_and_flags_a_broken_split(tmp_path, capsys):
    import json

    from recs_cli.main import main

    rng = np.random.default_rng(5)
    rows = []
    for arm, users, rate, extra in (("control", 3000, 0.30, 0.0), ("treatment", 2600, 0.36, 60)):
        pre = rng.gamma(2.0, 600.0, users)
        for i in range(users):
            rows.append({"user_id": f"{arm}{i}", "arm": arm, "engaged": int(rng.random() < rate),
                         "returned": int(rng.random() < 0.6),
                         "watch_seconds": float(0.8 * pre[i] + rng.normal(0, 300) + extra),
                         "pre_watch_seconds": float(pre[i])})
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["abtest", "--outcomes", str(outcomes), "--experiment", "ranker-v2",
                 "--out", str(tmp_path / "report")])
    printed = capsys.readouterr().out
    assert code == 3 and "SAMPLE RATIO MISMATCH" in printed  # 3000 vs 2600 on a 50/50 design.
    report = json.loads((tmp_path / "report" / "abtest_ranker-v2.json").read_text())
    by_metric = {c["metric"]: c for c in report["comparisons"]}
    assert set(by_metric) == {"engaged", "returned", "watch_seconds", "watch_seconds (CUPED)"}
    assert by_metric["engaged"]["significant"] and by_metric["engaged"]["difference"] > 0.03
    assert by_metric["returned"]["ci_low"] < 0.0 < by_metric["returned"]["ci_high"]  # No effect.
    cuped_width = by_metric["watch_seconds (CUPED)"]["ci_high"] - by_metric[
        "watch_seconds (CUPED)"]["ci_low"]
    raw_width = by_metric["watch_seconds"]["ci_high"] - by_metric["watch_seconds"]["ci_low"]
    assert cuped_width < 0.6 * raw_width
    assert (tmp_path / "report" / "abtest_ranker-v2.png").read_bytes()[:4] == b"\x89PNG"


def test_exploration_keeps_the_list_when_no_other_candidate_is_left():
    from serving.online.exploration import explore
    from serving.online.recommender import Recommendation

    chosen = [Recommendation("a", 0.9, 0.5, "drama"), Recommendation("b", 0.8, 0.4, "drama")]
    # One pool title for two slots: at most one slot can explore; once it is taken, the other
    # slot keeps its title with propensity 1 (the policy had no other choice).
    lists = [explore(chosen, [Recommendation("c", 0.1, 0.1, "comedy")], 1.0,
                     np.random.default_rng(seed)) for seed in range(5)]
    assert all([i.title_id for i in shown] == ["c", "b"] for shown in lists)
    assert all((shown[0].propensity, shown[1].propensity) == (1.0, 1.0) for shown in lists)
    assert [i.propensity for i in explore(chosen, [], 0.3, np.random.default_rng(0))] == [1, 1]
