"""What the MovieLens quality benchmarks share: tf.Transform on the records, datasets, the
project's models, and the same-run baselines (most popular, ids-only two-tower).

The project's models go through the product path: interaction records -> the project's
`preprocessing_fn` (tf.Transform on Beam's DirectRunner, `transforms.offline`, the step
`recs evaluate` takes too) -> `TwoTowerModel` / `DeepRanker`. The same-run EASE and
most-popular peers are the library's (`recs.peers`).
"""

import tempfile
import time

import numpy as np

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.config import RetrievalConfig, TrainingConfig
from recs.models.encoders import FeatureSizes
from recs.models.retrieval import TwoTowerModel
from recs.training import make_optimizer
from transforms.offline import analyze_and_transform

import tensorflow as tf
import tensorflow_recommenders as tfrs

LABEL = F.transformed_name(F.LABEL)
TITLE = F.transformed_name(F.TITLE_ID)
USER = F.transformed_name(F.USER_ID)


def transform(train: list[dict], others: list[list[dict]]
              ) -> tuple[FeatureSizes, dict[str, np.ndarray], list[dict[str, np.ndarray]],
                         float]:
    """Analyzes `train` with the project's preprocessing_fn and transforms every list, as
    TFX's Transform does (`transforms.offline.analyze_and_transform`, in a fresh temporary
    directory that outlives the call).

    Returns:
        (vocabulary sizes, train columns, columns of each other list, seconds taken).
    """
    result = analyze_and_transform(train, others, tempfile.mkdtemp(prefix="recs-bench-tft-"))
    sizes = FeatureSizes.from_transform_output(result.output)
    return sizes, result.columns[0], result.columns[1:], result.seconds


def dataset(cols: dict[str, np.ndarray], batch_size: int, shuffle: bool, seed: int = 42
            ) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices(cols)
    if shuffle:
        data = data.shuffle(len(next(iter(cols.values()))), seed=seed,
                            reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(2)


def select(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[mask] for key, value in cols.items()}


def fit_two_tower(train: dict[str, np.ndarray], sizes: FeatureSizes, config: RetrievalConfig
                  ) -> tuple[TwoTowerModel, dict[str, list[float]], float]:
    """Fits the project's two-tower model on every row of `train` as a positive pair.

    Returns:
        (model, per-epoch loss history, examples per second).
    """
    tf.keras.utils.set_random_seed(config.training.seed)
    model = TwoTowerModel(sizes, config)
    model.compile(optimizer=make_optimizer(config.training))
    start = time.perf_counter()
    history = model.fit(dataset(train, config.training.batch_size, True, config.training.seed),
                        epochs=config.training.epochs, verbose=0)
    seconds = time.perf_counter() - start
    rate = len(train[TITLE]) * config.training.epochs / seconds
    return model, {k: [float(x) for x in v] for k, v in history.history.items()}, rate


class IdsOnlyTwoTower(tfrs.Model):
    """The TFRS tutorials' plain model: user-id and title-id embeddings, dot product."""

    def __init__(self, users: int, titles: int, dim: int = 32) -> None:
        super().__init__()
        self.users = tf.keras.layers.Embedding(users, dim)
        self.titles = tf.keras.layers.Embedding(titles, dim)
        self.task = tfrs.tasks.Retrieval()

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(self.users(tf.reshape(features[USER], [-1])),
                         self.titles(tf.reshape(features[TITLE], [-1])),
                         compute_metrics=False)


def fit_ids_only(train: dict[str, np.ndarray], sizes: FeatureSizes, training: TrainingConfig
                 ) -> tuple[IdsOnlyTwoTower, float]:
    """Fits the ids-only baseline with the same optimizer, batch and epochs as our model
    (the tutorials' Adagrad 0.1 where the benchmark keeps their settings)."""
    tf.keras.utils.set_random_seed(training.seed)
    model = IdsOnlyTwoTower(sizes.users, sizes.titles)
    model.compile(optimizer=make_optimizer(training))
    ids = {USER: train[USER], TITLE: train[TITLE]}
    start = time.perf_counter()
    model.fit(dataset(ids, training.batch_size, True, training.seed), epochs=training.epochs,
              verbose=0)
    return model, len(train[TITLE]) * training.epochs / (time.perf_counter() - start)


def embed(function, cols: dict[str, np.ndarray], batch: int = 4096) -> np.ndarray:
    count = len(next(iter(cols.values())))
    return np.concatenate([function({k: v[i:i + batch] for k, v in cols.items()}).numpy()
                           for i in range(0, count, batch)])


def add_model_arguments(parser, epochs: int, batch_size: int, embedding_dim: int, layers: str,
                        optimizer: str = "adagrad", learning_rate: float = 0.1) -> None:
    """The two-tower settings every MovieLens benchmark exposes."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--optimizer", default=optimizer, choices=("adam", "adagrad", "sgd"))
    parser.add_argument("--learning-rate", type=float, default=learning_rate)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--embedding-dim", type=int, default=embedding_dim)
    parser.add_argument("--layers", default=layers)
    parser.add_argument("--cold-start-dropout", type=float, default=0.0)
    parser.add_argument("--hard-negatives", type=int, default=0,
                        help="keep only this many hardest in-batch negatives (0: all)")
    parser.add_argument("--seed", type=int, default=TrainingConfig().seed,
                        help="the two-towers' training seed (the split keeps its own)")


def retrieval_config(args) -> RetrievalConfig:
    return RetrievalConfig(
        embedding_dim=args.embedding_dim,
        tower_layers=tuple(int(x) for x in args.layers.split(",")),
        temperature=args.temperature, cold_start_dropout=args.cold_start_dropout,
        num_hard_negatives=args.hard_negatives,
        training=TrainingConfig(batch_size=args.batch_size, epochs=args.epochs,
                                learning_rate=args.learning_rate, optimizer=args.optimizer,
                                seed=args.seed))


def two_tower_scores(train: dict[str, np.ndarray], queries: dict[str, np.ndarray],
                     candidates: dict[str, np.ndarray], sizes: FeatureSizes, args
                     ) -> dict[str, object]:
    """Fits the ids-only peer and the project's model; returns their score functions.

    Returns:
        {"ids_only": score fn, "ids_only_rate": examples/s, "ours": score fn,
         "ours_rate": examples/s, "history": per-epoch loss, "config": RetrievalConfig,
         "model": our fitted TwoTowerModel, "towers": its (query tower, candidate tower)}.
    """
    config = retrieval_config(args)
    ids_model, ids_rate = fit_ids_only(train, sizes, config.training)
    users = ids_model.users(tf.constant(queries[USER].ravel())).numpy()
    titles = ids_model.titles(tf.constant(candidates[TITLE].ravel())).numpy()
    model, history, rate = fit_two_tower(train, sizes, config)
    query_vectors = embed(model.query_tower, queries)
    candidate_vectors = embed(model.candidate_tower, candidates)
    return {"ids_only": lambda rows: users[rows] @ titles.T, "ids_only_rate": ids_rate,
            "ours": lambda rows: query_vectors[rows] @ candidate_vectors.T, "ours_rate": rate,
            "history": history, "config": config, "model": model,
            "towers": (model.query_tower, model.candidate_tower)}


def _serving_ms(model, batch: dict[str, np.ndarray], repeats: int = 50) -> float:
    """Median milliseconds of one traced call on `batch` (a ranking request's candidates)."""
    call = tf.function(lambda features: model(features, training=False))
    call(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def rankers(train: dict[str, np.ndarray], test: dict[str, np.ndarray], sizes: FeatureSizes,
            name: str, title: str, training: TrainingConfig, with_trees: bool = True,
            towers: tuple | None = None) -> dict[str, dict]:
    """Fits the deep ranker and the tree ranker, blends them, and scores all four on `test`.

    The label is the records' engagement label; 10% of training rows are held out: the deep
    ranker's early stopping and the trees' early stopping watch them, and the stacked blend
    is fitted on them. `training` sets the deep ranker's optimizer and its epoch limit.
    Writes the deep ranker's reliability plot and training curves. `with_trees=False` fits the
    deep ranker alone. With the retrieval model's `towers` (trained on the same training rows)
    a second deep ranker reads them too (`RankerConfig.tower_features`), and the blends use it.

    Returns:
        {"deep": ..., ["deep_towers": ...,] "trees": ..., "average": ..., "stacked": ...},
        each with AUC, log loss,
        expected calibration error, training seconds and serving milliseconds for a
        100-candidate request; "deep" also has its epochs and the positive rate.
    """
    from common import RESULTS
    from recs.config import RankerConfig
    from recs.ensemble import TreeRankerConfig, blend, train_tree_ranker
    from recs.evaluation import calibration
    from recs.plots import plot_reliability, plot_training_curves
    from recs.training import train_ranker

    split = np.random.default_rng(0).random(len(train[TITLE])) < 0.9
    fit, held_out = select(train, split), select(train, ~split)
    labels = test[LABEL].ravel()
    request = {key: value[:100] for key, value in test.items()}

    def scored(model, seconds: float, **extra) -> dict:
        probabilities = np.concatenate([model(batch, training=False).numpy().ravel()
                                        for batch in dataset(test, 4096, False)])
        auc = tf.keras.metrics.AUC(num_thresholds=2000)
        auc.update_state(labels, probabilities)
        log_loss = float(tf.keras.losses.binary_crossentropy(
            labels.astype("f4"), probabilities.astype("f4")).numpy())
        reliability = calibration(probabilities, labels)
        return {"auc": float(auc.result()), "log_loss": log_loss,
                "expected_calibration_error": reliability["ece"], "train_seconds": seconds,
                "serving_ms_100_candidates": _serving_ms(model, request), **extra,
                "_reliability": reliability}

    ranker_config = RankerConfig(training=training)
    start = time.perf_counter()
    deep = train_ranker(dataset(fit, training.batch_size, True), dataset(held_out, 4096, False), sizes,
                        ranker_config)
    results = {"deep": scored(deep.model, time.perf_counter() - start,
                              epochs_run=len(deep.history["loss"]),
                              positive_rate=float(labels.mean()),
                              config=ranker_config.to_dict())}
    plot_reliability(results["deep"]["_reliability"], f"{title} ranker (test split)",
                     str(RESULTS / f"{name}_reliability.png"))
    plot_training_curves(deep.history, f"{title} ranker",
                         str(RESULTS / f"{name}_ranker_curves.png"))
    # The blends below take the best deep ranker fitted here: the tower-reading one if any.
    blended_label, blended_deep = "deep", deep.model
    if towers is not None:
        tower_config = RankerConfig(training=training, tower_features=True)
        start = time.perf_counter()
        with_towers = train_ranker(dataset(fit, training.batch_size, True),
                                   dataset(held_out, 4096, False), sizes, tower_config,
                                   towers=towers)
        results["deep_towers"] = scored(with_towers.model, time.perf_counter() - start,
                                        epochs_run=len(with_towers.history["loss"]),
                                        config=tower_config.to_dict())
        blended_label, blended_deep = "deep_towers", with_towers.model
    if not with_trees:
        for label, figures in results.items():
            figures.pop("_reliability")
            _print_ranker(label, figures)
        return results
    tree_config = TreeRankerConfig()
    trees, tree_seconds = train_tree_ranker(dataset(fit, 4096, False),
                                            dataset(held_out, 4096, False), tree_config)

    results["trees"] = scored(trees, tree_seconds, config=tree_config.to_dict())
    for kind in ("average", "stacked"):
        start = time.perf_counter()
        blended = blend(blended_deep, trees, dataset(held_out, 4096, False),
                        TreeRankerConfig(blend=kind))
        extra = {"weights_deep_trees_bias": list(blended.blend_weights)} if kind == "stacked" \
            else {}
        results[kind] = scored(blended, results[blended_label]["train_seconds"] + tree_seconds
                               + time.perf_counter() - start, **extra)
    for label, figures in results.items():
        figures.pop("_reliability")
        _print_ranker(label, figures)
    return results


def _print_ranker(label: str, figures: dict) -> None:
    print(f"  ranker {label:11s} AUC {figures['auc']:.4f}  log loss {figures['log_loss']:.4f}"
          f"  ECE {figures['expected_calibration_error']:.4f}  train "
          f"{figures['train_seconds']:.0f} s  serve {figures['serving_ms_100_candidates']:.1f}"
          f" ms/100", flush=True)
