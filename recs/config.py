"""Typed, frozen configuration of the library's models, training and index.

Configs travel to TFX `run_fn`s as JSON inside `custom_config` and come back with `from_dict`.
Every field is validated in `__post_init__`, so a bad value fails where it is written, not
three components later.
"""

import dataclasses
import json
import math
import typing
from typing import Any, TypeVar

from recs.evaluation import parse_pair_metric

_C = TypeVar("_C", bound="Config")


class Config:
    """Mixin: dict/JSON round-trip for frozen dataclasses, nested ones included."""

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as plain JSON-compatible values."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[_C], values: dict[str, Any]) -> _C:
        """Builds the config from `to_dict()` output.

        Raises:
            ValueError: `values` has a key that is not a field of this config.
        """
        fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(
                f"{cls.__name__} got unknown keys {unknown}; expected a subset of "
                f"{sorted(fields)}. Check the spelling in custom_config.")
        hints = typing.get_type_hints(cls)
        kwargs = {name: _coerce(hints[name], value) for name, value in values.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[_C], text: str) -> _C:
        return cls.from_dict(json.loads(text))


def _coerce(hint: Any, value: Any) -> Any:
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
        return hint.from_dict(value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        items = typing.get_args(hint)
        item = items[0] if len(items) == 2 and items[1] is Ellipsis else None
        return tuple(_coerce(item, v) if item is not None else v for v in value)
    return value


def require(condition: bool, name: str, expected: str, received: object) -> None:
    if not condition:
        raise ValueError(f"{name} must be {expected}; received {received!r}.")


def _is_pair_metric(name: object) -> bool:
    if not isinstance(name, str):
        return False
    try:
        parse_pair_metric(name)
    except ValueError:
        return False
    return True


def _positive_layers(name: str, layers: tuple[int, ...]) -> None:
    require(len(layers) > 0 and all(isinstance(n, int) and n > 0 for n in layers), name,
             "a non-empty tuple of positive ints such as (128, 64)", layers)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Config):
    """How a model is fitted.

    Attributes:
        batch_size: examples per step.
        epochs: passes over the training split (the run_fn iterates the split this many
            times; TFX's train_args are not used to count steps).
        learning_rate: optimizer step size.
        optimizer: "adam", "adagrad" or "sgd".
        seed: seeds TensorFlow, NumPy and dataset shuffling.
    """

    batch_size: int = 256
    epochs: int = 3
    learning_rate: float = 0.01
    optimizer: str = "adam"
    seed: int = 42

    def __post_init__(self) -> None:
        require(self.batch_size > 0, "batch_size", "> 0", self.batch_size)
        require(self.epochs > 0, "epochs", "> 0", self.epochs)
        require(self.learning_rate > 0, "learning_rate", "> 0", self.learning_rate)
        require(self.optimizer in ("adam", "adagrad", "sgd"), "optimizer",
                 "one of 'adam', 'adagrad', 'sgd'", self.optimizer)


ITEM_ITEM_METHODS = ("auto", "dense", "low_rank")


@dataclasses.dataclass(frozen=True)
class ItemItemConfig(Config):
    """Co-watching item-to-item scores added to the two-tower score (`recs.models.item_item`).

    Attributes:
        enabled: after the towers train, fit the item-to-item weights in closed form
            (DLAE, or EASE with `dropout` 0) on the engaged training pairs and append their
            low-rank factors to both towers' embeddings, so that the retrieval score is tower
            score + weight * item-to-item score of the query's watch history (the README
            gives the measured effect). The
            weight is chosen on the evaluation split among `weights`, 0 included: when 0
            wins, the factors are not exported and the embeddings keep the towers' width.
        method: "dense" (the exact closed form on one titles x titles float32 matrix),
            "low_rank" (never forms titles x titles: memory linear in titles), or "auto":
            dense up to `dense_max_titles` titles, low-rank above.
        l2: the base L2 penalty of every title.
        dropout: DLAE's input dropout p: each title's penalty grows by p / (1 - p) times its
            play count, which regularizes popular titles more than EASE's one penalty; 0
            fits EASE (whose published best penalty on MovieLens is 1000).
        rank: width of the factors appended to each embedding.
        components: eigenpairs of the co-occurrence matrix the low-rank fit keeps before
            truncating to `rank`.
        dense_max_titles: the largest catalogue "auto" fits densely (titles^2 * 4 bytes of
            memory and titles^3 flops).
        weights: blend weights tried on the evaluation split; the one with the best
            `RetrievalConfig.selection` metric (NDCG@10 by default; each row's played titles
            left out of its ranking) is attached, 0 turning the item-to-item part off. The
            range is wide because the item-to-item scores' scale follows `l2` and how dense
            co-watching is.
        seed: seed of the randomized factorizations.
    """

    enabled: bool = True
    method: str = "auto"
    l2: float = 500.0
    dropout: float = 0.5
    rank: int = 64
    components: int = 512
    dense_max_titles: int = 20_000
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.method in ITEM_ITEM_METHODS, "method",
                f"one of {', '.join(map(repr, ITEM_ITEM_METHODS))}", self.method)
        require(self.l2 > 0, "l2", "> 0", self.l2)
        require(0 <= self.dropout < 1, "dropout", "in [0, 1) (0 fits EASE)", self.dropout)
        require(self.rank > 0, "rank", "> 0", self.rank)
        require(self.components >= self.rank, "components", f">= rank ({self.rank})",
                self.components)
        require(self.dense_max_titles > 0, "dense_max_titles", "> 0", self.dense_max_titles)
        require(len(self.weights) > 0 and all(w >= 0 for w in self.weights), "weights",
                "a non-empty tuple of floats >= 0 such as (0.0, 0.5, 1.0)", self.weights)


@dataclasses.dataclass(frozen=True)
class ColdStartConfig(Config):
    """The popularity prior that carries users the towers know little about
    (`recs.models.cold_start`).

    Attributes:
        enabled: after training, fit the smoothed log-popularity of each title within each
            age segment and append it to the embeddings, weighted per query by how much is
            known of the user (a known or new user id, and how many plays are in the history),
            so that a user with thin evidence backs off to what their segment watches. Every
            weight is chosen on the evaluation split among `weights`, 0 included; the new-user
            weights on its users shown as new ones (id unknown, history cut to 0, 1, 2, ...
            plays). When every weight is 0 nothing is attached.
        weights: prior weights tried (retrieval scores are cosines of unit-norm tower
            embeddings plus the item-to-item scores; the prior is a log-probability).
        smoothing: pseudo-counts pulling a segment's title distribution towards the whole
            audience's (1e12, far above any segment's plays: the whole audience's popularity
            itself, which the prior can then reach with a large weight); the value with the
            best zero-play new-user `RetrievalConfig.selection` metric is kept.
        average_start: start new titles from the play-weighted average of the known ids'
            embeddings (no training pair reaches the out-of-vocabulary row), and new users
            too when that raises the zero-play new-user `RetrievalConfig.selection` metric
            (their row is trained only when `cold_start_dropout` > 0, and then left as
            trained).
        stated_preferences: whether a new user's profile states their preferred genres at
            sign-up; when False (preferences derived from plays, as `recs import` and the
            MovieLens adapters derive them) the held-out users shown as new lose theirs too.
        min_pairs: evaluation pairs a weight is fitted on at least; a group with fewer takes
            its neighbour's weight.
        max_pairs: evaluation pairs the fit samples at most (seeded), so that it stays cheap
            on large evaluation splits; fewer on large catalogues (2e8 / titles).
        seed: seed of that sample.
    """

    enabled: bool = True
    weights: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3,
                                  0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    smoothing: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0, 1e12)
    average_start: bool = True
    stated_preferences: bool = False
    min_pairs: int = 30
    max_pairs: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        require(len(self.weights) > 0 and all(w >= 0 for w in self.weights), "weights",
                "a non-empty tuple of floats >= 0 such as (0.0, 0.1, 1.0)", self.weights)
        require(len(self.smoothing) > 0 and all(m > 0 for m in self.smoothing), "smoothing",
                "a non-empty tuple of floats > 0 such as (10.0, 100.0)", self.smoothing)
        require(self.min_pairs > 0, "min_pairs", "> 0", self.min_pairs)
        require(self.max_pairs >= self.min_pairs, "max_pairs", f">= min_pairs "
                f"({self.min_pairs})", self.max_pairs)


@dataclasses.dataclass(frozen=True)
class RetrievalConfig(Config):
    """The two-tower retrieval model.

    Attributes:
        embedding_dim: width of every id and token embedding inside the towers.
        tower_layers: Dense widths of each tower; the last one is the output embedding size.
        temperature: softmax temperature of the in-batch retrieval loss; embeddings are
            L2-normalized, so scores are cosines divided by this.
        logq_correction: subtract log(sampling probability) from in-batch logits, so that
            popular titles, over-represented as negatives, are not pushed down (sampling-bias
            correction; see `recs.features.SAMPLING_PROBABILITY`).
        num_hard_negatives: hard-negative mining: keep only this many highest-scoring
            in-batch negatives per query in the softmax (TFRS's `HardNegativeMining`); 0 keeps
            every negative.
        eval_k: K of the Recall@K reported after training.
        selection: the pair-level metric on the evaluation split by which the Trainer picks
            the item-to-item weight and the cold-start prior's weights, `ndcg_at_K` or
            `recall_at_K`: by default the top of the list, the titles a member sees first.
        cold_start_dropout: share of training queries shown as a new user's (user id out of
            vocabulary, no watch history), so that the query tower also learns to serve from
            profile and context alone.
        item_item: co-watching item-to-item scores added to the towers' (on by default;
            attached only when they help on the eval split).
        cold_start: the popularity prior for users with little evidence (on by default;
            attached only when it helps on the eval split).
        training: optimizer settings.
    """

    embedding_dim: int = 32
    tower_layers: tuple[int, ...] = (64, 32)
    temperature: float = 0.1
    logq_correction: bool = True
    num_hard_negatives: int = 0
    eval_k: int = 100
    selection: str = "ndcg_at_10"
    cold_start_dropout: float = 0.0
    item_item: ItemItemConfig = ItemItemConfig()
    cold_start: ColdStartConfig = ColdStartConfig()
    training: TrainingConfig = TrainingConfig(batch_size=512, epochs=5, learning_rate=0.05,
                                              optimizer="adagrad")

    def __post_init__(self) -> None:
        require(self.embedding_dim > 0, "embedding_dim", "> 0", self.embedding_dim)
        _positive_layers("tower_layers", self.tower_layers)
        require(self.temperature > 0, "temperature", "> 0", self.temperature)
        require(self.num_hard_negatives >= 0, "num_hard_negatives", ">= 0 (0 = all)",
                self.num_hard_negatives)
        require(self.eval_k > 0, "eval_k", "> 0", self.eval_k)
        require(_is_pair_metric(self.selection), "selection",
                "recall_at_K or ndcg_at_K with K > 0", self.selection)
        require(0.0 <= self.cold_start_dropout < 1.0, "cold_start_dropout", "in [0, 1)",
                self.cold_start_dropout)

    @property
    def output_dim(self) -> int:
        """Widest exported embeddings: the towers' last layer, plus the item-to-item factors
        and the popularity prior's age segments when they are enabled (each is left out when
        the evaluation split turns it off)."""
        # Imported here: the contract's modules import this one.
        from recs.contract.features import AGE_BUCKETS

        return (self.tower_layers[-1] + (self.item_item.rank if self.item_item.enabled else 0)
                + (AGE_BUCKETS if self.cold_start.enabled else 0))


BLENDS = ("average", "stacked")


@dataclasses.dataclass(frozen=True)
class TreeRankerConfig(Config):
    """The gradient-boosted tree ranker (TF-DF) and its blend with the deep ranker.

    Attributes:
        enabled: the ranker Trainer also fits the trees and exports the blend (see
            `recs.ensemble`); off by default: it costs several times the training time, and
            stock TF Serving cannot load it (the README gives the measured gain).
        num_trees: maximum number of trees (TF-DF stops earlier when its validation loss
            stops improving).
        max_depth: depth of each tree.
        shrinkage: learning rate of the boosting.
        max_categories: most frequent values kept per categorical feature; rarer ids share
            one bucket.
        blend: "average" or "stacked" (see the module docstring).
        seed: TF-DF's random seed.
    """

    enabled: bool = False
    num_trees: int = 300
    max_depth: int = 6
    shrinkage: float = 0.1
    max_categories: int = 2000
    blend: str = "stacked"
    seed: int = 42

    def __post_init__(self) -> None:
        require(self.num_trees > 0, "num_trees", "> 0", self.num_trees)
        require(self.max_depth > 0, "max_depth", "> 0", self.max_depth)
        require(0.0 < self.shrinkage <= 1.0, "shrinkage", "in (0, 1]", self.shrinkage)
        require(self.max_categories > 1, "max_categories", "> 1", self.max_categories)
        require(self.blend in BLENDS, "blend", f"one of {BLENDS}", self.blend)


@dataclasses.dataclass(frozen=True)
class RankerConfig(Config):
    """The deep sigmoid ranker: ReLU layers, one sigmoid unit, binary cross-entropy.

    Attributes:
        embedding_dim: width of every id and token embedding.
        hidden_layers: ReLU Dense widths, default 128 -> 64 (then 1 sigmoid).
        dropout: dropout rate after each hidden layer.
        tower_features: also read the retrieval model's query and title embeddings and their
            dot product (the retrieval score), from its two towers frozen as they were trained
            (`recs.models.ranker.DeepRanker`'s `towers`; in the pipeline, the retrieval
            Trainer's model of the same run).
        training: optimizer settings.
        trees: the gradient-boosted tree ranker blended with this one (off by default).
    """

    embedding_dim: int = 16
    hidden_layers: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    tower_features: bool = False
    training: TrainingConfig = TrainingConfig(batch_size=256, epochs=3, learning_rate=0.003,
                                              optimizer="adam")
    trees: TreeRankerConfig = TreeRankerConfig()

    def __post_init__(self) -> None:
        require(self.embedding_dim > 0, "embedding_dim", "> 0", self.embedding_dim)
        _positive_layers("hidden_layers", self.hidden_layers)
        require(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)


@dataclasses.dataclass(frozen=True)
class IndexConfig(Config):
    """The ScaNN index over candidate embeddings.

    Attributes:
        k: how many candidates a retrieval request returns.
        num_leaves: partitions; 0 picks about sqrt(catalogue size).
        num_leaves_to_search: partitions probed per query; 0 picks enough to expect 4k
            candidates, at least a quarter of num_leaves.
        num_reordering_candidates: exact re-scoring depth; 0 picks 4 * k.
        dimensions_per_block: asymmetric-hashing block size; more compresses harder, scores
            faster and recalls less.
        min_recall: recall@k against brute force, on held-out queries, that blesses an index.
        eval_queries: held-out queries used to measure that recall.
        tune: search the settings for the fastest that reaches `min_recall + tuning_margin`
            on half of the held-out queries (the other half validates); explicit settings
            above are then ignored.
        tuning_margin: recall the tuner asks for beyond `min_recall`, so that the validation
            half clears the gate too.
    """

    k: int = 100
    num_leaves: int = 0
    num_leaves_to_search: int = 0
    num_reordering_candidates: int = 0
    dimensions_per_block: int = 2
    min_recall: float = 0.95
    eval_queries: int = 500
    tune: bool = True
    tuning_margin: float = 0.02

    def __post_init__(self) -> None:
        require(self.k > 0, "k", "> 0", self.k)
        for name in ("num_leaves", "num_leaves_to_search", "num_reordering_candidates"):
            require(getattr(self, name) >= 0, name, ">= 0 (0 = automatic)", getattr(self, name))
        require(self.dimensions_per_block in (1, 2, 4), "dimensions_per_block", "1, 2 or 4",
                self.dimensions_per_block)
        require(0.0 <= self.min_recall <= 1.0, "min_recall", "in [0, 1]", self.min_recall)
        require(self.eval_queries > 0, "eval_queries", "> 0", self.eval_queries)
        require(0.0 <= self.tuning_margin < 1.0, "tuning_margin", "in [0, 1)",
                self.tuning_margin)

    @property
    def tuning_target(self) -> float:
        """The recall the tuner must reach on its half of the held-out queries."""
        return min(1.0, self.min_recall + self.tuning_margin)

    def resolved(self, num_candidates: int) -> "IndexConfig":
        """Returns a copy with every automatic (0) setting sized for `num_candidates`."""
        require(num_candidates > 0, "num_candidates", "> 0", num_candidates)
        leaves = self.num_leaves or max(1, min(num_candidates, round(num_candidates ** 0.5)))
        k = min(self.k, num_candidates)
        reorder = self.num_reordering_candidates or 4 * k
        # Probe enough partitions to expect as many candidates as the re-ordering depth.
        enough = math.ceil(reorder * leaves / num_candidates)
        return dataclasses.replace(
            self,
            k=k,
            num_leaves=leaves,
            num_leaves_to_search=min(leaves, self.num_leaves_to_search or max(enough,
                                                                              leaves // 4)),
            num_reordering_candidates=reorder,
        )
