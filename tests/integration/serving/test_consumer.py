"""The consumer in front of the service over the tiny world's models: the next recommendation
reflects a new watch."""

import threading
import time

import pytest

from recs import features as F
from serving.consumer import ProfileUpdater, publish
from serving.online.store import RedisProfileStore

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial


def test_the_next_recommendation_reflects_a_new_watch(server, tiny_world, redis_url, redis_client):
    from fastapi.testclient import TestClient

    from recs.data.catalogue import read_jsonl
    from serving.api.service import create_app
    from serving.clients import RestClient
    from serving.config import ServiceConfig
    from serving.online.policy import OnlinePolicy
    from serving.online.recommender import Recommender, load_catalogue
    from serving.online.store import load_store

    store = RedisProfileStore(redis_url, prefix="live:")
    load_store(store, str(tiny_world.raw / "users.jsonl"), tiny_world.examples_glob)
    catalogue = load_catalogue(str(tiny_world.serving_dir), "retrieval")
    durations = {row[F.TITLE_ID]: float(row[F.DURATION_SECONDS])
                 for row in read_jsonl(str(tiny_world.raw / "titles.jsonl"))}
    app = create_app(OnlinePolicy(Recommender(RestClient(server.rest_url), store, catalogue),
                                  ServiceConfig(model_timeout_ms=30_000)))
    user = tiny_world.records[0][F.USER_ID]
    stop = threading.Event()
    updater = ProfileUpdater(redis_client, store, durations)
    consumer = threading.Thread(target=updater.run, args=(stop,), daemon=True)
    consumer.start()
    try:
        with TestClient(app) as api:
            def top() -> list[str]:
                body = api.post("/v1/recommendations", json={"user_id": user, "k": 5}).json()
                return [item["title_id"] for item in body["items"]]

            first = top()[0]
            publish(redis_client, [{"event_id": "live-1", F.USER_ID: user, F.TITLE_ID: first,
                              F.DEVICE_TYPE: "tv", "event_type": "play_stop",
                              "ts": int(time.time()),
                              "watch_seconds": durations[first]}])
            deadline = time.monotonic() + 10
            while first in top() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert first not in top()  # Finished now, so filtered out.
            assert store.history(user)[0] == first  # And the latest play in the history.
    finally:
        stop.set()
        consumer.join()
    assert updater.counts.applied == 1
