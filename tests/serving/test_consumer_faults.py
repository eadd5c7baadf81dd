"""The consumer when Redis changes beneath it: a restart that lost acknowledged writes, a
consumer group destroyed or lost with a Redis restarted without persistence, a stream trimmed
under unread and pending entries. Each fault ends with the store exactly as a run nobody
disturbed leaves it, or with the consumer saying what it could not read."""

import json
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from benchmarks.common import KillableRedis, aof_commands
from serving.consumer import (
    TRIMMED_PENDING,
    TRIMMED_UNREAD,
    GroupRecreation,
    ProfileUpdater,
    StreamGap,
    publish,
)
from serving.online.store import RedisProfileStore, SqliteProfileStore
from tests.serving.test_consumer import DURATIONS, NOW, _events, _profiles

# Timing-sensitive (Redis restarts, a consumer thread): `make test` runs this file after the
# others, alone on the cores.
pytestmark = pytest.mark.serial

STREAM, GROUP = "recs:events", "profile-updater"


@pytest.fixture
def redis_server(tmp_path) -> Iterator[Callable[..., KillableRedis]]:
    """Starts redis-servers of this test (options as redis-server's flags); kills them after."""
    servers: list[KillableRedis] = []

    def start(*options: str) -> KillableRedis:
        server = KillableRedis(tmp_path / f"redis-{len(servers)}", *options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


class _Gated:
    """A store that stops before applying one event id until released: holds the consumer
    in the middle of a batch."""

    def __init__(self, store, event_id: str) -> None:
        self.store, self.event_id = store, event_id
        self.reached, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def apply_event(self, event, duration_seconds):
        if event["event_id"] == self.event_id and not self.release.is_set():
            self.reached.set()
            self.release.wait(30)
        return self.store.apply_event(event, duration_seconds)


class _Publisher:
    """A producer that must lose nothing. Redis may lose XADDs it acknowledged (with
    `appendfsync everysec`, about the last second before a kill), and no consumer can invent
    them: after a restart the producer sends again what the stream no longer holds, and the
    consumer's event ids absorb a copy of what it applied already."""

    def __init__(self, client: redis.Redis) -> None:
        self.client, self.sent, self.ids = client, [], []

    def send(self, events: list[dict]) -> None:
        self.ids += publish(self.client, events)
        self.sent += events

    def recover(self) -> list[dict]:
        held = {json.loads(fields["event"])["event_id"]
                for _, fields in self.client.xrange(STREAM)}
        missing = [event for event in self.sent if event["event_id"] not in held]
        publish(self.client, missing)
        return missing


def _contents(store, users: int) -> dict[str, tuple]:
    """Everything the consumer writes, per user: counters, finished titles, history."""
    return {f"u{u}": (store.stats(f"u{u}"), sorted(store.finished(f"u{u}")),
                      store.history(f"u{u}", limit=1000)) for u in range(users)}


def _uninterrupted(redis_client, store, events: list[dict], users: int) -> dict[str, tuple]:
    """The store after the same events through a consumer nobody disturbed (on a stream of
    its own in the session's Redis)."""
    store.upsert_profiles(_profiles(users))
    publish(redis_client, events, stream="calm:events")
    counts = ProfileUpdater(redis_client, store, DURATIONS, stream="calm:events").drain()
    assert counts.applied == len(events)
    return _contents(store, users)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.02)


def _caught_up(client: redis.Redis) -> bool:
    [group] = client.xinfo_groups(STREAM)
    return group["pending"] == 0 and \
        group["last-delivered-id"] == client.xinfo_stream(STREAM)["last-generated-id"]


def _lose_writes_after_delivery(folder: pathlib.Path, message_id: str) -> int:
    """Cuts the append-only file just after the transaction that delivered `message_id` to
    the consumer, as `appendfsync everysec` may lose the tail of it when Redis is killed: the
    writes after it were acknowledged to their clients and are gone.

    Returns:
        The bytes lost.
    """
    [incr] = (folder / "appendonlydir").glob("*.incr.aof")
    aof = incr.read_bytes()
    delivered = False
    for _, end, arguments in aof_commands(aof):
        delivered = delivered or (arguments[0].upper() == b"XCLAIM"
                                  and message_id.encode() in arguments)
        if delivered and arguments[0].upper() == b"EXEC":
            os.truncate(incr, end)
            return len(aof) - end
    raise AssertionError(f"no delivery of {message_id} in {incr}")


@pytest.mark.parametrize("store_kind", ["redis", "sqlite"])
def test_a_redis_restart_that_lost_acknowledged_writes_ends_like_an_uninterrupted_run(
        store_kind, redis_server, redis_client, redis_url, tmp_path):
    users, events = 6, _events(6, 20)  # 240 events; every second play_stop finishes t1.
    server = redis_server("--appendonly", "yes", "--appendfsync", "everysec")
    if store_kind == "redis":  # The deployment: the store lives in the Redis that restarts.
        calm, live = RedisProfileStore(redis_url, prefix="calm:"), RedisProfileStore(server.url)
    else:  # A store that keeps what Redis loses.
        calm = SqliteProfileStore(":memory:")
        live = SqliteProfileStore(str(tmp_path / "profiles.db"))
    expected = _uninterrupted(redis_client, calm, events, users)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    store = _Gated(live, events[50]["event_id"])
    store.upsert_profiles(_profiles(users))
    publisher = _Publisher(client)
    publisher.send(events[:150])
    updater = ProfileUpdater(client, store, DURATIONS, batch=20, max_backoff_s=0.2)
    stop = threading.Event()
    consumer = threading.Thread(target=updater.run, args=(stop,), daemon=True)
    consumer.start()
    try:
        # Batches of 20: events 40-49 are applied and acknowledged, 50 is being applied.
        assert store.reached.wait(30)
        publisher.send(events[150:170])  # Acknowledged, and about to be lost.
        server.kill()
        # Lost: the effects and acks of events 40-49 and the XADDs of 150-169; kept: the
        # delivery of events 40-59 to the consumer.
        assert _lose_writes_after_delivery(server.folder, publisher.ids[50]) > 0
        server.start()
        assert publisher.recover() == events[150:170]
        publisher.send(events[170:])
        store.release.set()
        # Well within claim_idle_ms (30 s): the consumer re-reads its pending entries itself.
        _wait(lambda: _caught_up(client) and updater.counts.read >= len(events) + 10, 10,
              "the consumer did not finish every event again")
    finally:
        store.release.set()
        stop.set()
        consumer.join(30)
    assert _contents(store, users) == expected
    counts = updater.counts
    assert counts.balanced and counts.read == len(events) + 10
    assert counts.gaps == [] and counts.group_recreations == [] and counts.dead_lettered == {}
    if store_kind == "redis":  # Redis lost the effects of 40-49: they are applied again.
        assert (counts.applied, counts.duplicates) == (len(events) + 10, 0)
    else:  # The SQLite store kept them: read again (their acks were lost), found applied.
        assert (counts.applied, counts.duplicates) == (len(events), 10)


def test_acknowledgements_that_fail_while_redis_is_away_count_a_message_once(
        redis_client, monkeypatch):
    store = SqliteProfileStore(":memory:")
    store.upsert_profiles(_profiles(1))
    events = _events(1, 3)
    publish(redis_client, events)
    updater = ProfileUpdater(redis_client, store, DURATIONS, max_backoff_s=0.01)
    real_xack, failures = updater.redis.xack, [0]

    def xack(*args):
        if failures[0] < 4:  # The first message: applied, then four acks fail.
            failures[0] += 1
            raise redis.ConnectionError("Connection refused.")
        return real_xack(*args)

    monkeypatch.setattr(updater.redis, "xack", xack)
    counts = updater.drain()
    # Each retry finds the event applied, by this consumer: neither a second message nor a
    # duplicate (counted so, a 6 s outage made one message 7 "duplicates").
    assert (counts.read, counts.applied, counts.duplicates, counts.retries) == (6, 6, 0, 4)


def test_a_group_destroyed_under_a_running_consumer_is_created_again_where_it_left_off(
        redis_client):
    store = SqliteProfileStore(":memory:")
    store.upsert_profiles(_profiles(2))
    events = _events(2, 5)  # 20 events.
    ids = publish(redis_client, events[:12])
    updater = ProfileUpdater(redis_client, store, DURATIONS, max_backoff_s=0.05)
    stop = threading.Event()
    consumer = threading.Thread(target=updater.run, args=(stop,), daemon=True)
    consumer.start()
    try:
        _wait(lambda: updater.counts.read == 12, 10, "the first 12 events were not applied")
        redis_client.xgroup_destroy(STREAM, GROUP)
        publish(redis_client, events[12:])
        _wait(lambda: updater.counts.read == 20, 10,
              "the consumer did not apply the events published after the group was destroyed")
    finally:
        stop.set()
        consumer.join(30)
    counts = updater.counts
    # Resumed after the last entry it finished: nothing applied twice, nothing skipped.
    assert counts.group_recreations == [GroupRecreation(ids[-1], False, 0)]
    assert (counts.applied, counts.duplicates) == (20, 0)
    assert _contents(store, 2) == _uninterrupted(
        redis_client, SqliteProfileStore(":memory:"), events, 2)
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0


def test_a_redis_restarted_without_persistence_gets_its_group_back_and_says_the_stream_was_lost(
        redis_server, redis_client, tmp_path):
    server = redis_server("--appendonly", "no")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    store = SqliteProfileStore(str(tmp_path / "profiles.db"))  # Outside Redis: it survives.
    store.upsert_profiles(_profiles(2))
    events = _events(2, 10)  # 40 events.
    publish(client, events[:12])
    updater = ProfileUpdater(client, store, DURATIONS, max_backoff_s=0.05)
    assert updater.drain().read == 12
    server.kill()
    server.start()  # Empty: no stream, no group.
    # More entries than the consumer saw, all with later ids: only the stream's first entry,
    # with none ever deleted, shows it is not the stream the consumer read.
    publish(client, events[12:])
    counts = updater.drain()
    # The stream was lost with the group: whatever it held unread cannot be counted.
    assert counts.group_recreations == [GroupRecreation("0-0", True, None)]
    assert (counts.read, counts.applied, counts.duplicates) == (40, 40, 0)
    assert _contents(store, 2) == _uninterrupted(
        redis_client, SqliteProfileStore(":memory:"), events, 2)


def _xadd(redis_client, events: list[dict], first_seq: int) -> list[str]:
    """Appends events with ids `<NOW ms>-<seq>`, so that the ids of a gap are plain to see."""
    return [redis_client.xadd(STREAM, {"event": json.dumps(event)},
                              id=f"{NOW * 1000}-{first_seq + n}")
            for n, event in enumerate(events)]


@pytest.mark.parametrize("consumer", ["updater-1", "updater-2"])
def test_entries_trimmed_beneath_the_consumer_are_counted_with_their_ids(
        consumer, redis_client, caplog):
    store = SqliteProfileStore(":memory:")
    store.upsert_profiles(_profiles(1))
    events = _events(1, 5)  # 10 events, ids <ms>-0 to <ms>-9.
    _xadd(redis_client, events, 0)
    redis_client.xgroup_create(STREAM, GROUP, id="0")
    # updater-1 takes three entries and dies before finishing them; a trim leaves four.
    redis_client.xreadgroup(GROUP, "updater-1", {STREAM: ">"}, count=3)
    redis_client.xtrim(STREAM, maxlen=4, approximate=False)
    # updater-1 restarted reads its own pending entries; updater-2 claims them.
    updater = ProfileUpdater(redis_client, store, DURATIONS, consumer=consumer,
                             claim_idle_ms=0)
    with caplog.at_level(logging.WARNING, logger="recs.consumer"):
        updater.drain()
        _xadd(redis_client, _events(1, 2)[:3], 10)  # Trimmed before anyone reads them.
        redis_client.xtrim(STREAM, maxlen=0, approximate=False)
        counts = updater.drain()
    ms = NOW * 1000
    assert counts.gaps == [StreamGap(TRIMMED_PENDING, 3, f"{ms}-0", f"{ms}-2"),
                           StreamGap(TRIMMED_UNREAD, 3, f"{ms}-3", f"{ms}-5"),
                           StreamGap(TRIMMED_UNREAD, 3, f"{ms}-10", f"{ms}-12")]
    assert counts.unread == 9 and counts.applied == 4 and counts.dead_lettered == {}
    assert [record.getMessage() for record in caplog.records] == [
        f"3 entries of {STREAM} could not be read (trimmed_pending), ids {ms}-0 to {ms}-2",
        f"3 entries of {STREAM} could not be read (trimmed_unread), ids {ms}-3 to {ms}-5",
        f"3 entries of {STREAM} could not be read (trimmed_unread), ids {ms}-10 to {ms}-12"]
    assert store.stats("u0")["plays"] == 2  # Events 6-9: two starts, two stops.
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
