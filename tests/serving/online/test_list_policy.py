"""The list policy: ranked candidates -> genre re-rank -> exploration slots -> top k."""

import numpy as np
import pytest

from serving.online.list_policy import ListSettings, choose, diversify
from serving.online.recommender import Recommendation


def item(title: str, score: float, genre: str) -> Recommendation:
    return Recommendation(title, score, 0.0, genre)


def test_diversity_reranks_by_genre():
    ranked = [item("a", 0.9, "drama"), item("b", 0.8, "drama"), item("c", 0.5, "comedy")]
    assert [i.title_id for i in diversify(ranked, 3, 0.0)] == ["a", "b", "c"]
    # With 0.5, b's 0.8 * 0.5 = 0.4 falls below c's 0.5.
    assert [i.title_id for i in diversify(ranked, 3, 0.5)] == ["a", "c", "b"]
    assert [i.title_id for i in diversify(ranked, 2, 1.0)] == ["a", "c"]
    with pytest.raises(ValueError, match="diversity must be in \\[0, 1\\]; received 2"):
        diversify(ranked, 2, 2.0)


def test_choose_keeps_the_ranker_order_without_settings_and_explores_with_them():
    ranked = [item(f"t{i}", 1.0 - i / 10, "drama" if i % 2 else "comedy") for i in range(8)]
    plain = choose(ranked, 3, ListSettings(), np.random.default_rng(0))
    assert [i.title_id for i in plain] == ["t0", "t1", "t2"]
    assert all(i.propensity == 1.0 and not i.explored for i in plain)
    # Epsilon 1: every slot shows a title from below the cut, each with propensity
    # 1 / (pool size left): 5, then 4, then 3 titles.
    explored = choose(ranked, 3, ListSettings(exploration=1.0), np.random.default_rng(0))
    assert all(i.explored for i in explored)
    assert {i.title_id for i in explored} <= {f"t{i}" for i in range(3, 8)}
    assert [i.propensity for i in explored] == pytest.approx([1 / 5, 1 / 4, 1 / 3])
    # The same seed replays the same list (the policy seeds it with the request id).
    assert choose(ranked, 3, ListSettings(exploration=1.0), np.random.default_rng(0)) == explored


@pytest.mark.parametrize("settings, message", [
    (dict(diversity=1.5), "diversity must be in [0, 1]"),
    (dict(exploration=-0.1), "exploration must be in [0, 1]"),
])
def test_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(ValueError, match=message.replace("[", "\\[").replace("]", "\\]")):
        ListSettings(**settings)


def test_tail_slots_replace_a_share_of_the_list_with_least_popular_titles():
    ranked = [item(f"t{i}", 1.0 - i / 10, "drama") for i in range(5)]
    tail = [item(f"z{i}", 0.0, "comedy") for i in range(50)]
    lists = [choose(ranked, 4, ListSettings(tail_share=0.5), np.random.default_rng(seed), tail)
             for seed in range(400)]
    replaced = [i for shown in lists for i in shown if i.title_id.startswith("z")]
    # About half of the 1,600 slots (binomial sd 20), each a distinct tail title per list
    # drawn with probability share / pool size.
    assert 700 < len(replaced) < 900
    assert all(len({i.title_id for i in shown}) == 4 for shown in lists)
    assert {round(i.propensity, 9) for i in replaced} <= {round(0.5 / n, 9)
                                                        for n in range(47, 51)}
    # A kept title had probability 1 - share of staying (from propensity 1).
    kept = [i for shown in lists for i in shown if i.title_id.startswith("t")]
    assert {i.propensity for i in kept} == {0.5}
    always = choose(ranked, 4, ListSettings(tail_share=1.0), np.random.default_rng(0), tail)
    assert all(i.title_id.startswith("z") for i in always)
    # Without tail titles there is nothing to replace with: the list stays.
    assert choose(ranked, 4, ListSettings(tail_share=1.0), np.random.default_rng(0)) == \
        choose(ranked, 4, ListSettings(), np.random.default_rng(0))


def test_a_list_in_the_ranker_order_needs_only_k_candidates_and_no_draws():
    ranked = [item(f"t{i}", 1.0 - i / 10, "drama") for i in range(6)]
    plain = ListSettings()
    assert plain.candidates_needed(3) == 3 and not plain.draws
    # Tail slots replace shown titles, so k still suffice; they draw.
    assert ListSettings(tail_share=0.5).candidates_needed(3) == 3
    assert ListSettings(tail_share=0.5).draws and ListSettings(exploration=0.1).draws
    assert ListSettings(diversity=0.5).candidates_needed(3) is None
    assert ListSettings(exploration=0.1).candidates_needed(3) is None
    assert [i.title_id for i in choose(ranked[:3], 3, plain, None)] == ["t0", "t1", "t2"]
    with pytest.raises(ValueError, match="needs an rng"):
        choose(ranked, 3, ListSettings(exploration=0.1), None)
