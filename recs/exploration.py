"""Exploration slots and off-policy evaluation.

A share of each list's slots goes to titles the system knows little about (fresh titles,
titles with few impressions). Two policies pick them:

    epsilon-greedy     with probability epsilon a slot shows a uniformly random pool title
    Thompson sampling  each pool title's engagement rate has a Beta posterior; the title with
                       the highest draw takes the slot

Every shown title is logged with its propensity, the probability that the policy shows it in
that slot given what it knew, so that a new policy can be evaluated offline from the logs with
inverse-propensity scoring (IPS) or its self-normalized form (SNIPS).
"""

import dataclasses

import numpy as np

from recs.config import require


@dataclasses.dataclass(frozen=True)
class Shown:
    """One slot's choice: the title and the probability the policy had of choosing it."""

    title_id: str
    propensity: float
    explored: bool


class BetaPosteriors:
    """Beta(prior_a + engaged, prior_b + not engaged) per title.

    Args:
        prior_a, prior_b: the prior's pseudo-counts (a weak prior around the catalogue rate).
    """

    def __init__(self, prior_a: float = 1.0, prior_b: float = 9.0) -> None:
        require(prior_a > 0 and prior_b > 0, "prior_a/prior_b", "> 0", (prior_a, prior_b))
        self.prior_a, self.prior_b = prior_a, prior_b
        self._engaged: dict[str, float] = {}
        self._shown: dict[str, float] = {}

    def update(self, title_id: str, engaged: bool) -> None:
        self._shown[title_id] = self._shown.get(title_id, 0.0) + 1.0
        self._engaged[title_id] = self._engaged.get(title_id, 0.0) + float(engaged)

    def parameters(self, titles: list[str]) -> tuple[np.ndarray, np.ndarray]:
        engaged = np.array([self._engaged.get(t, 0.0) for t in titles])
        shown = np.array([self._shown.get(t, 0.0) for t in titles])
        return self.prior_a + engaged, self.prior_b + shown - engaged


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


def thompson_slot(pool: list[str], posteriors: BetaPosteriors, rng: np.random.Generator,
                  propensity_draws: int = 2000) -> Shown:
    """Shows the pool title with the highest posterior draw.

    The propensity of Thompson sampling has no closed form; it is estimated from
    `propensity_draws` further joint draws (the share in which the chosen title wins), floored
    at 1 / propensity_draws so that importance weights stay finite.

    Raises:
        ValueError: an empty pool.
    """
    require(bool(pool), "pool", "non-empty", pool)
    a, b = posteriors.parameters(pool)
    choice = int(np.argmax(rng.beta(a, b)))
    wins = np.argmax(rng.beta(a, b, size=(propensity_draws, len(pool))), axis=1)
    propensity = max(float(np.mean(wins == choice)), 1.0 / propensity_draws)
    return Shown(pool[choice], propensity, True)


@dataclasses.dataclass(frozen=True)
class OffPolicyEstimate:
    ips: float
    snips: float
    ips_standard_error: float
    effective_sample_size: float


def off_policy_value(rewards: np.ndarray, logged_propensities: np.ndarray,
                     target_probabilities: np.ndarray) -> OffPolicyEstimate:
    """The value of a target policy estimated from another policy's logs.

    Args:
        rewards: `[n]` observed outcome of each logged impression (e.g. engaged 0/1).
        logged_propensities: `[n]` probability the logging policy had of showing the logged
            title.
        target_probabilities: `[n]` probability the target policy would show that title in
            that context.

    Returns:
        IPS (unbiased when every title the target policy may show has a positive logging
        propensity) and SNIPS (a little biased, much lower variance), with IPS's standard
        error and the importance weights' effective sample size.

    Raises:
        ValueError: mismatched lengths, no impressions, or a propensity outside (0, 1].
    """
    rewards = np.asarray(rewards, float)
    logged = np.asarray(logged_propensities, float)
    target = np.asarray(target_probabilities, float)
    require(len(rewards) == len(logged) == len(target) > 0, "inputs",
            "equal, non-zero lengths", (len(rewards), len(logged), len(target)))
    require(bool(np.all((logged > 0) & (logged <= 1))), "logged_propensities", "in (0, 1]",
            float(logged.min()))
    weights = target / logged
    terms = rewards * weights
    snips = float(terms.sum() / weights.sum()) if weights.sum() > 0 else 0.0
    return OffPolicyEstimate(float(terms.mean()), snips,
                             float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1
                             else float("nan"),
                             float(weights.sum() ** 2 / np.sum(weights ** 2))
                             if weights.any() else 0.0)
