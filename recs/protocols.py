"""The standard offline splits of interaction data, as published benchmarks define them.

Each split returns a `[num_interactions]` int8 part per interaction: 0 train, 1 validation,
2 test (`TRAIN`, `VALID`, `TEST`). The metrics that go with them are in `recs.evaluation`.

* `split_per_user` (RecBole's general-recommendation protocol): each user's interactions
  shuffled and cut 80/10/10.
* `split_random` (the TFRS tutorials): one random 80/20 cut over all interactions, no
  validation part.
* `split_leave_last_out` (temporal): each user's last interaction by time is the test, the one
  before it the validation, the rest training; users with fewer than 3 interactions train only.

And `core_filter`, the repeated k-core filter RecBole applies before splitting.

Example:
    keep = core_filter(users, items, k=10)
    part = split_per_user(users[keep], seed=2020)
    train = part == TRAIN
"""

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2


def core_filter(users: np.ndarray, items: np.ndarray, k: int = 10) -> np.ndarray:
    """Boolean mask of the interactions left after repeated k-core filtering: every user and
    every item left has at least `k` interactions.

    Raises:
        ValueError: `users` and `items` differ in length, or `k` < 1.
    """
    users, items = np.asarray(users), np.asarray(items)
    if len(users) != len(items):
        raise ValueError(f"users and items must have the same length; received {len(users)} "
                         f"and {len(items)}.")
    if k < 1:
        raise ValueError(f"k must be >= 1; received {k}.")
    keep = np.ones(len(users), dtype=bool)
    while keep.any():
        _, user_index, user_counts = np.unique(users[keep], return_inverse=True,
                                               return_counts=True)
        _, item_index, item_counts = np.unique(items[keep], return_inverse=True,
                                               return_counts=True)
        good = (user_counts[user_index] >= k) & (item_counts[item_index] >= k)
        if good.all():
            break
        keep[np.flatnonzero(keep)[~good]] = False
    return keep


def _groups(users: np.ndarray) -> list[np.ndarray]:
    """Interaction indices per user, each group in its original order."""
    order = np.argsort(users, kind="stable")
    ordered = users[order]
    bounds = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    return np.split(order, bounds) if len(users) else []


def split_per_user(users: np.ndarray, seed: int = 2020, shares: tuple[float, float] = (0.8, 0.1)
                   ) -> np.ndarray:
    """RecBole's split: per user, a random `shares[0]` train, `shares[1]` validation, the
    rest test (counts rounded per user).

    Raises:
        ValueError: shares outside [0, 1] or summing above 1.
    """
    if not (0 <= shares[0] <= 1 and 0 <= shares[1] <= 1 and sum(shares) <= 1):
        raise ValueError(f"shares must be two fractions summing to at most 1; received {shares}.")
    rng = np.random.default_rng(seed)
    part = np.full(len(users), TRAIN, dtype=np.int8)
    for group in _groups(np.asarray(users)):
        group = rng.permutation(group)
        train_end = int(round(shares[0] * len(group)))
        valid_end = train_end + int(round(shares[1] * len(group)))
        part[group[train_end:valid_end]] = VALID
        part[group[valid_end:]] = TEST
    return part


def split_random(num_interactions: int, train_share: float = 0.8, seed: int = 42) -> np.ndarray:
    """The TFRS tutorials' split: a seeded random `train_share` of all interactions trains,
    the rest tests (`round(train_share * n)` training rows).

    Raises:
        ValueError: `train_share` outside [0, 1].
    """
    if not 0 <= train_share <= 1:
        raise ValueError(f"train_share must be in [0, 1]; received {train_share}.")
    order = np.random.default_rng(seed).permutation(num_interactions)
    part = np.full(num_interactions, TEST, dtype=np.int8)
    part[order[:int(round(train_share * num_interactions))]] = TRAIN
    return part


def split_leave_last_out(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Temporal leave-last-out: per user, the latest interaction tests, the one before it
    validates, the rest trains; ties in time keep the input order. Users with fewer than 3
    interactions only train.

    Raises:
        ValueError: `users` and `timestamps` differ in length, or a timestamp is not finite.
    """
    users, timestamps = np.asarray(users), np.asarray(timestamps, dtype=np.float64)
    if len(users) != len(timestamps):
        raise ValueError(f"users and timestamps must have the same length; received "
                         f"{len(users)} and {len(timestamps)}.")
    if not np.isfinite(timestamps).all():
        raise ValueError("timestamps must be finite numbers; a temporal split needs the time "
                         "of every interaction.")
    part = np.full(len(users), TRAIN, dtype=np.int8)
    for group in _groups(users):
        if len(group) < 3:
            continue
        by_time = group[np.argsort(timestamps[group], kind="stable")]
        part[by_time[-1]] = TEST
        part[by_time[-2]] = VALID
    return part
