"""A small world without TFX: the pipeline's stages in one process, for tests and benchmarks.

    generate (seeded logs) -> Beam ingestion -> tf.Transform (AnalyzeAndTransformDataset on the
    DirectRunner) -> train (or keep the seeded initial weights) -> recs.assembly.assemble
    -> <root>/serving/<model>/1/, with raw/, ingested/ and transform/ beside it

The same code the TFX components run, minus the orchestration, so a world of a few hundred
records is ready in about a minute. `WorldConfig.train=False` skips fitting: the models keep
their seeded initial weights, which is all a test of serving mechanics needs.

A world is cached: `build_world(root)` reuses a folder whose `world.json` records the same
config and the same source fingerprint (a hash of the code that decides what a world holds),
and `cached_world` keeps one folder per (config, code) under a cache directory, so a change to
serving code reuses the models and a change to the feature or model code rebuilds them.
"""

import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib

from recs.config import Config, IndexConfig, RankerConfig, RetrievalConfig, TrainingConfig
from recs.contract.layout import RawLayout, RunLayout
from recs.data.synthetic import GeneratorConfig

_QUICK = TrainingConfig(batch_size=64, epochs=2, learning_rate=0.05, optimizer="adagrad")
_MANIFEST = "world.json"
_SOURCES = ("recs", "transforms")
"""Packages whose code decides what a world holds: a change there rebuilds cached worlds."""


@dataclasses.dataclass(frozen=True)
class WorldConfig(Config):
    """What a world holds.

    Attributes:
        generator: the synthetic logs.
        retrieval / ranker: the models (small by default).
        index: the ScaNN settings and the recall gate.
        train: fit the models; False keeps their seeded initial weights.
        eval_share: share of the records held out for evaluation and index validation.
    """

    generator: GeneratorConfig = GeneratorConfig(num_users=120, num_titles=40, days=2, seed=3)
    retrieval: RetrievalConfig = RetrievalConfig(embedding_dim=8, tower_layers=(16,),
                                                 training=_QUICK)
    ranker: RankerConfig = RankerConfig(
        embedding_dim=4, hidden_layers=(16, 8),
        training=dataclasses.replace(_QUICK, optimizer="adam", learning_rate=0.01))
    index: IndexConfig = IndexConfig(k=10, min_recall=0.9, eval_queries=50)
    train: bool = True
    eval_share: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.eval_share < 1.0:
            raise ValueError(f"eval_share must be in (0, 1); received {self.eval_share!r}.")


@dataclasses.dataclass(frozen=True)
class World:
    """Where a built world's parts are: a run's layout (`recs.contract.layout.RunLayout`)."""

    root: pathlib.Path

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def raw(self) -> pathlib.Path:
        return self.layout.raw

    @property
    def examples_glob(self) -> str:
        return self.layout.examples_glob

    @property
    def transform_dir(self) -> str:
        return str(self.layout.transform_dir)

    @property
    def serving_dir(self) -> pathlib.Path:
        return self.layout.serving

    def records(self) -> list[dict]:
        """The interaction records, decoded: strings as str, numbers as Python scalars."""
        import tensorflow as tf

        from recs import features as F

        spec = F.raw_feature_spec()
        dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(self.examples_glob),
                                          compression_type="GZIP")
        rows = []
        for serialized in dataset:
            parsed = tf.io.parse_single_example(serialized, spec)
            rows.append({key: (value.numpy().decode() if value.dtype == tf.string
                               else value.numpy().item()) for key, value in parsed.items()})
        return rows


def source_fingerprint() -> str:
    """A hash of the code that decides a world's content (`_SOURCES`)."""
    digest = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parents[1]
    for package in _SOURCES:
        for path in sorted([*(root / package).rglob("*.py"), pathlib.Path(__file__)]):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _manifest(config: WorldConfig) -> dict:
    return {"config": config.to_dict(), "sources": source_fingerprint()}


def build_world(root: str | pathlib.Path, config: WorldConfig = WorldConfig()) -> World:
    """Builds the world under `root`, or returns the one already built there with the same
    config and code.

    Raises:
        ValueError: `root` holds something other than a world built with this config.
    """
    world = World(pathlib.Path(root))
    manifest = _manifest(config)
    written = world.root / _MANIFEST
    if written.exists() and json.loads(written.read_text()) == manifest:
        return world
    if world.root.exists() and any(world.root.iterdir()):
        raise ValueError(f"root {str(root)!r} holds files of another world or of something "
                         "else; give build_world an empty or new folder.")
    world.root.mkdir(parents=True, exist_ok=True)
    _build(world, config)
    written.write_text(json.dumps(manifest, indent=2) + "\n")
    return world


def cached_world(config: WorldConfig = WorldConfig(), cache_dir: str | pathlib.Path = "",
                 ) -> World:
    """The world of `config` under `cache_dir` (default `$RECS_WORLD_CACHE`, else
    `~/.cache/recs/worlds`), built once per config and code; processes asking at the same
    time wait for one build (a file lock).

    A folder left half-built by a killed process is removed and built again.
    """
    cache = pathlib.Path(cache_dir or os.environ.get("RECS_WORLD_CACHE")
                         or pathlib.Path.home() / ".cache" / "recs" / "worlds")
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps(_manifest(config), sort_keys=True).encode()).hexdigest()
    root = cache / key[:16]
    with open(cache / f"{key[:16]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.exists() and not (root / _MANIFEST).exists():
            import shutil

            shutil.rmtree(root)
        return build_world(root, config)


def _build(world: World, config: WorldConfig) -> None:
    from recs.data.synthetic import generate

    generate(config.generator, world.raw)
    _fit(world, config, world.layout.raw_logs)


def build_world_from_logs(root: str | pathlib.Path, raw: str | pathlib.Path,
                          config: WorldConfig = WorldConfig()) -> World:
    """Builds a world under `root` (new or empty) from logs already written in the
    generator's layout under `raw` (`events/day=D/*`, `users.jsonl`, `titles.jsonl`), e.g.
    generated days followed by a closed loop's (`simulation.loop`): the retraining step of
    the loop. `config.generator` is not used.

    Raises:
        ValueError: `root` is not empty.
    """
    world = World(pathlib.Path(root))
    if world.root.exists() and any(world.root.iterdir()):
        raise ValueError(f"root {str(root)!r} is not empty; give build_world_from_logs a new "
                         "folder.")
    world.root.mkdir(parents=True, exist_ok=True)
    _fit(world, config, RawLayout(raw))
    return world


def _fit(world: World, config: WorldConfig, raw: RawLayout) -> None:
    """Ingestion, tf.Transform, training and export of the events, profiles and catalogue
    under `raw` (its profile updates are not read)."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from recs import features as F
    from recs.assembly import assemble
    from recs.data.catalogue import read_jsonl, to_columns
    from recs.models import DeepRanker, FeatureSizes, TwoTowerModel
    from recs.training import train_ranker, train_retrieval
    from transforms.ingestion import IngestionConfig, run_ingestion
    from transforms.preprocessing import preprocessing_fn

    run_ingestion(IngestionConfig(events_glob=raw.events_glob, users_path=str(raw.users),
                                  titles_path=str(raw.titles),
                                  output_dir=str(world.layout.ingested)))
    records = world.records()
    spec = F.raw_feature_spec()
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=str(world.root / "tft_tmp")):
        (transformed, _), transform_fn = (
            (records, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
        _ = transform_fn | tft_beam.WriteTransformFn(world.transform_dir)
    # TFX's Transform also records the raw schema; raw_feature_spec() reads it from here.
    metadata_io.write_metadata(metadata, str(pathlib.Path(world.transform_dir) / "metadata"))
    output = tft.TFTransformOutput(world.transform_dir)
    sizes = FeatureSizes.from_transform_output(output)

    columns = {key: np.stack([row[key] for row in transformed]) for key in transformed[0]}
    full = tf.data.Dataset.from_tensor_slices(columns)
    held_out = int((1.0 - config.eval_share) * len(transformed))
    train, evaluation = full.take(held_out).batch(64), full.skip(held_out).batch(64)
    if config.train:
        retrieval = train_retrieval(train, evaluation, sizes, config.retrieval).model
        ranker = train_ranker(train, evaluation, sizes, config.ranker).model
    else:
        tf.keras.utils.set_random_seed(config.retrieval.training.seed)
        batch = next(iter(train))
        retrieval = TwoTowerModel(sizes, config.retrieval)
        retrieval.query_tower(batch)
        retrieval.candidate_tower(batch)
        ranker = DeepRanker(sizes, config.ranker)
        ranker(batch)
    assemble(output, retrieval, ranker, read_jsonl(str(raw.titles)),
             to_columns(records, F.QUERY_FEATURES), config.index, str(world.serving_dir))
