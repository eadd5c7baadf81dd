"""The closed loop run through the real service: a built world's models behind the local model
server, the recommendation service in this process, Redis, the profile consumer."""

import json
import threading

import pytest

from recs.contract import features as F

DAYS = 2
JOINERS = 4


def _served(path):
    """Each served list's user and titles, in the log's order (no ids or clocks)."""
    return [(line["user_id"], [item["title_id"] for item in line["items"]],
             line["experiments"]) for line in
            (json.loads(text) for text in path.read_text().splitlines() if text)]


def _runner(world, generator, model_server_url, redis_url, tmp_path_factory):
    """A function that runs `world`'s users (and new subscribers) for some days through the
    service with the given experiments, from a freshly loaded store each time."""
    import redis

    from recs.data.catalogue import read_jsonl
    from serving.api.service import ServiceServer
    from serving.app import build_app
    from serving.config import ServiceConfig
    from serving.consumer import ProfileUpdater
    from serving.online.store import RedisProfileStore, load_store
    from simulation import ClosedLoop, LoopConfig, StreamPublisher, wait_until_consumed

    client = redis.Redis.from_url(redis_url)
    durations = {row[F.TITLE_ID]: float(row[F.DURATION_SECONDS])
                 for row in read_jsonl(str(world.raw / "titles.jsonl"))}

    def run(name, experiments, days=DAYS, joiners=JOINERS):
        client.flushdb()
        load_store(RedisProfileStore(redis_url), str(world.raw / "users.jsonl"),
                   world.examples_glob)
        out = tmp_path_factory.mktemp(name)
        served_log = out / "served.jsonl"
        # The store read on every request (no cache whose expiry depends on timing), and
        # no exploration: the service then draws nothing at random.
        config = ServiceConfig(model_server=model_server_url,
                               serving_dir=str(world.serving_dir), store=redis_url,
                               profile_changes=redis_url, served_log=str(served_log),
                               profile_cache_s=0.0, experiments=tuple(experiments))
        with ServiceServer(build_app(config)) as service:
            send = StreamPublisher(redis_url, batch=100)
            loop = ClosedLoop(generator,
                              LoopConfig(days=days, workers=4, joiners_per_day=joiners),
                              out / "loop")
            updater = ProfileUpdater(client, RedisProfileStore(redis_url), durations,
                                     clock=loop.now)
            loop.attach(service.url, publish=send, served_log=str(served_log),
                        settle=lambda: wait_until_consumed(updater, send, timeout_s=60),
                        sign_up=RedisProfileStore(redis_url).upsert_profiles)
            stop = threading.Event()
            consumer = threading.Thread(target=updater.run, args=(stop,), daemon=True)
            consumer.start()
            loop.run()
            stop.set()
            consumer.join(timeout=30)
        served = [entry for path in sorted((out / "loop" / "served").glob("day=*/*.jsonl"))
                  for entry in _served(path)]
        events = {path.parent.name: path.read_text()
                  for path in sorted((out / "loop" / "events").glob("day=*/*.jsonl"))}
        return {"loop": loop, "outcomes": {row["user_id"]: row for row in loop.user_outcomes()},
                "served": served, "events": events, "dead": updater.counts.dead_lettered}

    return run


@pytest.fixture(scope="module")
def run_loop(tiny_world, server, redis_url, tmp_path_factory):
    """Runs the tiny world's users through the service: `run_loop(name, experiments, days,
    joiners)` -> {"loop", "outcomes" by user id, "served" lists, "events" by day, "dead"}."""
    from tfx_pipeline.world import WorldConfig

    url = redis_url.rsplit("/", 1)[0] + "/7"
    yield _runner(tiny_world, WorldConfig().generator, server.rest_url, url, tmp_path_factory)
    import redis

    redis.Redis.from_url(url).flushdb()


PLANTED_WORLD = dict(num_users=200, num_titles=1000, days=3, seed=3)
"""A world whose catalogue is large enough for its 200 least popular titles to be a tail (the
tiny world's 40 titles are all in it)."""


@pytest.fixture(scope="module")
def run_planted_world(redis_url, tmp_path_factory):
    """As `run_loop`, over a world of `PLANTED_WORLD` (built once per code version and
    cached, like the tiny world) behind its own model server."""
    import redis

    from recs.contract.models import SERVED_MODELS
    from recs.data.synthetic import GeneratorConfig
    from serving.model_server import ModelRegistry, ModelServer
    from tfx_pipeline.world import WorldConfig, cached_world

    config = WorldConfig(generator=GeneratorConfig(**PLANTED_WORLD))
    world = cached_world(config)
    registry = ModelRegistry(str(world.serving_dir), SERVED_MODELS)
    registry.load()
    url = redis_url.rsplit("/", 1)[0] + "/8"
    with ModelServer(registry) as models:
        yield _runner(world, config.generator, models.rest_url, url, tmp_path_factory)
    redis.Redis.from_url(url).flushdb()
