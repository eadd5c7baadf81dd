"""The standard offline splits (`recs.protocols`)."""

import numpy as np
import pytest

from recs.protocols import (TEST, TRAIN, VALID, core_filter, split_leave_last_out,
                            split_per_user, split_random)


def test_core_filter_repeats_until_every_user_and_item_has_k():
    # Item z has 1 interaction: dropping it leaves user c with 1 (row 4), so c goes in the
    # second pass; then x (a, b) and y (a, b) have 2 each and a, b have 2 each: stable.
    users = np.array(["a", "a", "b", "b", "c", "c"])
    items = np.array(["x", "y", "x", "y", "x", "z"])
    keep = core_filter(users, items, k=2)
    np.testing.assert_array_equal(keep, [True, True, True, True, False, False])
    with pytest.raises(ValueError, match="same length"):
        core_filter(users, items[:3])
    with pytest.raises(ValueError, match="k must be >= 1"):
        core_filter(users, items, k=0)


def test_core_filter_never_keeps_a_user_or_item_below_k():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 60, 2000), rng.zipf(1.5, 2000) % 200
    keep = core_filter(users, items, k=5)
    assert 0 < keep.sum() < len(keep)
    for values in (users[keep], items[keep]):
        assert np.unique(values, return_counts=True)[1].min() >= 5


def test_per_user_split_cuts_each_user_80_10_10():
    users = np.repeat(np.arange(30), 10)
    part = split_per_user(users, seed=1)
    for user in range(30):
        counts = np.bincount(part[users == user], minlength=3)
        np.testing.assert_array_equal(counts, [8, 1, 1])
    np.testing.assert_array_equal(part, split_per_user(users, seed=1))  # seeded
    assert not np.array_equal(part, split_per_user(users, seed=2))
    with pytest.raises(ValueError, match="shares must be two fractions"):
        split_per_user(users, shares=(0.9, 0.2))


def test_random_split_is_the_tutorials_seeded_cut():
    part = split_random(10, train_share=0.8, seed=42)
    order = np.random.default_rng(42).permutation(10)
    assert set(np.flatnonzero(part == TRAIN)) == set(order[:8])
    assert (part == TEST).sum() == 2 and not (part == VALID).any()
    with pytest.raises(ValueError, match="train_share must be in"):
        split_random(10, train_share=1.5)


def test_leave_last_out_tests_each_users_latest_and_validates_the_one_before():
    users = np.array(["a", "a", "a", "a", "b", "b", "c", "c", "c"])
    stamps = np.array([4, 1, 3, 2, 5, 6, 7, 7, 1])
    part = split_leave_last_out(users, stamps)
    # a: latest t=4 (row 0) tests, t=3 (row 2) validates; b has 2: trains only;
    # c: a tie at 7 keeps input order, so row 7 is last.
    np.testing.assert_array_equal(part, [TEST, TRAIN, VALID, TRAIN, TRAIN, TRAIN,
                                         VALID, TEST, TRAIN])
    with pytest.raises(ValueError, match="timestamps must be finite"):
        split_leave_last_out(users, np.where(stamps == 5, np.nan, stamps))
    with pytest.raises(ValueError, match="same length"):
        split_leave_last_out(users, stamps[:2])
