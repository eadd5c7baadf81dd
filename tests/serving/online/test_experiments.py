"""Experiments: deterministic assignment by layer, salts and holdouts, arms and the model
targets they route to."""

import re

import numpy as np
import pytest

from serving.online.experiments import Arm, Assigner, Experiment, ModelTarget, Route

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
