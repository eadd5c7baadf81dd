"""Exploration slots: exact propensities, and a list kept when no other candidate is left."""

import numpy as np
import pytest

from serving.online.exploration import epsilon_greedy_slot


def test_epsilon_greedy_propensities_match_frequencies():
    rng = np.random.default_rng(2)
    pool = ["f1", "f2", "best"]
    shown = [epsilon_greedy_slot("best", pool, 0.3, rng) for _ in range(20_000)]
    for title in pool:
        frequency = np.mean([s.title_id == title for s in shown])
        propensity = next(s.propensity for s in shown if s.title_id == title)
        assert frequency == pytest.approx(propensity, abs=0.015)
    assert next(s for s in shown if s.title_id == "best").propensity == pytest.approx(0.8)


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
