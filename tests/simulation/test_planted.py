"""A known answer: an A/B test through the real service whose treatment draws half of every
list from the catalogue's 200 least popular titles (`tail_share`) must come out lower on
engagement with served titles, significantly, in a small closed-loop run.

The tiny world will not do: its 40 titles are all in that tail, so a tail slot is any title.
The world here has 1,000 titles (`conftest.PLANTED_WORLD`)."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_the_planted_arm_is_detected(run_planted_world):
    from monitoring.abtest import compare_means
    from serving.online.experiments import Arm, Experiment

    planted = Experiment("planted", arms=(Arm("control"),
                                          Arm("tail", settings={"tail_share": 0.5})))
    run = run_planted_world("planted", [planted], days=3, joiners=0)
    arm_of, titles = {}, {}
    for user, served, experiments in run["served"]:
        arm_of[user] = experiments["planted"]
        titles.setdefault(user, set()).update(served)
    assert set(arm_of.values()) == {"control", "tail"}
    # Engagement with served titles: engaged plays started from a list, over the distinct
    # titles the lists showed (the outcome job's served_engaged / titles_served).
    share = {arm: np.array([row["engaged_from_slate"] / len(titles[user])
                            for user, row in run["outcomes"].items()
                            if arm_of.get(user) == arm])
             for arm in ("control", "tail")}
    comparison = compare_means("served_engaged_share", share["control"], share["tail"],
                               alpha=0.05)
    assert comparison.difference < 0 and comparison.p_value < 0.001, comparison
