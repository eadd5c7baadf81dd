"""Off-policy evaluation: a policy's value estimated from another policy's logged lists, with
the propensities `serving.online.exploration` logs for every shown title."""

import dataclasses

import numpy as np

from recs.config import require


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
