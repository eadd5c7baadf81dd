"""Exploration slots: online policy, where requests are served.

A share of each list's slots goes to titles the system knows little about (fresh titles,
titles with few impressions): epsilon-greedy, where with probability epsilon a slot shows a
uniformly random title from the candidates the ranker placed lower.

Every shown title is logged with its propensity, the probability that the policy shows it in
that slot given what it knew, so that a new policy can be evaluated offline from the logs with
inverse-propensity scoring (IPS) or its self-normalized form (SNIPS): `monitoring.off_policy`.
"""

import dataclasses
from typing import TypeVar

import numpy as np

from recs.config import require

_Item = TypeVar("_Item")
"""A frozen dataclass with `title_id`, `propensity` and `explored` (a served list's item)."""


@dataclasses.dataclass(frozen=True)
class Shown:
    """One slot's choice: the title and the probability the policy had of choosing it."""

    title_id: str
    propensity: float
    explored: bool


def epsilon_greedy_slot(best: str, pool: list[str], epsilon: float,
                        rng: np.random.Generator) -> Shown:
    """Shows `best` (the ranker's pick) or, with probability epsilon, a uniform pool title.

    Propensities are exact: a pool title has epsilon / len(pool), plus 1 - epsilon if it is
    also `best`.

    Raises:
        ValueError: epsilon outside [0, 1] or an empty pool with epsilon > 0.
    """
    require(0.0 <= epsilon <= 1.0, "epsilon", "in [0, 1]", epsilon)
    require(bool(pool) or epsilon == 0.0, "pool", "non-empty when epsilon > 0", pool)
    explore = bool(pool) and rng.random() < epsilon
    title = pool[int(rng.integers(len(pool)))] if explore else best
    share = epsilon / len(pool) if pool and title in pool else 0.0
    return Shown(title, share + (1.0 - epsilon if title == best else 0.0), explore)


def explore(chosen: list[_Item], pool: list[_Item], epsilon: float,
            rng: np.random.Generator) -> list[_Item]:
    """Epsilon-greedy exploration slots: each slot keeps its title with probability
    1 - epsilon, else shows a uniformly drawn title from `pool` (candidates the ranker placed
    lower, fresh titles among them); every item carries its propensity. Once the pool is
    used up (a user who has finished all but a few titles), the remaining slots keep their
    titles with propensity 1: the policy had no other choice.

    Raises:
        ValueError: epsilon outside [0, 1].
    """
    require(0.0 <= epsilon <= 1.0, "epsilon", "in [0, 1]", epsilon)
    remaining = list(pool)
    shown = []
    for item in chosen:
        slot = epsilon_greedy_slot(item.title_id, [p.title_id for p in remaining],
                                   epsilon if remaining else 0.0, rng)
        if slot.explored and slot.title_id != item.title_id:
            picked = next(p for p in remaining if p.title_id == slot.title_id)
            remaining.remove(picked)
            item = picked
        shown.append(dataclasses.replace(item, propensity=slot.propensity,
                                         explored=slot.explored))
    return shown
