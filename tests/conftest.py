"""Shared fixtures. Importing recs first selects Keras 2 before TensorFlow loads.

The session fixtures serve a real, tiny version of the product built without TFX
(`tfx_pipeline.world`): generated logs -> Beam ingestion -> tf.Transform on the DirectRunner ->
trained towers and ranker -> SavedModels in TF Serving's layout. The integration tests
(tests/integration/) and the simulation tests (tests/simulation/) share them; unit tests use
tiny hand-made data instead.
"""

import dataclasses
import pathlib

import pytest

import recs  # noqa: F401

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only public datasets beside the repository."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@dataclasses.dataclass(frozen=True)
class TinyWorld:
    """A built world (`tfx_pipeline.world`) and its interaction records."""

    root: pathlib.Path
    raw: pathlib.Path
    examples_glob: str
    transform_dir: str
    serving_dir: pathlib.Path
    records: list


@pytest.fixture(scope="session")
def tiny_world() -> TinyWorld:
    """120 users, 40 titles, 2 days: generated, ingested, transformed, trained (small towers
    and ranker), exported and indexed in TF Serving's layout, by `tfx_pipeline.world`.

    Cached by config and by a hash of the code that decides its content (recs/, transforms/):
    a change to serving, monitoring or test code reuses it, a change to features or models
    rebuilds it. The cache is `$RECS_WORLD_CACHE`, else `~/.cache/recs/worlds`.
    """
    from tfx_pipeline.world import cached_world

    world = cached_world()
    return TinyWorld(root=world.root, raw=world.raw, examples_glob=world.examples_glob,
                     transform_dir=world.transform_dir, serving_dir=world.serving_dir,
                     records=world.records())


@pytest.fixture(scope="session")
def server(tiny_world):
    """The local TF Serving-protocol model server over the tiny world's four models."""
    from serving.model_server import ModelRegistry, ModelServer

    from recs.contract.models import SERVED_MODELS

    registry = ModelRegistry(str(tiny_world.serving_dir), SERVED_MODELS)
    registry.load()
    with ModelServer(registry) as running:
        yield running


@pytest.fixture(scope="session")
def store(tiny_world):
    """An in-memory profile store loaded with the tiny world's users and plays."""
    from serving.online.store import SqliteProfileStore, load_store

    profiles = SqliteProfileStore(":memory:")
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


@pytest.fixture
def redis_client(redis_url):
    """A client of the session's redis-server, its database emptied for each test."""
    import redis

    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    connection.flushdb()
    yield connection
    connection.close()
