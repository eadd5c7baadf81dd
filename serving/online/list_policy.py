"""The list policy: from ranked candidates to the list a user sees. A greedy genre re-rank
(`diversify`), then exploration slots (`serving.online.exploration`), then the top k.
"""

import dataclasses

import numpy as np

from recs.config import require
from serving.online.exploration import explore
from serving.online.recommender import Recommendation


@dataclasses.dataclass(frozen=True)
class ListSettings:
    """How a list is made from ranked candidates; an A/B arm may override either.

    Attributes:
        diversity: strength of the genre re-rank, in [0, 1] (0 keeps the ranker's order).
        exploration: epsilon of the exploration slots, in [0, 1] (0 = none).
        tail_share: probability that a slot shows a uniformly drawn title from the
            catalogue's least popular ones instead, in [0, 1] (0 = never). A planted
            degradation: an arm that sets it is worse by construction, a known answer an
            experiment must find.
    """

    diversity: float = 0.0
    exploration: float = 0.0
    tail_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("diversity", "exploration", "tail_share"):
            require(0.0 <= getattr(self, name) <= 1.0, name, "in [0, 1]", getattr(self, name))

    @property
    def draws(self) -> bool:
        """True when making a list draws random numbers (exploration or tail slots)."""
        return self.exploration > 0 or self.tail_share > 0

    def candidates_needed(self, k: int) -> int | None:
        """How many of the ranked candidates a list of `k` can show: `k` when it keeps the
        ranker's order (tail slots replace shown titles), every one (None) when it re-ranks
        by genre or explores beyond the top."""
        return k if self.diversity == 0 and self.exploration == 0 else None


def diversify(ranked: list[Recommendation], k: int, diversity: float) -> list[Recommendation]:
    """Greedy genre re-rank: each pick maximizes score * (1 - diversity) ** (titles of its
    genre already picked). 0 keeps the ranker's order; 1 shows every genre once before any
    repeats.

    Args:
        ranked: items with scores, best first.
        k: how many to keep.
        diversity: in [0, 1].

    Raises:
        ValueError: `diversity` outside [0, 1].
    """
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1]; received {diversity}.")
    if diversity == 0.0:
        return ranked[:k]
    remaining, picked, shown = list(ranked), [], {}
    while remaining and len(picked) < k:
        # Ties (all discounted to 0 when diversity is 1) keep the ranker's order.
        best = max(range(len(remaining)), key=lambda i: (
            (remaining[i].score or 0.0) * (1.0 - diversity) ** shown.get(remaining[i].genre, 0),
            -i))
        item = remaining.pop(best)
        shown[item.genre] = shown.get(item.genre, 0) + 1
        picked.append(item)
    return picked


def choose(ranked: list[Recommendation], k: int, settings: ListSettings,
           rng: np.random.Generator | None, tail: list[Recommendation] = ()
           ) -> list[Recommendation]:
    """The list shown: `k` of `ranked` re-ranked by genre, with exploration slots, and with
    `settings.tail_share` of the slots given to `tail` titles.

    Args:
        ranked: candidates with scores, best first.
        k: how many to show.
        settings: the user's list settings.
        rng: draws the exploration and the tail slots; seed it per request to replay a list.
            None only when `settings.draws` is False.

    Raises:
        ValueError: `rng` is None for settings that draw.
        tail: the catalogue's least popular titles the user may be shown (needed only when
            `settings.tail_share` > 0).
    """
    if settings.draws and rng is None:
        raise ValueError("choose needs an rng for exploration or tail slots; received None.")
    chosen = diversify(ranked, k, settings.diversity)
    if settings.exploration > 0:
        shown = {item.title_id for item in chosen}
        chosen = explore(chosen, [item for item in ranked if item.title_id not in shown],
                         settings.exploration, rng)
    if settings.tail_share > 0:
        chosen = _tail_slots(chosen, list(tail), settings.tail_share, rng)
    return chosen


def _tail_slots(chosen: list[Recommendation], tail: list[Recommendation], share: float,
                rng: np.random.Generator) -> list[Recommendation]:
    """Each slot shows, with probability `share`, a uniform draw from the tail titles not
    yet in the list; its propensity is the draw's probability, and a title the slot keeps
    had its own times (1 - share)."""
    shown = {item.title_id for item in chosen}
    pool = [item for item in tail if item.title_id not in shown]
    replaced = []
    for item in chosen:
        if pool:
            if rng.random() < share:
                picked = pool.pop(int(rng.integers(len(pool))))
                item = dataclasses.replace(picked, propensity=share / (len(pool) + 1))
            else:
                item = dataclasses.replace(item, propensity=item.propensity * (1.0 - share))
        replaced.append(item)
    return replaced
