"""Shared fixtures. Importing recs first selects Keras 2 before TensorFlow loads.

The session fixtures build a real, tiny version of the product without TFX: generated logs ->
Beam ingestion -> tf.Transform on the DirectRunner -> trained towers and ranker -> SavedModels
in TF Serving's layout. Library, export, index and serving tests share them.
"""

import dataclasses
import os
import pathlib
import tempfile

import pytest

import recs  # noqa: F401

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only public datasets beside the repository."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@dataclasses.dataclass
class TinyWorld:
    root: pathlib.Path
    raw: pathlib.Path
    examples_glob: str
    transform_dir: str
    serving_dir: pathlib.Path
    records: list


@pytest.fixture(scope="session")
def tiny_world() -> TinyWorld:
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from recs import features as F
    from recs.config import IndexConfig, RankerConfig, RetrievalConfig, TrainingConfig
    from recs.data.catalogue import read_jsonl, to_columns
    from recs.data.synthetic import GeneratorConfig, generate
    from recs.export import RankerExport, RetrievalExport
    from recs.index import build_indexes, catalogue_lines
    from recs.training import train_ranker, train_retrieval
    from tfx_pipeline.trainer import feature_sizes
    from transforms.ingestion import IngestionConfig, run_ingestion
    from transforms.preprocessing import preprocessing_fn

    # RECS_TINY_WORLD=<dir> keeps the world between runs while developing (delete the
    # folder after changing features or models); CI always builds it afresh.
    kept = os.environ.get("RECS_TINY_WORLD")
    root = pathlib.Path(kept) if kept else pathlib.Path(tempfile.mkdtemp(prefix="recs-tiny-"))
    examples_glob = str(root / "ingested" / "examples" / "*" / "*.tfrecord.gz")
    spec = F.raw_feature_spec()

    def read_records() -> list[dict]:
        dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(examples_glob),
                                          compression_type="GZIP")
        parsed = [{k: v.numpy() for k, v in tf.io.parse_single_example(x, spec).items()}
                  for x in dataset]
        return [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in r.items()}
                for r in parsed]

    if kept and (root / "READY").exists():
        return TinyWorld(root=root, raw=root / "raw", examples_glob=examples_glob,
                         transform_dir=str(root / "transform"), serving_dir=root / "serving",
                         records=read_records())
    data = generate(GeneratorConfig(num_users=120, num_titles=40, days=2, seed=3), root / "raw")
    run_ingestion(IngestionConfig(events_glob=str(data.events_dir / "*" / "*.jsonl"),
                                  users_path=str(data.users_path),
                                  titles_path=str(data.titles_path),
                                  output_dir=str(root / "ingested")))
    records = read_records()

    transform_dir = str(root / "transform")
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=str(root / "tft_tmp")):
        (transformed, transformed_metadata), transform_fn = (
            (records, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # TFX's Transform also records the raw schema; raw_feature_spec() reads it from here.
    metadata_io.write_metadata(metadata, str(pathlib.Path(transform_dir) / "metadata"))
    output = tft.TFTransformOutput(transform_dir)
    sizes = feature_sizes(output)

    keys = list(transformed[0])
    columns = {k: np.stack([row[k] for row in transformed]) for k in keys}
    full = tf.data.Dataset.from_tensor_slices(columns)
    train = full.take(int(0.8 * len(transformed))).batch(64)
    evaluation = full.skip(int(0.8 * len(transformed))).batch(64)
    quick = TrainingConfig(batch_size=64, epochs=2, learning_rate=0.05, optimizer="adagrad")
    retrieval = train_retrieval(train, evaluation, sizes,
                                RetrievalConfig(embedding_dim=8, tower_layers=(16,),
                                                training=quick))
    ranker = train_ranker(train, evaluation, sizes,
                          RankerConfig(embedding_dim=4, hidden_layers=(16, 8),
                                       training=dataclasses.replace(quick, optimizer="adam",
                                                                    learning_rate=0.01)))
    serving_dir = root / "serving"
    towers_path = str(serving_dir / "towers" / "1")
    RetrievalExport(output.transform_features_layer(), output.raw_feature_spec(),
                    retrieval.model.query_tower, retrieval.model.candidate_tower
                    ).save(towers_path)
    RankerExport(output.transform_features_layer(), output.raw_feature_spec(),
                 ranker.model).save(str(serving_dir / "ranker" / "1"))
    towers = tf.saved_model.load(towers_path)
    catalogue = to_columns(read_jsonl(str(data.titles_path)), F.CANDIDATE_FEATURES)
    queries = to_columns(records, F.QUERY_FEATURES)
    scann, exact, _ = build_indexes(towers, catalogue, queries,
                                    IndexConfig(k=10, min_recall=0.9, eval_queries=50))
    lines = catalogue_lines(catalogue)
    scann.save(str(serving_dir / "retrieval" / "1"), lines, scann=True)
    exact.save(str(serving_dir / "retrieval_exact" / "1"), lines, scann=False)
    (root / "READY").touch()
    return TinyWorld(root=root, raw=root / "raw", examples_glob=examples_glob,
                     transform_dir=transform_dir, serving_dir=serving_dir, records=records)


@pytest.fixture(scope="session")
def server(tiny_world):
    """The local TF Serving-protocol model server over the tiny world's four models."""
    from serving.model_server import ModelRegistry, ModelServer

    registry = ModelRegistry(str(tiny_world.serving_dir),
                             ("ranker", "retrieval", "retrieval_exact", "towers"))
    registry.load()
    with ModelServer(registry) as running:
        yield running


@pytest.fixture(scope="session")
def store(tiny_world):
    """An in-memory profile store loaded with the tiny world's users and plays."""
    from serving.store import ProfileStore, load_store

    profiles = ProfileStore(":memory:")
    load_store(profiles, str(tiny_world.raw / "users.jsonl"), tiny_world.examples_glob)
    yield profiles
    profiles.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port, for this test session only."""
    import shutil
    import socket
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: `make test` installs Debian's redis-server "
                    "(scripts/system-deps.sh); install it with apt-get install redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)
