"""The closed loop's choice, satisfaction, churn and renewal rules on hand-made worlds."""

import numpy as np
import pytest

from recs.data.synthetic import GeneratorConfig, World
from simulation.behaviour import (BILLING_DAYS, BehaviourConfig, billing_days,
                                  churn_probability, examine_probabilities, pick,
                                  renewal_probability, session_rate, session_value,
                                  start_probability, updated_satisfaction)


def _world(user_latent: np.ndarray, title_latent: np.ndarray) -> World:
    """A generated world whose hidden tastes are replaced by the given unit vectors."""
    world = World(GeneratorConfig(num_users=len(user_latent), num_titles=len(title_latent),
                                  seed=1))
    world.user_latent = np.asarray(user_latent, dtype=float)
    world.titles.latent = np.asarray(title_latent, dtype=float)
    return world


# One user facing +x; titles: +x (affinity 1), +y (0), -x (-1). Latent width is 8.
_E = np.eye(8)
WORLD = _world(_E[:1], np.stack([_E[0], _E[1], -_E[0]]))


def test_examine_probabilities_fall_down_the_slate():
    # (1 + p) ** -1: 1, 1/2, 1/3; decay 0 looks at everything.
    np.testing.assert_allclose(examine_probabilities(3, 1.0), [1.0, 0.5, 1.0 / 3.0])
    np.testing.assert_allclose(examine_probabilities(4, 0.0), np.ones(4))


def test_start_probability_is_the_generators_acceptance():
    temperature = WORLD.temperature  # 0.35 by default.
    # exp((affinity - 1) / T): affinity 1 -> 1, 0 -> exp(-1/T), -1 -> exp(-2/T).
    np.testing.assert_allclose(start_probability(WORLD, 0, np.array([0, 1, 2])),
                               [1.0, np.exp(-1 / temperature), np.exp(-2 / temperature)])


def test_a_title_the_user_loves_at_the_top_is_started_at_once():
    config = BehaviourConfig(examine_decay=0.0)
    chosen = pick(WORLD, 0, np.array([0, 1, 2]), set(), config, np.random.default_rng(0))
    assert (chosen.title, chosen.from_slate, chosen.position, chosen.looks) == (0, True, 0, 1)
    assert chosen.found


def test_a_loved_title_further_down_costs_the_looks_above_it():
    # Position 0 holds the title the user hates (start probability exp(-2/0.35) ~ 0.003):
    # almost surely looked at and passed over, then the loved one at position 1 is started.
    config = BehaviourConfig(examine_decay=0.0)
    found = [pick(WORLD, 0, np.array([2, 0]), set(), config, np.random.default_rng(seed))
             for seed in range(200)]
    from_second = [p for p in found if p.position == 1]
    assert len(from_second) >= 195
    assert all(p.looks == 2 and p.title == 0 for p in from_second)


def test_titles_already_started_or_unknown_are_never_started_again():
    config = BehaviourConfig(examine_decay=0.0, browse_patience=0)
    # The only lovable title was taken, the other slot is an id the world does not know:
    # nothing to start, and no patience to browse: gives up after looking at both.
    chosen = pick(WORLD, 0, np.array([0, -1]), {0}, config, np.random.default_rng(0))
    assert not chosen.found and chosen.looks == 2 and chosen.position == -1


def test_an_empty_slate_sends_the_user_browsing_by_popularity():
    config = BehaviourConfig(browse_patience=500)
    chosen = pick(WORLD, 0, np.array([], dtype=int), set(), config, np.random.default_rng(3))
    assert chosen.found and not chosen.from_slate and chosen.position == -1
    assert chosen.looks >= 1


def test_a_good_slate_finds_something_faster_than_a_bad_one():
    # The same user, 300 searches each: a slate led by the loved title against one of titles
    # they are lukewarm about or hate (they then browse a catalogue of the same three).
    config = BehaviourConfig()
    good = [pick(WORLD, 0, np.array([0, 1, 2]), set(), config, np.random.default_rng(s))
            for s in range(300)]
    bad = [pick(WORLD, 0, np.array([2, 1]), set(), config, np.random.default_rng(s))
           for s in range(300)]
    assert np.mean([p.looks for p in good]) < np.mean([p.looks for p in bad])
    assert np.mean([p.from_slate for p in good]) > np.mean([p.from_slate for p in bad])


def test_session_value_counts_engaged_plays_less_the_search():
    config = BehaviourConfig(seconds_per_look=6.0, search_minutes_per_play=5.0)
    # 2 engaged plays after 25 looks of 6 s = 2.5 minutes = half a play.
    assert session_value(2, 25, False, config) == pytest.approx(1.5)
    # Nothing found after 50 looks (5 minutes): -1 for the search, -1 for finding nothing.
    assert session_value(0, 50, True, config) == pytest.approx(-2.0)


def test_satisfaction_is_a_moving_average():
    config = BehaviourConfig(memory=0.8)
    # 0.8 * 0.5 + 0.2 * 2.0 = 0.8
    assert updated_satisfaction(0.5, 2.0, config) == pytest.approx(0.8)


def test_session_rate_follows_satisfaction_within_bounds():
    config = BehaviourConfig(frequency_sensitivity=0.6, reference=0.5)
    base = np.array([1.0, 1.0, 1.0, 1.0])
    rates = session_rate(base, np.array([0.5, 1.5, -100.0, 100.0]), config)
    # At the reference: the base rate; one unit above: exp(0.6); far off: clipped at 1/4, 4.
    np.testing.assert_allclose(rates, [1.0, np.exp(0.6), 0.25, 4.0])


def test_churn_is_likelier_for_the_unhappy_and_the_churn_prone():
    config = BehaviourConfig(churn_hazard=0.01, churn_prone_factor=4.0, churn_sensitivity=1.0,
                             reference=0.5)
    hazard = churn_probability(np.array([0.5, 0.5, -0.5]), np.array([False, True, False]),
                               config)
    # Base 0.01; churn-prone x4; one unit below the reference x e.
    np.testing.assert_allclose(hazard, [0.01, 0.04, 0.01 * np.e])


def test_new_subscribers_are_likelier_to_leave():
    config = BehaviourConfig(churn_hazard=0.01, churn_prone_factor=4.0, new_subscriber_factor=3.0,
                             reference=0.5)
    hazard = churn_probability(np.array([0.5, 0.5, 0.5]), np.array([False, False, True]),
                               config, new=np.array([False, True, True]))
    # Base 0.01; new x3; new and churn-prone x3 x4.
    np.testing.assert_allclose(hazard, [0.01, 0.03, 0.12])


def test_browsing_looks_at_most_patience_titles_and_counts_them():
    # Only the hated title (start probability ~0.003 a look) is left to find: 20 looks,
    # all counted; nothing found in almost every search.
    world = _world(_E[:1], np.stack([-_E[0]]))
    config = BehaviourConfig(browse_patience=20)
    picks = [pick(world, 0, np.array([], dtype=int), set(), config, np.random.default_rng(s))
             for s in range(50)]
    assert sum(p.found for p in picks) <= 5
    assert all(p.looks == 20 for p in picks if not p.found)
    assert all(1 <= p.looks <= 20 for p in picks if p.found)


def test_renewal_probability_rises_with_satisfaction():
    config = BehaviourConfig(renewal_bias=2.0, renewal_sensitivity=1.0, reference=0.5)
    probability = renewal_probability(np.array([0.5, 1.5, -0.5]), config)
    # sigmoid(2), sigmoid(3), sigmoid(1)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-np.array([2.0, 3.0, 1.0]))))


def test_billing_days_are_seeded_and_cover_the_month():
    days = billing_days(3000, seed=5)
    np.testing.assert_array_equal(days, billing_days(3000, seed=5))
    assert days.min() == 0 and days.max() == BILLING_DAYS - 1
    assert not np.array_equal(days, billing_days(3000, seed=6))


@pytest.mark.parametrize("field, value", [("memory", 1.0), ("seconds_per_look", 0.0),
                                          ("churn_hazard", 1.0), ("churn_prone_factor", 0.5),
                                          ("new_subscriber_factor", 0.5),
                                          ("browse_patience", -1)])
def test_bad_behaviour_constants_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        BehaviourConfig(**{field: value})


def test_behaviour_config_round_trips():
    config = BehaviourConfig(examine_decay=0.9, renewal_bias=1.0)
    assert BehaviourConfig.from_dict(config.to_dict()) == config
