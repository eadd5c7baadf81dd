"""Fitting and evaluating the retrieval model and the ranker on transformed-feature datasets.

Datasets are `tf.data.Dataset`s of batched dicts of transformed features, label included, as
TFX's `data_accessor.tf_dataset_factory` yields them; the functions here never read files.
"""

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from recs import features as F
from recs.config import RankerConfig, RetrievalConfig, TrainingConfig
from recs.distribute import shard_by_data
from recs.evaluation import blended_metric, pair_metrics, parse_pair_metric
from recs.models.cold_start import (HISTORY_BOUNDARIES, HISTORY_BUCKETS, KNOWN, NEW,
                                    ColdStartPrior, average_start, history_bucket,
                                    restore_row, segment_log_popularity)
from recs.models.encoders import FeatureSizes
from recs.models.item_item import ItemItemFactors, fit_item_item, item_item_layers
from recs.models.ranker import DeepRanker
from recs.models.retrieval import Tower, TwoTowerModel

_LABEL = F.transformed_name(F.LABEL)


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """A fitted model, its per-epoch history and its held-out metrics."""

    model: tf.keras.Model
    history: dict[str, list[float]]
    metrics: dict[str, float]


def make_optimizer(config: TrainingConfig) -> tf.keras.optimizers.Optimizer:
    optimizers = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad,
                  "sgd": tf.keras.optimizers.SGD}
    return optimizers[config.optimizer](learning_rate=config.learning_rate)


def engaged_only(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Keeps the rows of a batch whose label is 1: the positive pairs of retrieval."""
    keep = tf.equal(tf.reshape(batch[_LABEL], [-1]), 1)
    return {key: tf.boolean_mask(value, keep) for key, value in batch.items()}


def positive_batches(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`engaged_only` of every batch, dropping batches left with no row: a batch of only
    unengaged plays (a small last batch, a quiet span) holds no positive pair, and an empty
    batch would fail the retrieval loss's in-batch softmax."""
    return dataset.map(engaged_only).filter(
        lambda batch: tf.shape(batch[_LABEL])[0] > 0)


def features_and_label(batch: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Splits a batch into (features, `[batch_size, 1]` float label) for Keras `fit`."""
    features = {key: value for key, value in batch.items() if key != _LABEL}
    return features, tf.cast(tf.reshape(batch[_LABEL], [-1, 1]), tf.float32)


def _history(history: tf.keras.callbacks.History) -> dict[str, list[float]]:
    return {name: [float(v) for v in values] for name, values in history.history.items()}


class EpochMeans(tf.keras.callbacks.Callback):
    """Puts each epoch's mean of the per-batch figures in its logs, for training and validation.

    `tfrs.Model`'s train and test steps return the current batch's loss, not a running mean
    as compiled Keras metrics do, so without this the history holds each epoch's last batch
    (a partial one, often). Every figure a batch reports (`loss`, `regularization_loss`,
    `total_loss`) becomes its mean over the epoch's batches, validation ones under `val_`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sums: dict[str, dict[str, float]] = {}
        self._batches: dict[str, int] = {}

    def _reset(self, prefix: str) -> None:
        self._sums[prefix], self._batches[prefix] = {}, 0

    def _add(self, prefix: str, logs: dict | None) -> None:
        self._batches[prefix] += 1
        for name, value in (logs or {}).items():
            self._sums[prefix][name] = self._sums[prefix].get(name, 0.0) + float(value)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._reset("")
        self._reset("val_")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._add("", logs)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._reset("val_")

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._add("val_", logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for prefix, sums in self._sums.items():
            for name, total in sums.items():
                if logs is not None and prefix + name in logs:
                    logs[prefix + name] = total / self._batches[prefix]


class ValidationRecall(tf.keras.callbacks.Callback):
    """Adds `val_recall_at_{k}` to each epoch's logs: the exact brute-force Recall@K of the
    model so far, the same that training reports at the end.

    Args:
        rows: the candidate and test-pair rows (`_pair_rows`), read once by the caller.
        k: cut-off.
    """

    def __init__(self, rows: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
                 k: int) -> None:
        super().__init__()
        self._rows, self._k = rows, k

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            pairs = _embed_pairs(self.model.query_tower, self.model.candidate_tower,
                                 *self._rows)
            logs[f"val_recall_at_{self._k}"] = pairs.recall(self._k)


def train_retrieval(train: tf.data.Dataset, evaluation: tf.data.Dataset, sizes: FeatureSizes,
                    config: RetrievalConfig, strategy: tf.distribute.Strategy | None = None,
                    initialize: Callable[[TwoTowerModel], None] | None = None
                    ) -> TrainingResult:
    """Fits the two-tower model on engaged interactions and measures Recall@K.

    Args:
        train: batches of transformed features, label included.
        evaluation: held-out batches of the same form.
        sizes: vocabulary sizes from tf.Transform.
        config: model and optimizer settings.
        strategy: where the variables live (`recs.distribute.strategy_from_environment()`
            for multi-worker training); the default strategy when None. Under a multi-worker
            strategy the in-batch negatives come from each worker's share of the batch.

    Returns:
        The fitted `TwoTowerModel`; metrics hold `recall_at_{k}` over the catalogue seen in
        `train` and `evaluation` (exact brute-force search, training items not excluded).
        With `config.item_item.enabled` the towers carry the item-to-item factors, their
        blend weight is the one of `config.item_item.weights` with the best
        `config.selection` metric on `evaluation`, each row's played titles left out of its
        ranking as the service leaves them out (at weight 0 they are not attached), and
        metrics also hold that weight and that metric of every weight tried (before the
        prior), `{selection}_item_item_weight_{w}`. With
        `config.cold_start.enabled` the towers then carry the cold-start prior when any of
        its weights won (`fit_cold_start`, whose metrics are merged in). `recall_at_{k}` is
        the returned model's, every part it carries included.
    """
    tf.keras.utils.set_random_seed(config.training.seed)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = TwoTowerModel(sizes, config)
        model.compile(optimizer=make_optimizer(config.training))
        if initialize is not None:
            batch = next(iter(train))
            model.query_tower(batch)
            model.candidate_tower(batch)
            initialize(model)
    # Read once (a pass over the training data): each epoch's recall and the final one.
    rows = _pair_rows(train.concatenate(evaluation), evaluation)
    history = model.fit(shard_by_data(positive_batches(train)), epochs=config.training.epochs,
                        validation_data=shard_by_data(positive_batches(evaluation)), verbose=2,
                        callbacks=[EpochMeans(), ValidationRecall(rows, config.eval_k)])
    metrics = _attach_item_item(model, train, rows, sizes, config, strategy)
    if config.cold_start.enabled:
        prior, fitted = fit_cold_start(model, train, rows, sizes, config)
        metrics.update(fitted)
        if prior.active:
            with (strategy or tf.distribute.get_strategy()).scope():
                model.attach_cold_start(prior)
    name = f"recall_at_{config.eval_k}"
    metrics[name] = _embed_pairs(model.query_tower, model.candidate_tower,
                                 *rows).recall(config.eval_k)
    return TrainingResult(model=model, history=_history(history), metrics=metrics)


def _attach_item_item(model: TwoTowerModel, train: tf.data.Dataset,
                      rows: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
                      sizes: FeatureSizes, config: RetrievalConfig,
                      strategy: tf.distribute.Strategy | None) -> dict[str, float]:
    """Fits the item-to-item part, attaches it at the weight with the best
    `config.selection` metric on the evaluation rows (each row's played titles left out of
    its ranking, `played_positions`; not attached at all when 0 wins) and returns that
    metric of each weight."""
    # The item-to-item part reads the watched titles; data without them trains the towers
    # alone.
    if not config.item_item.enabled or F.WATCHED not in rows[1]:
        return {}
    factors = item_item_factors(train, sizes, config)
    query, candidate = item_item_layers(factors, weight=1.0)
    # Embedded once at weight 1, before anything is attached: each weight only scales the
    # query's item-to-item columns, and at weight 0 the towers export alone.
    pairs = _embed_pairs(lambda batch: tf.concat([model.query_tower(batch), query(batch)], 1),
                         lambda batch: tf.concat([model.candidate_tower(batch),
                                                  candidate(batch)], 1),
                         *rows)
    queries = np.split(np.asarray(pairs.queries), [-config.item_item.rank], axis=1)
    candidates = np.split(np.asarray(pairs.candidates), [-config.item_item.rank], axis=1)
    kind, k = parse_pair_metric(config.selection)
    by_weight = blended_metric(lambda r: queries[0][r] @ candidates[0].T,
                               lambda r: queries[1][r] @ candidates[1].T,
                               config.item_item.weights, pairs.positions(),
                               min(k, len(candidates[0])), kind,
                               exclude=played_positions(rows[1][F.WATCHED],
                                                        pairs.candidate_titles.ravel()))
    best = max(by_weight, key=lambda weight: (by_weight[weight], -weight))
    if best > 0:
        with (strategy or tf.distribute.get_strategy()).scope():
            model.attach_item_item(factors, weight=best)
    return {"item_item_weight": best,
            **{f"{config.selection}_item_item_weight_{weight:g}": value
               for weight, value in by_weight.items()}}


_COLD_START_SCORES = 200_000_000
"""Pair x candidate scores the cold-start fit's sample holds at most per pass."""

COLD_START_PLAYS = (0,) + HISTORY_BOUNDARIES
"""Plays a held-out user is shown with to fit each history bucket's new-user weight: the
bucket's smallest count."""


def first_plays(histories: np.ndarray, played: int) -> tuple[np.ndarray, np.ndarray]:
    """Each history's first `played` plays, for the rows that have that many.

    Histories are most recent first, 0 is padding, and an out-of-vocabulary title is a 0 where
    it stands (`transforms.preprocessing`), so the plays are a row's non-zero ids and the
    first ones are the last of those.

    Args:
        histories: `[rows, length]` title ids + 1.
        played: how many plays to keep.

    Returns:
        (`[eligible]` indices of the rows with at least `played` plays,
        `[eligible, played]` their first plays, most recent first).

    Example:
        >>> first_plays(np.array([[5, 0, 4, 3, 0], [2, 0, 0, 0, 0]]), 2)
        (array([0]), array([[4, 3]]))
    """
    plays = [row[row != 0] for row in histories]
    eligible = np.array([index for index, ids in enumerate(plays) if len(ids) >= played],
                        np.int64)
    first = np.zeros((len(eligible), played), np.int64)
    for line, index in enumerate(eligible):
        first[line] = plays[index][len(plays[index]) - played:]
    return eligible, first


def fit_cold_start(model: TwoTowerModel, train: tf.data.Dataset,
                   rows: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
                   sizes: FeatureSizes, config: RetrievalConfig
                   ) -> tuple[ColdStartPrior, dict[str, float]]:
    """Fits the popularity prior (`recs.models.cold_start`) on held-out users.

    The evaluation rows are shown twice: as they are (known users, weights by their own
    history bucket) and as new users (id out of vocabulary, no preferred genres unless
    `stated_preferences`, history cut to the user's first plays, as many as each bucket's
    smallest count: `COLD_START_PLAYS`; the pair's title is then any later play, not only
    the next one). For each group the weight with the best `config.selection` metric (the
    plays a row is shown with left out of its ranking) wins, 0 included; the smoothing
    count is the one with the best zero-play new-user metric. With
    `config.cold_start.average_start` new titles start from the average id embedding, and
    new users too (when no cold-start dropout trained their row) if that raises the
    zero-play new-user metric; the towers keep it.

    The weights are chosen on the rows they are then scored on (as the item-to-item weight
    is), and the evaluation users shown as new ones were trained on unless the evaluation
    split holds users out: rows of known users overrate the towers for people they never saw,
    so a split by user gives the new-user weights their truest fit.

    Args:
        model: the trained model, item-to-item part attached or not; the prior is not
            attached here.
        train: the training batches (engaged plays give the popularity).
        rows: the candidate and evaluation rows (`_pair_rows`).
        sizes: vocabulary sizes.
        config: `config.cold_start` says what to try.

    Returns:
        The prior (`prior.active` False when every weight is 0) and its metrics:
        `cold_start_smoothing`, `cold_start_average_start_users` (1 when kept),
        `cold_start_weight_{new|known}_{bucket}`, and the new users' selection metric
        without and with the prior, `new_user_{selection}_plays_{n}[_prior]` (K at most the
        catalogue's size).
    """
    settings = config.cold_start
    user_key, age_key = F.transformed_name(F.USER_ID), F.transformed_name(F.AGE)
    title_key, history_key = F.transformed_name(F.TITLE_ID), F.transformed_name(F.HISTORY)
    candidates, tests = rows
    candidate_titles = candidates[title_key].ravel()
    # Bounded work: every weight's pass scores the sample against the whole catalogue.
    budget = min(settings.max_pairs,
                 max(settings.min_pairs, _COLD_START_SCORES // len(candidate_titles)))
    count = len(tests[title_key])
    if count > budget:
        keep = np.sort(np.random.default_rng(settings.seed).choice(count, budget, replace=False))
        tests = {key: value[keep] for key, value in tests.items()}
    position = {title: index for index, title in enumerate(candidate_titles.tolist())}
    targets = np.array([position[title] for title in tests[title_key].ravel().tolist()])
    ages = tests[age_key].ravel().astype(np.int64)
    kind, k = parse_pair_metric(config.selection)
    k = min(k, len(candidate_titles))
    name = f"{kind}_at_{k}"
    plays = _to_numpy(train.map(engaged_only), (user_key, age_key, title_key))
    played_titles = plays[title_key].ravel()

    # The longest history a row holds: the item-to-item part's, else the towers'.
    source = F.WATCHED if F.WATCHED in tests else history_key
    played_all = played_positions(tests[source], candidate_titles)

    def new_users(played: int) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
        """The rows with at least `played` earlier plays, shown as a new user who has made
        only the first `played` of them, and the candidate indices of those plays."""
        eligible, first = first_plays(tests[source], played)
        shown = {key: value[eligible].copy() for key, value in tests.items()}
        shown[user_key][...] = sizes.users - 1
        if not settings.stated_preferences:
            shown[F.transformed_name(F.PREFERRED_GENRES)][...] = 0
        for key in (history_key, F.WATCHED):
            if key in shown:
                shown[key][...] = 0
                shown[key][:, :played] = first[:, :shown[key].shape[1]]
        return shown, eligible, played_positions(first, candidate_titles)

    def embed(queries: dict[str, np.ndarray]) -> np.ndarray:
        return model.query_tower(queries).numpy()

    def scored(query_vectors: np.ndarray, subset: np.ndarray, table: np.ndarray,
               candidate_vectors: np.ndarray, exclude: list[np.ndarray]) -> dict[float, float]:
        """The selection metric of each weight for the rows `subset` of the sample,
        embedded, the titles `exclude` (one array per row of `subset`) left out of each
        row's ranking."""
        prior = table[candidate_titles].T  # [AGE_BUCKETS, candidates]
        return blended_metric(lambda r: query_vectors[r] @ candidate_vectors.T,
                              lambda r: prior[ages[subset][r]], settings.weights,
                              targets[subset], k, kind, exclude=exclude)

    def best(by_weight: dict[float, float]) -> float:
        return max(by_weight, key=lambda weight: (by_weight[weight], -weight))

    tables = {m: segment_log_popularity(plays[age_key].ravel(), played_titles, sizes.titles, m)
              for m in settings.smoothing}
    metrics: dict[str, float] = {}
    cold, every, nothing_played = new_users(0)
    if settings.average_start:
        # No training pair reaches the out-of-vocabulary title row (the vocabulary is the
        # training titles', and cold-start dropout masks users, not titles): the average is
        # a better start than its random initial value, and the evaluation rows rarely hold
        # enough new titles to measure it.
        average_start(model.candidate_tower, F.TITLE_ID,
                      np.bincount(played_titles, minlength=sizes.titles))
    candidate_vectors = model.candidate_tower(candidates).numpy()
    # Cold-start dropout trains the out-of-vocabulary user row; without it the row is its
    # random initial value, and the average replaces it when that measures better.
    if settings.average_start and config.cold_start_dropout == 0:
        first = tables[settings.smoothing[0]]
        before = max(scored(embed(cold), every, first, candidate_vectors,
                            nothing_played).values())
        old = average_start(model.query_tower, F.USER_ID,
                            np.bincount(plays[user_key].ravel(), minlength=sizes.users))
        after = max(scored(embed(cold), every, first, candidate_vectors,
                           nothing_played).values())
        if after <= before:
            restore_row(model.query_tower, F.USER_ID, old)
        metrics["cold_start_average_start_users"] = float(after > before)
    cold_vectors = embed(cold)
    zero_play = {m: scored(cold_vectors, every, table, candidate_vectors, nothing_played)
                 for m, table in tables.items()}
    smoothing = max(zero_play, key=lambda m: max(zero_play[m].values()))
    table = tables[smoothing]
    weights = [[0.0] * HISTORY_BUCKETS for _ in (NEW, KNOWN)]
    for bucket, played in enumerate(COLD_START_PLAYS):
        shown, eligible, shown_played = ((cold, every, nothing_played) if played == 0
                                         else new_users(played))
        if len(eligible) < settings.min_pairs:
            # Too few rows to fit: the previous bucket's weight (none before bucket 0).
            weights[NEW][bucket] = weights[NEW][bucket - 1] if bucket else 0.0
            continue
        by_weight = zero_play[smoothing] if played == 0 else scored(
            embed(shown), eligible, table, candidate_vectors, shown_played)
        weights[NEW][bucket] = best(by_weight)
        if 0.0 in by_weight:
            metrics[f"new_user_{name}_plays_{played}"] = by_weight[0.0]
        metrics[f"new_user_{name}_plays_{played}_prior"] = by_weight[weights[NEW][bucket]]
    known = np.flatnonzero(tests[user_key].ravel() < sizes.users - 1)
    if len(known) >= settings.min_pairs:
        known_vectors = embed({key: value[known] for key, value in tests.items()})
        buckets = history_bucket((tests[history_key][known] != 0).sum(axis=1))
        known_played = [played_all[row] for row in known]
        pooled = best(scored(known_vectors, known, table, candidate_vectors, known_played))
        for bucket in range(HISTORY_BUCKETS):
            inside = buckets == bucket
            weights[KNOWN][bucket] = pooled if inside.sum() < settings.min_pairs else best(
                scored(known_vectors[inside], known[inside], table, candidate_vectors,
                       [known_played[row] for row in np.flatnonzero(inside)]))
    metrics["cold_start_smoothing"] = smoothing
    for row, label in ((NEW, "new"), (KNOWN, "known")):
        for bucket in range(HISTORY_BUCKETS):
            metrics[f"cold_start_weight_{label}_{bucket}"] = float(weights[row][bucket])
    return ColdStartPrior(table, np.array(weights, np.float32), smoothing), metrics


def item_item_factors(train: tf.data.Dataset, sizes: FeatureSizes, config: RetrievalConfig
                      ) -> ItemItemFactors:
    """Fits the item-to-item weights (DLAE or EASE) on `train`'s engaged pairs of known users
    and titles (`recs.models.item_item`)."""
    user_key, title_key = F.transformed_name(F.USER_ID), F.transformed_name(F.TITLE_ID)
    pairs = _to_numpy(train.map(engaged_only), (user_key, title_key))
    users, titles = pairs[user_key].ravel(), pairs[title_key].ravel()
    # The last index of each vocabulary is its out-of-vocabulary bucket: many people, many
    # titles; co-watching says nothing about them.
    known = (users < sizes.users - 1) & (titles < sizes.titles - 1)
    return fit_item_item(users[known], titles[known], sizes.titles, config.item_item)


def _to_numpy(dataset: tf.data.Dataset, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    columns: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for batch in dataset:
        for key in keys:
            columns[key].append(batch[key].numpy())
    return {key: np.concatenate(parts) for key, parts in columns.items()}


@dataclasses.dataclass(frozen=True)
class _EmbeddedPairs:
    """Test pairs and the candidate set, embedded once, ready for brute-force Recall@K."""

    queries: tf.Tensor  # [num_pairs, dim]
    candidates: tf.Tensor  # [num_titles, dim]
    candidate_titles: np.ndarray  # [num_titles]
    targets: np.ndarray  # [num_pairs]

    def recall(self, k: int) -> float:
        """Recall@k of these pairs."""
        queries = np.asarray(self.queries)
        candidates = np.asarray(self.candidates)
        k = min(k, len(candidates))
        return pair_metrics(lambda rows: queries[rows] @ candidates.T, self.positions(),
                            (k,))[f"recall_at_{k}"]

    def positions(self) -> np.ndarray:
        """`[num_pairs]` each pair's candidate index."""
        position = {title: index for index, title in enumerate(self.candidate_titles.tolist())}
        return np.array([position[title] for title in self.targets.tolist()], np.int64)


def played_positions(histories: np.ndarray, candidate_titles: np.ndarray) -> list[np.ndarray]:
    """Per row, the candidate indices of the titles a history holds.

    The Trainer's choices rank without these: a list the service shows leaves out what the
    user finished, and a history does not say which plays finished, so every played title is
    left out (the pair's own title never is: a play can be a re-watch).

    Args:
        histories: `[rows, length]` title ids + 1 (0 = padding, as `history` and `watched`).
        candidate_titles: `[num_titles]` the candidates' title ids (vocabulary indices).

    Returns:
        `[rows]` arrays of candidate indices; titles outside the candidates are left out.

    Example:
        >>> played_positions(np.array([[3, 1, 0], [0, 0, 0]]), np.array([2, 0, 5]))
        [array([0, 1]), array([], dtype=int64)]
    """
    histories = np.asarray(histories, np.int64)
    lookup = np.full(max(int(candidate_titles.max(initial=0)), int(histories.max(initial=0)))
                     + 2, -1, np.int64)
    lookup[np.asarray(candidate_titles, np.int64) + 1] = np.arange(len(candidate_titles))
    positions = lookup[histories]
    return [row[row >= 0] for row in positions]


def _pair_rows(catalogue: tf.data.Dataset, queries: tf.data.Dataset
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One row per distinct title of `catalogue` (candidate features) and the engaged rows of
    `queries` (query features and title): the inputs of `_embed_pairs`.

    Raises:
        ValueError: `queries` holds no engaged rows.
    """
    title_key = F.transformed_name(F.TITLE_ID)
    candidate_keys = tuple(F.transformed_name(key) for key in F.CANDIDATE_FEATURES)
    rows = _to_numpy(catalogue, candidate_keys)
    _, first = np.unique(rows[title_key], return_index=True)
    candidates = {key: value[first] for key, value in rows.items()}

    query_keys = tuple(F.transformed_name(key) for key in F.QUERY_FEATURES) + (title_key,)
    if F.WATCHED in queries.element_spec:  # The item-to-item part's input.
        query_keys += (F.WATCHED,)
    tests = _to_numpy(queries.map(engaged_only), query_keys)
    if len(tests[title_key]) == 0:
        raise ValueError("queries holds no engaged rows; Recall@K needs at least one positive.")
    return candidates, tests


def _embed_pairs(query: Callable[[dict], tf.Tensor], candidate: Callable[[dict], tf.Tensor],
                 candidates: dict[str, np.ndarray], tests: dict[str, np.ndarray]
                 ) -> _EmbeddedPairs:
    """Embeds `_pair_rows`' output with `query` and `candidate` (the towers, or any function
    of transformed feature batches)."""
    title_key = F.transformed_name(F.TITLE_ID)
    return _EmbeddedPairs(queries=query(tests), candidates=candidate(candidates),
                          candidate_titles=candidates[title_key], targets=tests[title_key])


def train_ranker(train: tf.data.Dataset, evaluation: tf.data.Dataset, sizes: FeatureSizes,
                 config: RankerConfig, strategy: tf.distribute.Strategy | None = None,
                 initialize: Callable[[DeepRanker], None] | None = None,
                 towers: tuple[Tower, Tower] | None = None) -> TrainingResult:
    """Fits the deep sigmoid ranker with binary cross-entropy and early stopping.

    Validation runs after each epoch; training stops when validation AUC has not improved
    for two epochs, and the best epoch's weights are kept. Under a multi-worker `strategy`
    each step splits the global batch across workers and sums their gradients, so the update
    is the one-worker update on the same batch (dropout masks aside). `initialize` is called
    with the built, untrained model before fitting (a warm start: `recs.warm_start`).
    With `config.tower_features`, `towers` are the trained retrieval model's (query tower,
    candidate tower), built under `strategy`; the ranker reads them frozen.

    With `config.trees.enabled`, gradient-boosted trees are fitted too (one machine: TF-DF
    does not train under a multi-worker strategy) and blended with the deep ranker
    (`recs.ensemble`; a stacked blend is fitted on `evaluation`, which early stopping already
    watches).

    Returns:
        The fitted `DeepRanker`, or the `BlendedRanker` of it and the trees; metrics hold
        held-out `auc` and `log_loss` of the returned model, and with trees also
        `deep_auc`, `deep_log_loss`, `trees_auc`, `trees_seconds` and the blend's weights.

    Raises:
        ValueError: trees are enabled under a strategy with more than one replica; `towers`
            given without `config.tower_features` or missing with it.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if config.trees.enabled and strategy.num_replicas_in_sync > 1:
        raise ValueError(f"RankerConfig.trees.enabled needs one worker: TF-DF trains on one "
                         f"machine; this strategy has {strategy.num_replicas_in_sync} replicas.")
    tf.keras.utils.set_random_seed(config.training.seed)
    with strategy.scope():
        model = DeepRanker(sizes, config, towers)
        model.compile(optimizer=make_optimizer(config.training),
                      loss=tf.keras.losses.BinaryCrossentropy(), metrics=_ranker_metrics())
        if initialize is not None:
            model(next(iter(train)))  # Builds the variables; the label key is not read.
            initialize(model)
    stop = tf.keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2,
                                            restore_best_weights=True)
    labelled = shard_by_data(evaluation.map(features_and_label))
    history = model.fit(shard_by_data(train.map(features_and_label)),
                        epochs=config.training.epochs, validation_data=labelled,
                        callbacks=[stop], verbose=2)
    metrics = _held_out(model, labelled)
    if not config.trees.enabled:
        return TrainingResult(model=model, history=_history(history), metrics=metrics)
    return _with_trees(model, train, evaluation, labelled, config, metrics, _history(history))


def _ranker_metrics() -> list[tf.keras.metrics.Metric]:
    return [tf.keras.metrics.AUC(name="auc"),
            tf.keras.metrics.BinaryCrossentropy(name="log_loss")]


def _held_out(model: tf.keras.Model, labelled: tf.data.Dataset) -> dict[str, float]:
    """The ranker metrics (`auc`, `log_loss`) of a compiled `model` on (features, label)
    batches."""
    values = model.evaluate(labelled, return_dict=True, verbose=0)
    return {"auc": float(values["auc"]), "log_loss": float(values["log_loss"])}


def _with_trees(deep: DeepRanker, train: tf.data.Dataset, evaluation: tf.data.Dataset,
                labelled: tf.data.Dataset, config: RankerConfig,
                deep_metrics: dict[str, float], history: dict[str, list[float]]
                ) -> TrainingResult:
    from recs.ensemble import blend, train_tree_ranker

    trees, seconds = train_tree_ranker(train, evaluation, config.trees)
    blended = blend(deep, trees, evaluation, config.trees)
    for model in (trees, blended):
        model.compile(metrics=_ranker_metrics())
    metrics = {**_held_out(blended, labelled), "deep_auc": deep_metrics["auc"],
               "deep_log_loss": deep_metrics["log_loss"],
               "trees_auc": _held_out(trees, labelled)["auc"], "trees_seconds": seconds,
               "blend_weights_deep_trees_bias": list(blended.blend_weights)}
    return TrainingResult(model=blended, history=history, metrics=metrics)
