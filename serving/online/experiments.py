"""A/B test assignment: experiments, their arms, and which arm a user is in.

Assignment hashes `salt:user_id` (SHA-256) into [0, 1): the same user always lands in the same
arm of an experiment, experiments with different salts are independent, and experiments in the
same layer own disjoint slices of the layer's users, so they never share a user. A global
holdout sees no experiment at all.

An arm changes settings (the service's `diversity`, `exploration`), routes model roles to other
versions, labels or served models (`Arm.models`, parsed into a `Route` of `ModelTarget`s), or
replaces the models by the popularity list (`policy="popularity"`, a no-model baseline).

Online policy, so it lives where requests are served; the statistics that read the outcomes
are `monitoring.abtest`'s.
"""

import dataclasses
import hashlib
import re

import numpy as np

from recs.config import Config, require
from recs.contract.models import is_version_label
from serving.types import MODEL_ROLES


def unit_hash(salt: str, user_id: str) -> float:
    """A uniform, reproducible number in [0, 1) for (salt, user)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


ARM_POLICIES = ("models", "popularity")
"""How an arm's users are served: by the models (routed or not), or by the popularity list
with no model call."""
TARGET_FORMS = ('"name", "name@label", "@label", "name@<version>" or "@<version>" (a served '
                'model name and/or a version label or a version number > 0; no name keeps the '
                'service\'s model for the role)')
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclasses.dataclass(frozen=True)
class ModelTarget:
    """Which model a call goes to: a served name ("" = the service's model for the role), and a
    version label or number (neither = the newest version).

    Attributes:
        name: served model name; "" keeps the service's configured model for the role.
        label: TF Serving version label (`stable`, `canary`); "" for none.
        version: version number; None for none (at most one of `label` and `version`).
    """

    name: str = ""
    label: str = ""
    version: int | None = None

    def __post_init__(self) -> None:
        require(not self.name or bool(_MODEL_NAME.fullmatch(self.name)), "model target name",
                "letters, digits, '_', '.' or '-' (a served model name)", self.name)
        require(not self.label or is_version_label(self.label), "model target label",
                "letters, digits, '_' or '-'", self.label)
        require(self.version is None or (isinstance(self.version, int)
                                         and not isinstance(self.version, bool)
                                         and self.version > 0),
                "model target version", "None or an int > 0", self.version)
        require(not (self.label and self.version is not None), "model target",
                "a label or a version, not both", str(self))

    @classmethod
    def parse(cls, text: str, field: str = "model target") -> "ModelTarget":
        """Parses "name", "name@label", "@label", "name@3" or "@3".

        Args:
            text: the target; digits after `@` are a version number, anything else a label.
            field: what the error names, e.g. "models['ranker'] of arm 'canary'".

        Raises:
            ValueError: `text` has none of those forms.

        Example:
            ModelTarget.parse("ranker@canary")  # ModelTarget("ranker", label="canary")
        """
        name, at, choice = text.partition("@") if isinstance(text, str) else ("", "", "")
        number = bool(re.fullmatch(r"[0-9]+", choice)) and int(choice) > 0
        valid = (bool(name or at) and (not name or bool(_MODEL_NAME.fullmatch(name)))
                 and (not at or number or (is_version_label(choice)
                                           and not choice.isdigit())))
        require(valid, field, TARGET_FORMS, text)
        return cls(name, version=int(choice)) if number else cls(name, label=choice)

    @property
    def routed(self) -> bool:
        """True when the target changes anything (a name, label or version)."""
        return bool(self.name or self.label or self.version is not None)

    def resolved(self, name: str) -> "ModelTarget":
        """This target, with `name` standing in for an empty name."""
        return self if self.name else dataclasses.replace(self, name=name)

    def __str__(self) -> str:
        """The parsed form back: "name", "name@label" or "name@3"."""
        if self.label:
            return f"{self.name}@{self.label}"
        return self.name if self.version is None else f"{self.name}@{self.version}"


@dataclasses.dataclass(frozen=True)
class Route:
    """The model target of each role for one request; the default targets keep the service's
    models at their newest version.

    Attributes:
        retrieval: the retrieval model.
        ranker: the ranker.
        recommender: the one-call recommender.
    """

    retrieval: ModelTarget = ModelTarget()
    ranker: ModelTarget = ModelTarget()
    recommender: ModelTarget = ModelTarget()

    @property
    def bundle_usable(self) -> bool:
        """Whether the one-call recommender may serve this route: it bundles the service's
        own retrieval model and ranker, so a route that changes either and not the
        recommender needs the two calls."""
        return self.recommender.routed or not (self.retrieval.routed or self.ranker.routed)

    def routed(self) -> dict[str, ModelTarget]:
        """{role: target} of the roles this route changes."""
        return {role: getattr(self, role) for role in MODEL_ROLES
                if getattr(self, role).routed}

    def merged(self, other: "Route") -> "Route":
        """This route with `other`'s routed roles over it."""
        return dataclasses.replace(self, **other.routed())


@dataclasses.dataclass(frozen=True)
class Arm(Config):
    """One variant: a name, a relative weight, and what it changes for its users.

    Attributes:
        name: unique within its experiment.
        weight: relative share of the experiment's users.
        settings: values the arm sets (what they mean is up to the system running the
            experiment, e.g. the service's `diversity`).
        policy: "models" (the default: the models serve, routed by `models`) or
            "popularity" (the popularity list, no model call: a no-model baseline).
        models: role ("retrieval", "ranker", "recommender") -> target, as "name",
            "name@label", "@label", "name@3" or "@3"; a role left out keeps the service's
            model. Routing retrieval or the ranker but not the recommender makes the service
            call them (two calls) instead of the one-call recommender, which bundles its own.

    Example:
        Arm("canary", models={"ranker": "@canary"})
    """

    name: str
    weight: float = 1.0
    settings: dict[str, float] = dataclasses.field(default_factory=dict)
    policy: str = "models"
    models: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(bool(self.name), "arm name", "non-empty", self.name)
        require(self.weight > 0, "arm weight", "> 0", self.weight)
        require(self.policy in ARM_POLICIES, f"policy of arm {self.name!r}",
                f"one of {ARM_POLICIES}", self.policy)
        unknown = sorted(set(self.models) - set(MODEL_ROLES))
        require(not unknown, f"models of arm {self.name!r}", f"keyed by roles {MODEL_ROLES}",
                unknown)
        if self.policy == "popularity":
            # The popularity list calls no model and re-ranks nothing: anything else the arm
            # set would be logged as tried and never be.
            require(not self.models, f"models of arm {self.name!r}",
                    "empty for a popularity arm (it calls no model)", self.models)
            require(not self.settings, f"settings of arm {self.name!r}",
                    "empty for a popularity arm (the popularity list is not re-ranked)",
                    self.settings)
        # Parsing validates every target; the parsed route is kept for the requests (it is
        # not a field, so `to_dict` writes `models` as given).
        object.__setattr__(self, "_route", Route(**{
            role: ModelTarget.parse(text, f"models[{role!r}] of arm {self.name!r}")
            for role, text in self.models.items()}))

    @property
    def route(self) -> Route:
        """The arm's targets by role (the default target for roles it leaves alone)."""
        return self._route


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
