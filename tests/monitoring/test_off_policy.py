"""Off-policy estimates from logged propensities: unbiased on simulated logs."""

import numpy as np
import pytest

from monitoring.off_policy import off_policy_value
from serving.online.exploration import epsilon_greedy_slot


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
