"""A/B statistics on hand-computed numbers and seeded simulations."""

import numpy as np
import pytest

from monitoring.abtest import (compare_means, compare_proportions, cuped, sample_ratio_check,
                               sample_size_means, sample_size_proportions)


def test_two_proportion_z_test_on_hand_computed_numbers():
    # 300/1000 vs 360/1000: pooled p = 0.33, se = sqrt(0.33 * 0.67 * 2 / 1000) = 0.02103,
    # z = 0.06 / 0.02103 = 2.853, two-sided p = 0.0043.
    result = compare_proportions("engaged", (300, 360), (1000, 1000))
    assert result.difference == pytest.approx(0.06)
    assert result.p_value == pytest.approx(0.0043, abs=1e-4)
    assert result.significant and result.ci_low > 0 and result.ci_low < 0.06 < result.ci_high
    assert result.relative_lift == pytest.approx(0.2)
    with pytest.raises(ValueError, match="0 <= successes <= totals"):
        compare_proportions("engaged", (10, 20), (5, 100))


def test_welch_t_test_on_hand_computed_numbers():
    # Means 2.5 and 3.5, both variances 5/3: se = sqrt(2 * (5/3) / 4) = 0.9129, t = 1.095,
    # Welch's df = 6, two-sided p = 0.315.
    result = compare_means("watch", np.array([1, 2, 3, 4]), np.array([2, 3, 4, 5]))
    assert result.difference == pytest.approx(1.0)
    assert result.p_value == pytest.approx(0.3153, abs=1e-3)
    assert not result.significant and result.ci_low < 0 < result.ci_high


def test_cuped_keeps_the_effect_and_shrinks_the_variance():
    rng = np.random.default_rng(0)
    pre = [rng.gamma(2.0, 600.0, 5000) for _ in range(2)]
    watch = [0.8 * pre[0] + rng.normal(0, 300, 5000),
             0.8 * pre[1] + rng.normal(0, 300, 5000) + 60.0]  # True effect: +60 s.
    raw = compare_means("watch", watch[0], watch[1])
    control, treatment, theta = cuped((watch[0], watch[1]), (pre[0], pre[1]))
    adjusted = compare_means("watch", control, treatment)
    assert theta == pytest.approx(0.8, abs=0.03)
    assert adjusted.difference == pytest.approx(60.0, abs=15.0)
    width = lambda c: c.ci_high - c.ci_low  # noqa: E731
    # Correlation ~0.92, so the CI shrinks to about sqrt(1 - 0.85) = 0.39 of its width.
    assert width(adjusted) < 0.5 * width(raw)
    assert adjusted.significant


def test_sample_ratio_mismatch_alarm():
    assert not sample_ratio_check([5000, 5000], [1, 1]).mismatch
    broken = sample_ratio_check([5200, 4800], [1, 1])  # chi2 = 16, p = 6.3e-5.
    assert broken.mismatch and broken.p_value == pytest.approx(6.33e-5, rel=0.01)
    assert not sample_ratio_check([2520, 7480], [1, 3]).mismatch


def test_sample_sizes_match_the_textbook_formulas():
    # Cohen's h for 0.30 -> 0.32 is 0.04325; n = 2 * ((1.96 + 0.8416) / h)^2 = 8,392 per arm.
    assert sample_size_proportions(0.30, 0.02) == 8393
    # d = 0.1: n = 2 * (2.8016 / 0.1)^2 + t-distribution correction = 1,571 per arm.
    assert sample_size_means(std=100.0, minimum_effect=10.0) == 1571


def test_a_a_tests_reject_at_about_alpha():
    rng = np.random.default_rng(1)
    rejections = 0
    for _ in range(400):
        a, b = rng.binomial(1000, 0.3, size=2)
        rejections += compare_proportions("engaged", (int(a), int(b)), (1000, 1000)).significant
    # Binomial(400, 0.05): mean 20, sd 4.4.
    assert 8 <= rejections <= 34
