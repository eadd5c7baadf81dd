"""What the MovieLens quality benchmarks share: tf.Transform on the records, datasets, the
project's models, and the same-run baselines (most popular, ids-only two-tower).

The project's models go through the product path: interaction records -> the project's
`preprocessing_fn` (tf.Transform on Beam's DirectRunner) -> `TwoTowerModel` / `DeepRanker`.
"""

import pathlib
import tempfile
import time

import numpy as np

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.config import RetrievalConfig, TrainingConfig
from recs.models.encoders import FeatureSizes
from recs.models.retrieval import TwoTowerModel
from recs.training import make_optimizer
from tfx_pipeline.trainer import feature_sizes
from transforms.ingestion import to_example
from transforms.preprocessing import preprocessing_fn

import apache_beam as beam
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import tf_example_record

LABEL = F.transformed_name(F.LABEL)
TITLE = F.transformed_name(F.TITLE_ID)
USER = F.transformed_name(F.USER_ID)


def transform(train: list[dict], others: list[list[dict]]
              ) -> tuple[FeatureSizes, dict[str, np.ndarray], list[dict[str, np.ndarray]],
                         float]:
    """Analyzes `train` with the project's preprocessing_fn and transforms every list.

    As TFX's Transform does: the records are written as tf.Examples, the analyzers run on Beam
    over a TFXIO source, and the resulting graph (the one embedded in served models) transforms
    the examples.

    Returns:
        (vocabulary sizes, train columns, columns of each other list, seconds taken).
    """
    start = time.perf_counter()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="recs-bench-tft-"))
    paths = []
    for number, rows in enumerate([train, *others]):
        path = str(workdir / f"part-{number}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for row in rows:
                writer.write(to_example(row))
        paths.append(path)
    schema = schema_utils.schema_from_feature_spec(F.raw_feature_spec())
    source = tf_example_record.TFExampleRecord(file_pattern=paths[0], schema=schema,
                                               telemetry_descriptors=["recs", "benchmark"])
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(workdir / "tmp")):
        transform_fn = ((pipeline | source.BeamSource(), source.TensorAdapterConfig())
                        | tft_beam.AnalyzeDataset(preprocessing_fn))
        _ = transform_fn | tft_beam.WriteTransformFn(str(workdir / "transform"))
    output = tft.TFTransformOutput(str(workdir / "transform"))
    layer = output.transform_features_layer()
    spec = F.raw_feature_spec()

    @tf.function
    def apply(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return layer(tf.io.parse_example(serialized, spec))

    transformed = []
    for path in paths:
        parts: dict[str, list[np.ndarray]] = {}
        for batch in tf.data.TFRecordDataset(path).batch(8192):
            for key, value in apply(batch).items():
                parts.setdefault(key, []).append(value.numpy())
        transformed.append({key: np.concatenate(value) for key, value in parts.items()})
    return feature_sizes(output), transformed[0], transformed[1:], time.perf_counter() - start


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


def fit_ids_only(train: dict[str, np.ndarray], sizes: FeatureSizes, epochs: int,
                 batch_size: int = 2048, seed: int = 42) -> tuple[IdsOnlyTwoTower, float]:
    """Fits the ids-only baseline with the tutorials' optimizer (Adagrad 0.1)."""
    tf.keras.utils.set_random_seed(seed)
    model = IdsOnlyTwoTower(sizes.users, sizes.titles)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    ids = {USER: train[USER], TITLE: train[TITLE]}
    start = time.perf_counter()
    model.fit(dataset(ids, batch_size, True, seed), epochs=epochs, verbose=0)
    return model, len(train[TITLE]) * epochs / (time.perf_counter() - start)


def embed(function, cols: dict[str, np.ndarray], batch: int = 4096) -> np.ndarray:
    count = len(next(iter(cols.values())))
    return np.concatenate([function({k: v[i:i + batch] for k, v in cols.items()}).numpy()
                           for i in range(0, count, batch)])


def add_model_arguments(parser, epochs: int, batch_size: int, embedding_dim: int, layers: str
                        ) -> None:
    """The two-tower settings every MovieLens benchmark exposes."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--embedding-dim", type=int, default=embedding_dim)
    parser.add_argument("--layers", default=layers)
    parser.add_argument("--cold-start-dropout", type=float, default=0.0)


def retrieval_config(args) -> RetrievalConfig:
    return RetrievalConfig(
        embedding_dim=args.embedding_dim,
        tower_layers=tuple(int(x) for x in args.layers.split(",")),
        temperature=args.temperature, cold_start_dropout=args.cold_start_dropout,
        training=TrainingConfig(batch_size=args.batch_size, epochs=args.epochs,
                                learning_rate=args.learning_rate, optimizer="adagrad"))


def two_tower_scores(train: dict[str, np.ndarray], queries: dict[str, np.ndarray],
                     candidates: dict[str, np.ndarray], sizes: FeatureSizes, args
                     ) -> dict[str, object]:
    """Fits the ids-only peer and the project's model; returns their score functions.

    Returns:
        {"ids_only": score fn, "ids_only_rate": examples/s, "ours": score fn,
         "ours_rate": examples/s, "history": per-epoch loss, "config": RetrievalConfig}.
    """
    ids_model, ids_rate = fit_ids_only(train, sizes, args.epochs, batch_size=args.batch_size)
    users = ids_model.users(tf.constant(queries[USER].ravel())).numpy()
    titles = ids_model.titles(tf.constant(candidates[TITLE].ravel())).numpy()
    config = retrieval_config(args)
    model, history, rate = fit_two_tower(train, sizes, config)
    query_vectors = embed(model.query_tower, queries)
    candidate_vectors = embed(model.candidate_tower, candidates)
    return {"ids_only": lambda rows: users[rows] @ titles.T, "ids_only_rate": ids_rate,
            "ours": lambda rows: query_vectors[rows] @ candidate_vectors.T, "ours_rate": rate,
            "history": history, "config": config}
