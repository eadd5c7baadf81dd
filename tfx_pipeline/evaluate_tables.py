"""The standard offline protocols on your own interaction tables (`recs evaluate`).

    tables --ColumnMapping--> interactions (recs.data.tables) -> engaged, one per (user, item)
      -> per protocol: split (recs.protocols) -> records -> tf.Transform (transforms.offline)
      -> the library's default retrieval model, trained as the pipeline's Trainer trains it
         (recs.training.train_retrieval on `RetrievalConfig()`) + the same-run peers
         (recs.peers: most popular, EASE) -> full-ranking Recall@K and NDCG@K
         (recs.evaluation) -> evaluation.json + evaluation.png

It sits beside the pipeline, not in the library: tf.Transform analyzes on Beam
(`transforms.offline`), which `recs/` never imports.

The protocols (`PROTOCOLS`):

* "recbole": RecBole's general recommendation; per user a random 80/10/10 split
  (`split_per_user`); each user with test items is ranked against every item, the items they
  had in training and validation masked; Recall@K, NDCG@K and Hit@K averaged over users.
* "random": the TFRS tutorials'; one random 80/20 split of all interactions (`split_random`);
  each test pair's item is ranked against every item, nothing masked; Recall@K (top-K
  accuracy) and NDCG@K over pairs.
* "leave-last-out": temporal; per user the latest interaction tests, the one before it
  validates (`split_leave_last_out`); ranked as "recbole" ranks. Needs the mapping's
  `timestamp`.

The positives are the interactions the mapping marks engaged (a rating at or above
`positive_rating`, a weight above 0, or every row without either), each (user, item) pair once,
at its first interaction. The default model trains on the protocol's training part and picks
its parts (the item-to-item weight and anything else the Trainer chooses) on the protocol's
validation part; a protocol without one ("random") holds out `validation_share` of the
training pairs for it, as the pipeline's eval split is held out of training. The peers fit on
the whole training part; EASE's penalty is chosen on training pairs held out of its fit
(`recs.peers.fit_ease`).

Example:
    evaluate("ratings.csv", ColumnMapping(user="customer", item="sku", rating="stars"),
             "evaluation/")
"""

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from recs.config import Config, require
from recs.data.tables import ColumnMapping
from recs.types import JsonDict

RECBOLE, RANDOM, LEAVE_LAST_OUT = "recbole", "random", "leave-last-out"
PROTOCOLS = (RECBOLE, RANDOM, LEAVE_LAST_OUT)
KS = (10, 20, 50, 100)
DEFAULT, MOST_POPULAR, EASE = "default", "most_popular", "ease"
RESULT_FILE, PLOT_FILE = "evaluation.json", "evaluation.png"
# Beyond this many items EASE's items x items inverse does not fit a machine's memory; the
# peer is skipped and says so.
EASE_MAX_ITEMS = 20_000
# The records' five-point scale (recs.data.tables): 4 and above is an engaged play.
_ENGAGED_RATING = 4
_LOG = logging.getLogger(__name__)


class StageDisplay(Protocol):
    """A running stage of a `Display`."""

    def show(self, description: str) -> None:
        """Names what the stage is doing now."""

    def detail(self, text: str) -> None:
        """A line under the stage."""


class Display(Protocol):
    """Where `evaluate` shows its progress: `recs_cli.console.Console` on a terminal, or
    `LoggedDisplay`."""

    def stage(self, title: str) -> contextlib.AbstractContextManager[StageDisplay]:
        """Runs one stage."""

    def detail(self, text: str) -> None:
        """A line under the current stage."""

    def summary(self, figures: Sequence[tuple[str, str]], paths: Sequence[tuple[str, str]]
                ) -> None:
        """The closing lines: headline figures, then where the results are."""


class LoggedDisplay:
    """The `Display` of a caller without a terminal: every line logged at INFO level."""

    @contextlib.contextmanager
    def stage(self, title: str) -> Iterator["LoggedDisplay"]:
        _LOG.info("%s ...", title)
        yield self
        _LOG.info("%s: done", title)

    def show(self, description: str) -> None:
        _LOG.info("  %s", description)

    def detail(self, text: str) -> None:
        _LOG.info("  %s", text)

    def summary(self, figures: Sequence[tuple[str, str]], paths: Sequence[tuple[str, str]]
                ) -> None:
        for label, value in (*figures, *paths):
            _LOG.info("%s: %s", label, value)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(Config):
    """What `evaluate` runs.

    Attributes:
        protocols: of `PROTOCOLS`; empty runs every protocol the data allows
            ("leave-last-out" only with timestamps).
        epochs: the default model's training epochs (0: `RetrievalConfig()`'s own).
        core: keep only users and items with at least this many positives, repeatedly
            (RecBole's k-core filter, `recs.protocols.core_filter`); 1 keeps everything.
        validation_share: share of the training pairs held out as the default model's
            validation split in protocols without one.
        seed: seed of that hold-out and of the query histories' order without timestamps.
    """

    protocols: tuple[str, ...] = ()
    epochs: int = 0
    core: int = 1
    validation_share: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.protocols, tuple)
                and all(name in PROTOCOLS for name in self.protocols)
                and len(set(self.protocols)) == len(self.protocols), "protocols",
                f"distinct names of {PROTOCOLS} (empty: every one that applies)",
                self.protocols)
        require(self.epochs >= 0, "epochs", ">= 0 (0: the default model's own)", self.epochs)
        require(self.core >= 1, "core", ">= 1 (1 keeps every user and item)", self.core)
        require(0 < self.validation_share < 1, "validation_share", "in (0, 1)",
                self.validation_share)


def resolve_protocols(config: EvaluateConfig, mapping: ColumnMapping) -> tuple[str, ...]:
    """The protocols to run: the ones asked for, or every one the data allows.

    Raises:
        ValueError: "leave-last-out" asked for while the mapping names no timestamp column.
    """
    if LEAVE_LAST_OUT in config.protocols and not mapping.timestamp:
        raise ValueError(
            f"protocol {LEAVE_LAST_OUT!r} needs the time of every interaction, but the column "
            f"mapping names no timestamp column (timestamp=''). Map timestamp to the "
            f"interaction table's time column (Unix seconds or ISO-8601), or choose "
            f"{RECBOLE!r} or {RANDOM!r}.")
    if config.protocols:
        return config.protocols
    return PROTOCOLS if mapping.timestamp else (RECBOLE, RANDOM)


def evaluate(interactions: str | os.PathLike, mapping: ColumnMapping,
             out: str | os.PathLike, config: EvaluateConfig = EvaluateConfig(),
             users: str | os.PathLike | None = None, items: str | os.PathLike | None = None,
             console: Display | None = None) -> JsonDict:
    """Runs the protocols on imported tables; writes `out/evaluation.json` and
    `out/evaluation.png`.

    Args:
        interactions: the interaction table (CSV, TSV, Parquet or JSON lines).
        mapping: which columns hold what (`recs.data.tables.ColumnMapping`).
        out: the output directory (created).
        config: protocols, epochs, filtering.
        users: an optional user attribute table.
        items: an optional item attribute table.
        console: where the stages are shown; None logs them (`LoggedDisplay`).

    Returns:
        What `evaluation.json` holds: per protocol, per model (`default`, `most_popular`,
        `ease`) `recall_at_{k}` and `ndcg_at_{k}` for k in `KS` (those below the number
        of items), fit and total seconds; the
        users or pairs ranked; the default model's ratio to each peer per metric.

    Raises:
        ValueError: the mapping does not fit the tables, a protocol needs a column the
            mapping lacks, or the data leaves a protocol nothing to test on.
        FileNotFoundError: a table does not exist.
    """
    from recs.config import RetrievalConfig
    from recs.data.tables import import_tables

    console = LoggedDisplay() if console is None else console
    started = time.perf_counter()
    protocols = resolve_protocols(config, mapping)
    out = pathlib.Path(out)
    with console.stage("reading the tables"):
        imported = import_tables(interactions, mapping, users, items)
        data, counts = _positives(imported.data, config.core)
    console.detail(", ".join(f"{name.replace('_', ' ')} {value:,}"
                             for name, value in counts.items()))
    retrieval = RetrievalConfig()
    if config.epochs:
        retrieval = dataclasses.replace(retrieval, training=dataclasses.replace(
            retrieval.training, epochs=config.epochs))
    results = {}
    for name in protocols:
        with console.stage(f"protocol {name}") as stage:
            results[name] = _protocol(name, data, retrieval, config, stage)
        figures, k = results[name]["models"], results[name]["ks"][0]
        console.detail(f"{results[name]['ranked']:,} {results[name]['level']} ranked; "
                       f"NDCG@{k}: " + ", ".join(
                           f"{model} {figures[model][f'ndcg_at_{k}']:.4f}"
                           for model in figures if figures[model]))
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "interactions": str(interactions), "mapping": mapping.to_dict(),
              "counts": {**imported.counts, **counts}, "config": config.to_dict(),
              "default_model_config": retrieval.to_dict(), "ks": list(KS),
              "protocols": results, "seconds": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    # NumPy scalars from the Trainer's metrics become floats.
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2, default=float))
    plot_evaluation(results, str(out / PLOT_FILE))
    console.summary(
        [(f"{name} NDCG@10 default / EASE", _ratio_text(results[name]["ratios"], EASE))
         for name in protocols],
        [("results", str(out / RESULT_FILE)), ("plot", str(out / PLOT_FILE))])
    return result


def _ratio_text(ratios: JsonDict, peer: str) -> str:
    value = ratios.get(f"default_over_{peer}", {}).get("ndcg_at_10")
    return "-" if value is None else f"{value:.2f}x"


def _positives(data, core: int):
    """The engaged interactions, each (user, item) pair once (its first, in time order), after
    the k-core filter; the profiles and catalogue cut to what is left. Returns (data,
    counts)."""
    from recs.protocols import core_filter

    engaged = np.flatnonzero(data.ratings >= _ENGAGED_RATING)
    _, user_codes = np.unique(data.users[engaged], return_inverse=True)
    item_ids, item_codes = np.unique(data.titles[engaged], return_inverse=True)
    _, first = np.unique(user_codes.astype(np.int64) * len(item_ids) + item_codes,
                         return_index=True)
    kept = engaged[np.sort(first)]
    kept = kept[core_filter(data.users[kept], data.titles[kept], k=core)]
    if not len(kept):
        raise ValueError(f"no interactions are left to evaluate: {len(engaged)} of "
                         f"{data.num_ratings} are engaged, none survive core={core}. Lower "
                         f"core, or check the mapping's rating or weight column.")
    remaining_users, remaining_items = set(data.users[kept]), set(data.titles[kept])
    filtered = dataclasses.replace(
        data, users=data.users[kept], titles=data.titles[kept], ratings=data.ratings[kept],
        timestamps=data.timestamps[kept],
        profiles={u: p for u, p in data.profiles.items() if u in remaining_users},
        catalogue={i: c for i, c in data.catalogue.items() if i in remaining_items})
    counts = {"engaged": int(len(engaged)), "positives": int(len(kept)),
              "users": len(remaining_users), "items": len(remaining_items)}
    return filtered, counts


@dataclasses.dataclass(frozen=True)
class _Split:
    """One protocol's parts, as row indices into the positives.

    Attributes:
        train: the training part (the peers fit on all of it).
        test: the ranked part.
        fit: the default model's training rows: `train`, less `validation` when that is
            held out of it.
        validation: the default model's validation rows (its Trainer's eval split).
        known: what the test queries' histories read.
        masked: what the test ranking masks per user (RecBole: everything before the test
            part); empty for pair-level protocols.
    """

    train: np.ndarray
    test: np.ndarray
    fit: np.ndarray
    validation: np.ndarray
    known: np.ndarray
    masked: np.ndarray


def _split(name: str, data, config: EvaluateConfig) -> _Split:
    from recs.protocols import (TEST, TRAIN, VALID, split_leave_last_out, split_per_user,
                                split_random)

    if name == RECBOLE:
        part = split_per_user(data.users)
    elif name == RANDOM:
        part = split_random(data.num_ratings)
    else:
        part = split_leave_last_out(data.users, data.timestamps)
    train, valid, test = (np.flatnonzero(part == p) for p in (TRAIN, VALID, TEST))
    if not len(test) or not len(train):
        raise ValueError(f"protocol {name!r} leaves no {'test' if len(train) else 'training'} "
                         f"interactions in {data.num_ratings} positives of "
                         f"{len(set(data.users))} users; it needs users with more "
                         f"interactions (at least 3 each for {LEAVE_LAST_OUT!r}, about 10 for "
                         f"{RECBOLE!r}).")
    before_test = np.sort(np.concatenate([train, valid]))
    masked = train[:0] if name == RANDOM else before_test
    # Leave-last-out: the validation item precedes the test one, so it is known by then.
    known = before_test if name == LEAVE_LAST_OUT else train
    if len(valid):
        return _Split(train=train, test=test, fit=train, validation=valid, known=known,
                      masked=masked)
    # No validation part (the random protocol; users too short for one): the default model's
    # is held out of its training rows, as the pipeline's eval split is.
    held = np.random.default_rng(config.seed).random(len(train)) < config.validation_share
    if not held.any():
        held[np.random.default_rng(config.seed).integers(len(train))] = True
    return _Split(train=train, test=test, fit=train[~held], validation=train[held],
                  known=known, masked=masked)


def _user_queries(data, query_users: Sequence[str], known: np.ndarray, reference: np.ndarray,
                  seed: int) -> list[JsonDict]:
    """One query record per user: the profile and context of their latest known
    interaction, and every known item as history (most recent first; without timestamps in
    a seeded random order, so the towers' first 30 are a sample)."""
    from recs import features as F
    from recs.data.movielens import interaction_records

    by_user: dict[str, list[int]] = {}
    for row in known:  # Rows are in time order (import_tables sorts them).
        by_user.setdefault(data.users[row], []).append(int(row))
    latest = np.array([by_user[user][-1] for user in query_users], dtype=np.int64)
    records = interaction_records(data, latest, reference=reference)
    rng = np.random.default_rng(seed)
    timed = bool(data.timestamps.any())
    for record, user in zip(records, query_users):
        titles = data.titles[by_user[user][::-1]]
        if not timed:
            titles = rng.permutation(titles)
        record[F.HISTORY] = "|".join(titles[:F.MAX_WATCHED])
    return records


def _embed(tower, columns: dict[str, np.ndarray], batch: int = 4096) -> np.ndarray:
    count = len(next(iter(columns.values())))
    return np.concatenate([np.asarray(tower({k: v[i:i + batch] for k, v in columns.items()}))
                           for i in range(0, count, batch)])


def _dataset(columns: dict[str, np.ndarray], batch_size: int, seed: int | None):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(columns)
    if seed is not None:
        data = data.shuffle(len(next(iter(columns.values()))), seed=seed,
                            reshuffle_each_iteration=True)
    return data.batch(batch_size)


def _protocol(name: str, data, retrieval, config: EvaluateConfig, stage: StageDisplay
              ) -> JsonDict:
    """Splits, transforms, fits the default model and the peers, and ranks every item."""
    from recs.data.movielens import catalogue_records, interaction_records
    from recs.evaluation import pair_metrics, user_metrics
    from recs.models.encoders import FeatureSizes
    from recs.peers import (ease_scores, fit_ease, popular_scores, popularity,
                            user_histories)
    from recs.training import train_retrieval
    from transforms.offline import analyze_and_transform

    started = time.perf_counter()
    split = _split(name, data, config)
    items = list(data.catalogue)
    index = {item: i for i, item in enumerate(items)}
    item_index = np.array([index[item] for item in data.titles], dtype=np.int64)
    pair_level = name == RANDOM

    # The ranked queries: test pairs, or one row per user with test items.
    if pair_level:
        queries = interaction_records(data, split.test, reference=split.train)
        query_users = data.users[split.test]
        targets = item_index[split.test]
    else:
        query_users = sorted(set(data.users[split.test]))
        queries = _user_queries(data, query_users, split.known, split.train, config.seed)
        position = {user: i for i, user in enumerate(query_users)}
        test_items: list[list[int]] = [[] for _ in query_users]
        masked: list[list[int]] = [[] for _ in query_users]
        for row in split.test:
            test_items[position[data.users[row]]].append(item_index[row])
        for row in split.masked:
            if data.users[row] in position:
                masked[position[data.users[row]]].append(item_index[row])
        test_items = [np.array(values, dtype=np.int64) for values in test_items]
        masked = [np.array(values, dtype=np.int64) for values in masked]

    # A cut-off at or above the catalogue's size would put every item in the top K.
    ks = tuple(k for k in KS if k < len(items)) or (len(items),)

    def measure(score) -> dict[str, float]:
        if pair_level:
            return pair_metrics(score, targets, ks)
        return user_metrics(score, test_items, ks, exclude=masked)

    stage.show("tf.Transform")
    train_records = interaction_records(data, split.train, reference=split.train)
    # Validation rows held out of the training part are a subset of its columns; a
    # protocol's own validation part is transformed apart. Candidate rows follow `items`.
    inside = len(split.fit) < len(split.train)
    others = [queries, catalogue_records(data, split.train)]
    if not inside:
        others.append(interaction_records(data, split.validation, reference=split.train))
    with tempfile.TemporaryDirectory(prefix="recs-evaluate-") as workdir:
        transformed = analyze_and_transform(train_records, others, workdir)
        sizes = FeatureSizes.from_transform_output(transformed.output)
    train_columns, query_columns, candidate_columns = transformed.columns[:3]
    if inside:
        held = np.isin(split.train, split.validation)
        validation_columns = {k: v[held] for k, v in train_columns.items()}
        fit_columns = {k: v[~held] for k, v in train_columns.items()}
    else:
        validation_columns, fit_columns = transformed.columns[3], train_columns

    models: dict[str, JsonDict | None] = {}
    stage.show("training the default model")
    fit_start = time.perf_counter()
    trained = train_retrieval(_dataset(fit_columns, retrieval.training.batch_size,
                                       retrieval.training.seed),
                              _dataset(validation_columns, retrieval.training.batch_size, None),
                              sizes, retrieval)
    query_vectors = _embed(trained.model.query_tower, query_columns)
    candidate_vectors = _embed(trained.model.candidate_tower, candidate_columns)
    fit_seconds = time.perf_counter() - fit_start
    models[DEFAULT] = _timed(measure, lambda rows: query_vectors[rows] @ candidate_vectors.T,
                             fit_seconds) | {"trainer_metrics": trained.metrics}
    stage.detail(f"tf.Transform {transformed.seconds:.0f} s; default model {fit_seconds:.0f} s "
                 f"(the Trainer's choices: " + ", ".join(
                     f"{key} {value:g}" for key, value in trained.metrics.items()
                     if "weight" in key and "_weight_" not in key) + ")")

    stage.show("most popular")
    fit_start = time.perf_counter()
    counts = popularity(item_index[split.train], len(items))
    models[MOST_POPULAR] = _timed(measure, popular_scores(counts),
                                  time.perf_counter() - fit_start)

    if len(items) <= EASE_MAX_ITEMS:
        stage.show("EASE")
        fit_start = time.perf_counter()
        ease = fit_ease(data.users[split.train], item_index[split.train], len(items))
        histories = user_histories(query_users, data.users[split.known],
                                   item_index[split.known], len(items))
        models[EASE] = _timed(measure, ease_scores(ease.weights, histories),
                              time.perf_counter() - fit_start) | {
            "l2": ease.l2, f"held_out_recall_at_{ease.k}_by_l2": ease.held_out_recall_by_l2}
    else:
        models[EASE] = None
    peers = [peer for peer in (MOST_POPULAR, EASE) if models[peer]]
    ratios = {f"default_over_{peer}": {
        metric: (models[DEFAULT][metric] / models[peer][metric] if models[peer][metric]
                 else None) for metric in _metric_names(models[DEFAULT])} for peer in peers}
    return {"level": "pairs" if pair_level else "users",
            "ranked": int(len(targets) if pair_level else len(query_users)),
            "train_pairs": int(len(split.train)), "validation_pairs": int(len(split.validation)),
            "default_model_fit_pairs": int(len(split.fit)), "test_pairs": int(len(split.test)),
            "candidates": len(items), "ks": list(ks), "training_items_masked": not pair_level,
            "models": models, "ratios": ratios,
            "skipped": {} if models[EASE] else {
                EASE: f"{len(items)} items: above EASE_MAX_ITEMS ({EASE_MAX_ITEMS})"},
            "transform_seconds": transformed.seconds,
            "seconds": time.perf_counter() - started}


def _metric_names(figures: JsonDict) -> list[str]:
    return [name for name in figures if name.split("_at_")[0] in ("recall", "ndcg", "hit")]


def _timed(measure, score, fit_seconds: float) -> JsonDict:
    start = time.perf_counter()
    metrics = measure(score)
    return {**metrics, "fit_seconds": fit_seconds,
            "seconds": fit_seconds + time.perf_counter() - start}


def plot_evaluation(results: JsonDict, path: str) -> None:
    """Writes grouped bars to a PNG: a row per protocol, Recall@K and NDCG@K side by side,
    one bar per model at each K.

    Args:
        results: `evaluate`'s "protocols" part.
        path: where the PNG goes.
    """
    from recs.plots import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(len(results), 2, figsize=(10, 3.4 * len(results)),
                                squeeze=False, layout="constrained")
    for row, (name, result) in enumerate(results.items()):
        models = {model: figures for model, figures in result["models"].items() if figures}
        width, ks = 0.8 / len(models), result["ks"]
        for axis, metric in zip(axes[row], ("recall", "ndcg")):
            for number, (model, figures) in enumerate(models.items()):
                axis.bar(np.arange(len(ks)) + (number - (len(models) - 1) / 2) * width,
                         [figures[f"{metric}_at_{k}"] for k in ks], width, label=model)
            axis.set_xticks(range(len(ks)), [f"@{k}" for k in ks])
            axis.set_title(f"{name}: {'Recall' if metric == 'recall' else 'NDCG'}@K "
                           f"({result['ranked']:,} {result['level']})", fontsize="medium")
            axis.grid(alpha=0.3, axis="y")
            axis.legend(fontsize="small")
    figure.suptitle("recs evaluate: the default model and same-run peers, full ranking")
    save_figure(figure, path)
