"""Profile updates from a Redis Stream: exactly-once effects over at-least-once delivery,
dead letters, crash recovery, and the profile cache (the next recommendation seeing a new
watch: tests/integration/serving/test_consumer.py)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import redis

from recs import features as F
from serving.consumer import QUARANTINED, ProfileUpdater, publish
from serving.online.store import RedisProfileStore, SqliteProfileStore

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial

NOW = int(time.time()) - 3600
"""Events are stamped within the consumer's window around their arrival time."""
PROFILE = {F.AGE: 30, F.COUNTRY: "de", F.SUBSCRIPTION_TIER: "standard",
           F.PREFERRED_GENRES: "drama"}
DURATIONS = {"t1": 1000.0, "t2": 2000.0}


def _events(users: int, per_user: int) -> list[dict]:
    """play_start/play_stop pairs; every second stop watches 95% of t1 (finished)."""
    events, n = [], 0
    for u in range(users):
        for i in range(per_user):
            title = "t1" if i % 2 == 0 else "t2"
            base = {F.USER_ID: f"u{u}", F.TITLE_ID: title, F.DEVICE_TYPE: "tv"}
            events.append({**base, "event_id": f"e{n}", "event_type": "play_start",
                           "ts": NOW + n})
            watched = 950.0 if title == "t1" else 100.0
            events.append({**base, "event_id": f"e{n + 1}", "event_type": "play_stop",
                           "ts": NOW + 1 + n, "watch_seconds": watched})
            n += 2
    return events


def _expected_stats(events: list[dict]) -> dict[str, dict]:
    stats: dict[str, dict] = {}
    for event in events:
        user = stats.setdefault(event[F.USER_ID], {"plays": 0, "watch_seconds": 0.0})
        if event["event_type"] == "play_start":
            user["plays"] += 1
        else:
            user["watch_seconds"] += event["watch_seconds"]
    return stats


def _profiles(users: int) -> list[dict]:
    return [{F.USER_ID: f"u{u}", **PROFILE} for u in range(users)]


def _poison(n: int) -> list[dict[bytes, bytes]]:
    """Stream entries of every class that once stopped the consumer for good, and more."""
    base = {"event_id": f"p{n}", F.USER_ID: "u0", F.TITLE_ID: "t1", F.DEVICE_TYPE: "tv",
            "event_type": "play_stop", "ts": NOW, "watch_seconds": 10.0}
    text = json.dumps(base)
    values = [
        b"\xff\xfe" + text.encode(),                                     # undecodable value
        b"[" * 10_000 + b"]" * 10_000,                                    # nesting 10k deep
        text.replace('"ts": %d' % NOW, '"ts": ' + "9" * 400).encode(),    # 1e400 as digits
        text.replace("10.0", "NaN").encode(),                             # NaN (NOT NULL)
        text.replace("10.0", "Infinity").encode(),
        json.dumps({**base, "watch_seconds": 1e308}).encode(),            # a stat of inf
        json.dumps({**base, "ts": 2 ** 63}).encode(),                     # beyond SQLite
        json.dumps({**base, "ts": NOW + 30 * 365 * 86_400}).encode(),     # decades ahead
        text.replace('"u0"', '"\\ud800"').encode(),                     # lone surrogate
        json.dumps({**base, "ts": True}).encode(),                        # bool for a number
    ]
    entries = [{b"event": value} for value in values]
    entries.append({b"\xffevent": text.encode()})                        # undecodable name
    return entries


def _publish_raw(redis_client, entries: list[dict[bytes, bytes]]) -> list[str]:
    return [redis_client.xadd("recs:events", entry) for entry in entries]


def test_every_poison_message_is_dead_lettered_with_its_bytes_and_the_rest_applied(
        redis_client, redis_url):
    store = SqliteProfileStore(":memory:")
    store.upsert_profiles(_profiles(1))
    poison = _poison(0)
    ids = _publish_raw(redis_client, poison)
    publish(redis_client, _events(1, 2))
    counts = ProfileUpdater(redis_client, store, DURATIONS).drain()
    assert counts.balanced and counts.applied == 4 and counts.retries == 0
    assert sum(counts.dead_lettered.values()) == len(poison)
    dead = redis.Redis.from_url(redis_url).xrange("recs:events:dead")  # As bytes.
    assert [entry[b"message_id"].decode() for _, entry in dead] == ids
    for (_, entry), original in zip(dead, poison):
        assert {k[len(b"orig:"):]: v for k, v in entry.items() if k.startswith(b"orig:")} \
            == original
    stats = store.stats("u0")
    assert (stats["plays"], stats["watch_seconds"]) == (2, 1050.0)  # No inf, no NaN.


class _FlakyStore(SqliteProfileStore):
    """Fails to apply: `transient` times with a locked database, or for ever for one id."""

    def __init__(self, transient: int = 0, poisoned: str = "") -> None:
        super().__init__(":memory:")
        self.transient, self.poisoned, self.attempts = transient, poisoned, 0

    def apply_event(self, event, duration_seconds):
        self.attempts += 1
        if self.transient:
            self.transient -= 1
            raise sqlite3.OperationalError("database is locked")
        if event["event_id"] == self.poisoned:
            raise RuntimeError("a bug that this event triggers every time")
        return super().apply_event(event, duration_seconds)


def test_a_store_failure_is_retried_with_backoff_and_applied_once(redis_client):
    store = _FlakyStore(transient=3)
    store.upsert_profiles(_profiles(1))
    publish(redis_client, _events(1, 2))
    updater = ProfileUpdater(redis_client, store, DURATIONS, max_backoff_s=0.05)
    counts = updater.drain()
    assert counts.retries == 3 and counts.applied == 4 and counts.balanced
    assert store.stats("u0")["plays"] == 2
    assert redis_client.xpending("recs:events", "profile-updater")["pending"] == 0


def test_a_message_that_always_fails_is_quarantined_by_its_delivery_count(redis_client, redis_url):
    events = _events(1, 3)
    store = _FlakyStore(poisoned=events[1]["event_id"])
    store.upsert_profiles(_profiles(1))
    publish(redis_client, events)
    counts = ProfileUpdater(redis_client, store, DURATIONS, max_deliveries=4,
                            max_backoff_s=0.01).drain()
    assert counts.dead_lettered == {QUARANTINED: 1} and counts.applied == len(events) - 1
    [(_, letter)] = redis.Redis.from_url(redis_url).xrange("recs:events:dead")
    assert letter[b"reason"] == QUARANTINED.encode()
    assert json.loads(letter[b"orig:event"])["event_id"] == events[1]["event_id"]
    assert redis_client.xpending("recs:events", "profile-updater")["pending"] == 0


def test_events_apply_exactly_once_and_bad_records_are_dead_lettered(redis_client):
    store = SqliteProfileStore(":memory:")
    store.upsert_profiles(_profiles(2))
    events = _events(2, 2)
    bad = ['{"event_id": "x1", ', "[1, 2]",
           json.dumps({**events[0], "event_id": "x2", "watch_seconds": -5.0,
                       "event_type": "play_stop"}),
           json.dumps({**events[0], "event_id": "x3", F.TITLE_ID: "t404"}),
           json.dumps({**events[0], "event_id": "x4", F.USER_ID: "ghost"})]
    publish(redis_client, events + events[:3] + bad)  # Three redelivered duplicates.
    counts = ProfileUpdater(redis_client, store, DURATIONS).drain()
    assert counts.balanced and counts.read == len(events) + 3 + len(bad)
    assert (counts.applied, counts.duplicates) == (len(events), 3)
    assert counts.dead_lettered == {"malformed_json": 1, "not_an_object": 1,
                                    "negative_watch_time": 1, "unknown_title": 1,
                                    "unknown_user": 1}
    dead = redis_client.xrange("recs:events:dead")
    assert len(dead) == 5 and dead[0][1]["orig:event"] == '{"event_id": "x1", '
    for user, expected in _expected_stats(events).items():
        stats = store.stats(user)
        assert (stats["plays"], stats["watch_seconds"]) == (expected["plays"],
                                                            expected["watch_seconds"])
        assert store.finished(user) == {"t1"}  # 950 of 1000 s is >= 90%: finished.
        assert store.history(user)[0] == "t2"  # The latest play first.
    assert redis_client.xpending("recs:events", "profile-updater")["pending"] == 0


class _Died(BaseException):
    """The process ending (as with SIGKILL): not an error the consumer may catch and retry."""


def test_a_crash_between_apply_and_ack_is_redelivered_without_double_counting(
        redis_client, redis_url, monkeypatch):
    store = RedisProfileStore(redis_url, prefix="crash:")
    store.upsert_profiles(_profiles(1))
    events = _events(1, 5)
    publish(redis_client, events)
    crashing = ProfileUpdater(redis_client, store, DURATIONS, consumer="a", batch=1)
    acked = 0
    real_xack = crashing.redis.xack

    def xack_then_crash(*args):
        nonlocal acked
        if acked == 4:
            raise _Died("consumer a died after applying, before acknowledging")
        acked += 1
        return real_xack(*args)

    monkeypatch.setattr(crashing.redis, "xack", xack_then_crash)
    with pytest.raises(_Died):
        crashing.drain()
    # Another consumer takes over the message pending on the dead one.
    counts = ProfileUpdater(redis_client, store, DURATIONS, consumer="b", claim_idle_ms=0).drain()
    assert counts.duplicates == 1 and counts.applied == len(events) - 5
    assert store.stats("u0")["plays"] == len(events) // 2
    assert store.stats("u0")["watch_seconds"] == _expected_stats(events)["u0"]["watch_seconds"]
    assert redis_client.xpending("recs:events", "profile-updater")["pending"] == 0


def _consumer_process(redis_url: str, store_url: str, catalogue: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "recs_cli.main", "consume", "--redis", redis_url,
         "--store", store_url, "--catalogue", catalogue, "--consumer", "worker",
         "--until-idle"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_a_killed_consumer_process_resumes_without_loss_or_double_counting(
        redis_client, redis_url, tmp_path):
    catalogue = tmp_path / "titles.jsonl"
    catalogue.write_text("".join(json.dumps({F.TITLE_ID: t, "duration_seconds": d}) + "\n"
                                 for t, d in DURATIONS.items()))
    store = RedisProfileStore(redis_url)
    store.upsert_profiles(_profiles(50))
    events = _events(50, 40)  # 4,000 events, with poison messages between them.
    poison_ids = set()
    for start in range(0, len(events), 200):
        publish(redis_client, events[start:start + 200])
        poison_ids.update(_publish_raw(redis_client, _poison(start)))
    first = _consumer_process(redis_url, redis_url, str(catalogue))
    deadline = time.monotonic() + 120
    while redis_client.scard("recs:applied_events") < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)  # Mid-stream, no chance to clean up.
    first.wait()
    applied_before = redis_client.scard("recs:applied_events")
    assert 500 <= applied_before < len(events), "the kill must land mid-stream"
    second = _consumer_process(redis_url, redis_url, str(catalogue))
    output, _ = second.communicate(timeout=300)
    counts = json.loads(output.strip().splitlines()[-1])
    assert second.returncode == 0
    assert redis_client.scard("recs:applied_events") == len(events)
    for user, expected in _expected_stats(events).items():
        stats = store.stats(user)
        assert (stats["plays"], stats["watch_seconds"]) == (expected["plays"],
                                                            expected["watch_seconds"]), user
    # Only what the killed process had not applied is applied now; what it applied but had
    # not acknowledged (at most one batch) comes back as duplicates.
    assert counts["applied"] == len(events) - applied_before
    assert counts["duplicates"] <= 100
    # Every poison message is quarantined; one dead-lettered just before the kill may be
    # dead-lettered again (at least once), none is lost.
    dead = [entry[b"message_id"].decode()
            for _, entry in redis.Redis.from_url(redis_url).xrange("recs:events:dead")]
    assert set(dead) == poison_ids and len(dead) - len(poison_ids) <= 1
    assert redis_client.xpending("recs:events", "profile-updater")["pending"] == 0


def test_a_cached_profile_read_is_dropped_the_moment_the_consumer_changes_the_user(
        redis_client, redis_url):
    from serving.online.store import CachedProfileStore

    store = SqliteProfileStore(":memory:")
    store.upsert_profiles(_profiles(1))
    cached = CachedProfileStore(store, ttl_s=600.0)  # Only an invalidation can refresh it.
    cached.listen_for_changes(redis_url)
    time.sleep(0.5)  # The listener subscribes.
    assert cached.finished("u0") == set() and cached.history("u0") == []
    events = _events(1, 1)
    publish(redis_client, events)
    ProfileUpdater(redis_client, store, DURATIONS).drain()
    deadline = time.monotonic() + 5
    while cached.finished("u0") != {"t1"} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cached.finished("u0") == {"t1"} and cached.history("u0") == ["t1"]
    cached.close()


def test_the_profile_cache_serves_repeats_from_memory_until_its_time_is_up():
    class Counting(SqliteProfileStore):
        reads = 0

        def profile(self, user_id):
            Counting.reads += 1
            return super().profile(user_id)

    from serving.online.store import CachedProfileStore

    store = Counting(":memory:")
    store.upsert_profiles(_profiles(3))
    cached = CachedProfileStore(store, ttl_s=0.3, max_users=2)
    for _ in range(5):
        assert cached.profile("u0")[F.AGE] == 30
    assert Counting.reads == 1
    time.sleep(0.35)
    cached.profile("u0")
    assert Counting.reads == 2  # Expired: read again.
    cached.profile("u1"), cached.profile("u2")  # u0 is the least recently used: out.
    cached.profile("u0")
    assert Counting.reads == 5
    cached.mark_finished([("u1", "t1")])  # A write through the cache drops its user.
    assert cached.finished("u1") == {"t1"}
