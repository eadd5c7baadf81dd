"""Twin worlds: paired differences on hand-made rows, and the same tiny world's users run
through the real service once per policy: identical under one policy, paired under two."""

import pytest

# Two runs must match request for request: `make test` runs this file alone on the cores,
# where no slate request can time out in one run and not the other.
pytestmark = pytest.mark.serial

EXPERIMENT = "recs_vs_popularity"


def test_paired_differences_of_hand_made_rows():
    from simulation import paired_differences

    control = {"a": {"x": 1.0, "y": 0}, "b": {"x": 2.0, "y": 1}, "c": {"x": 3.0, "y": None},
               "d": {"x": 4.0, "y": 1}}
    treatment = {"a": {"x": 2.0, "y": 1}, "b": {"x": 4.0, "y": 1}, "c": {"x": 3.0, "y": 0},
                 "e": {"x": 9.0, "y": 1}}
    x, y = paired_differences(control, treatment, ["x", "y"])
    # Users a, b, c in both: differences 1, 2, 0 -> mean 1, sd 1, t(0.975, 2) = 4.303,
    # half-width 4.303 / sqrt(3) = 2.484.
    assert (x.users, x.identical) == (3, 1)
    assert (x.control, x.treatment, x.difference, x.std) == pytest.approx((2.0, 3.0, 1.0, 1.0))
    assert (x.ci_low, x.ci_high) == pytest.approx((1 - 2.4841, 1 + 2.4841), abs=1e-4)
    # y is None for c under control: a and b only, differences 1 and 0.
    assert (y.users, y.difference) == (2, pytest.approx(0.5))
    assert x.covered_by(0.0, 1.5) and not x.covered_by(1.5, 3.0)


def test_paired_differences_refuse_runs_without_common_users():
    from simulation import paired_differences

    with pytest.raises(ValueError, match="control/treatment"):
        paired_differences({"a": {"x": 1}}, {"b": {"x": 1}}, ["x"])
    with pytest.raises(ValueError, match="metrics"):
        paired_differences({"a": {"x": 1}}, {"a": {"x": 1}}, [])
    with pytest.raises(ValueError, match="alpha"):
        paired_differences({"a": {"x": 1}}, {"a": {"x": 1}}, ["x"], alpha=1.0)


def test_retained_at_counts_as_kaplan_meier_does():
    from simulation import retained_at

    assert retained_at(5, True, 7) == 0        # Churned after 5 days: lost by day 7.
    assert retained_at(7, True, 7) == 0        # A churn on the day counts as lost.
    assert retained_at(9, True, 7) == 1        # Churned later.
    assert retained_at(7, False, 7) == 1       # Censored on the day: still there.
    assert retained_at(6, False, 7) is None    # Observation ended before: unknown.


def test_a_twin_experiment_puts_everyone_on_one_arm():
    from serving.online.experiments import Arm, Assigner, Experiment
    from simulation import twin_experiment

    experiment = Experiment(EXPERIMENT, arms=(Arm("popularity", policy="popularity"),
                                              Arm("recs")), traffic=0.4, salt="s")
    twin = twin_experiment(experiment, "popularity")
    assert (twin.name, twin.salt, twin.traffic) == (EXPERIMENT, "s", 1.0)
    assert [(arm.name, arm.policy) for arm in twin.arms] == [
        ("popularity", "popularity"), ("popularity_twin", "popularity")]
    arms = {Assigner([twin]).arms(f"u{n:06d}")[EXPERIMENT].policy for n in range(200)}
    assert arms == {"popularity"}
    # Twins of two experiments whose arms are one policy, each in a layer of its own: every
    # user is in both, so the lists carry both names.
    both = [twin_experiment(experiment, "recs", layer="one"),
            twin_experiment(Experiment("planted"), "control", layer="two")]
    assert all(len(Assigner(both).assign(f"u{n:06d}")) == 2 for n in range(50))
    with pytest.raises(ValueError, match="arm"):
        twin_experiment(experiment, "tail")


def _experiment():
    from serving.online.experiments import Arm, Experiment

    return Experiment(EXPERIMENT, arms=(Arm("popularity", policy="popularity"), Arm("recs")))


@pytest.fixture(scope="module")
def twins(run_loop):
    from simulation import twin_experiment

    return {name: run_loop(f"twin-{name}", [twin_experiment(_experiment(), arm)])
            for name, arm in (("recs", "recs"), ("recs_again", "recs"),
                              ("popularity", "popularity"))}


def _by_user(served):
    """Each user's served lists in the order they asked (the log interleaves the users of a
    round in whatever order their requests arrived)."""
    lists = {}
    for user, titles, experiments in served:
        lists.setdefault(user, []).append((titles, experiments))
    return lists


def test_twins_under_the_same_policy_are_identical(twins):
    first, second = twins["recs"], twins["recs_again"]
    assert first["outcomes"] == second["outcomes"]
    assert _by_user(first["served"]) == _by_user(second["served"])
    assert len(first["served"]) > 100
    assert first["events"] == second["events"]
    assert first["dead"] == second["dead"] == {}
    # Everyone was served the one policy, under the experiment's name.
    assert {arm for _, _, experiments in first["served"]
            for arm in experiments.values()} <= {"recs", "recs_twin"}


def test_twins_under_two_policies_pair_the_same_users(twins):
    from simulation import paired_differences

    recs, popularity = twins["recs"], twins["popularity"]
    assert set(recs["outcomes"]) == set(popularity["outcomes"])
    # Nothing has happened before the first round: the same users ask first, at the same
    # times and on the same devices; then the slates differ, and so do the outcomes.
    first_day = [row["user_id"] for row in recs["loop"].user_outcomes()]
    assert recs["loop"].reports[0].sessions == popularity["loop"].reports[0].sessions
    assert first_day == [row["user_id"] for row in popularity["loop"].user_outcomes()]
    assert _by_user(recs["served"]) != _by_user(popularity["served"])
    assert recs["events"] != popularity["events"]
    differences = {d.metric: d for d in paired_differences(
        popularity["outcomes"], recs["outcomes"],
        ["sessions", "engaged_from_slate", "watch_seconds"])}
    assert differences["engaged_from_slate"].users == len(recs["outcomes"])
    assert differences["engaged_from_slate"].identical < len(recs["outcomes"])
