"""A/B test assignment: experiments, their arms, and which arm a user is in.

Assignment hashes `salt:user_id` (SHA-256) into [0, 1): the same user always lands in the same
arm of an experiment, experiments with different salts are independent, and experiments in the
same layer own disjoint slices of the layer's users, so they never share a user. A global
holdout sees no experiment at all.

Online policy, so it lives where requests are served; the statistics that read the outcomes
are `monitoring.abtest`'s.
"""

import dataclasses
import hashlib

import numpy as np

from recs.config import Config, require


def unit_hash(salt: str, user_id: str) -> float:
    """A uniform, reproducible number in [0, 1) for (salt, user)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclasses.dataclass(frozen=True)
class Arm(Config):
    """One variant: a name, a relative weight, and the settings it changes (what they mean is
    up to the system running the experiment, e.g. the service's `diversity`)."""

    name: str
    weight: float = 1.0
    settings: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(bool(self.name), "arm name", "non-empty", self.name)
        require(self.weight > 0, "arm weight", "> 0", self.weight)


@dataclasses.dataclass(frozen=True)
class Experiment(Config):
    """One experiment.

    Attributes:
        name: unique; also the default hashing salt.
        arms: the variants with relative weights, control first.
        traffic: share of its layer's users in the experiment, in (0, 1].
        layer: experiments in one layer are mutually exclusive.
        salt: hashing salt for the arm split; change it to reshuffle users.
    """

    name: str
    arms: tuple[Arm, ...] = (Arm("control"), Arm("treatment"))
    traffic: float = 1.0
    layer: str = "default"
    salt: str = ""

    def __post_init__(self) -> None:
        require(bool(self.name), "name", "non-empty", self.name)
        require(len(self.arms) >= 2, "arms", "at least two (control first)", self.arms)
        names = [arm.name for arm in self.arms]
        require(len(set(names)) == len(names), "arms", "uniquely named", names)
        require(0.0 < self.traffic <= 1.0, "traffic", "in (0, 1]", self.traffic)

    @property
    def weights(self) -> np.ndarray:
        weights = np.array([arm.weight for arm in self.arms], dtype=float)
        return weights / weights.sum()


class Assigner:
    """Assigns users to arms of several experiments.

    Args:
        experiments: the running experiments; per layer their traffic must sum to <= 1.
        holdout: share of all users kept out of every experiment.

    Raises:
        ValueError: duplicate names, a layer over-subscribed, or holdout outside [0, 1).

    Example:
        assigner = Assigner([Experiment("ranker-v2")], holdout=0.05)
        assigner.assign("u000001")  # {"ranker-v2": "treatment"} (or control, or {} if held out)
    """

    def __init__(self, experiments: list[Experiment], holdout: float = 0.0) -> None:
        require(0.0 <= holdout < 1.0, "holdout", "in [0, 1)", holdout)
        names = [experiment.name for experiment in experiments]
        require(len(set(names)) == len(names), "experiment names", "unique", names)
        self.holdout = holdout
        self._layers: dict[str, list[tuple[float, float, Experiment]]] = {}
        for experiment in experiments:
            slices = self._layers.setdefault(experiment.layer, [])
            start = slices[-1][1] if slices else 0.0
            end = start + experiment.traffic
            require(end <= 1.0 + 1e-9, f"traffic of layer {experiment.layer!r}",
                    "at most 1 in total", round(end, 6))
            slices.append((start, end, experiment))

    def assign(self, user_id: str) -> dict[str, str]:
        """{experiment name: arm name} for every experiment the user is in."""
        return {name: arm.name for name, arm in self.arms(user_id).items()}

    def arms(self, user_id: str) -> dict[str, Arm]:
        """{experiment name: arm} for every experiment the user is in."""
        if unit_hash("__holdout__", user_id) < self.holdout:
            return {}
        assigned = {}
        for layer, slices in self._layers.items():
            position = unit_hash(f"__layer__:{layer}", user_id)
            for start, end, experiment in slices:
                if start <= position < end:
                    draw = unit_hash(experiment.salt or experiment.name, user_id)
                    index = int(np.searchsorted(np.cumsum(experiment.weights), draw,
                                                side="right"))
                    assigned[experiment.name] = experiment.arms[min(index,
                                                                    len(experiment.arms) - 1)]
                    break
        return assigned
