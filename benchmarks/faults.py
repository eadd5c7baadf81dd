"""Faults of the surroundings (issue 39), each at the smallest size that shows it, through the
project's real code paths: what `benchmarks/robustness.py` writes as `figures.faults`.

    service_store   a running `ServiceServer` over a real SQLite file (opened as `serving.app`
                    opens it: `store_timeout_ms`, the `profile_cache_s` read cache), with a
                    stand-in model server that is away, so every normal answer is the
                    `model_server_error` fallback and a store fault shows as
                    `store_unavailable`: the file truncated, replaced by junk, deleted,
                    restored from a backup, locked by another writer past the budget, while a
                    client sends requests one after another and a probe reads `/readyz`.
    consumer_redis  `ProfileUpdater` on a thread against real redis-servers: the group
                    destroyed under it, Redis SIGKILLed and restarted with append-only
                    persistence while events flow (the store in that Redis, as deployed;
                    once more with the append-only file's last writes cut, as `everysec` may
                    lose them), the stream trimmed beneath a consumer that was behind. Each
                    store is compared with an uninterrupted run of the same events.
    ingestion       `run_ingestion` (Beam, DirectRunner) over a raw folder with one odd entry
                    of each kind next to a good day, over one with a forged copy of an event
                    id, and over one whose users file is missing.
    model_server    `ModelRegistry` + `ModelServer` over a tiny SavedModel with version
                    folders that are not versions (beyond int64, `²`, negative) next to good
                    ones, asked over REST and gRPC while a new good version is pushed; a
                    5,000-digit version in a REST path; ten legal REST bodies of 30 MB one
                    after another (the server in this process: its resident memory after
                    each).

Each function runs in a process of its own (`common.run_in_process`, which measures the peak
resident memory of the process tree, redis-servers included) and writes its figures as JSON
to `out`. A fault records `recovered`, `seconds_to_recover` (from the end of the fault to the
first healthy answer or message; None when it never came), `requests_5xx`, `events_lost`
(lost without being counted), `events_doubled`, and what it saw on the way.
"""

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

from benchmarks.common import KillableRedis, aof_commands

RECOVERY_TIMEOUT_S = 20.0
"""How long a fault may take to recover before it is recorded as not recovered."""


def _write(out: str, figures: dict[str, Any]) -> None:
    pathlib.Path(out).write_text(json.dumps(figures, indent=2))


def _fault(name: str, recovered: bool, seconds: float | None, requests_5xx: int = 0,
           events_lost: int = 0, events_doubled: int = 0, **seen: Any) -> dict[str, Any]:
    return {"fault": name, "recovered": recovered,
            "seconds_to_recover": None if seconds is None else round(seconds, 3),
            "requests_5xx": requests_5xx, "events_lost": events_lost,
            "events_doubled": events_doubled, **seen}


def _watchdog(seconds: float) -> None:
    """A hang ends the process (and is reported by its exit code) instead of the benchmark."""
    import faulthandler

    faulthandler.dump_traceback_later(seconds, exit=True)


# Service and its profile store ------------------------------------------------------------

class _Away:
    """A model server that is away: an answer whose profile was read falls back for that
    reason (`model_server_error`), one whose store failed for `store_unavailable`."""

    def predict_versioned(self, *args: Any, **kwargs: Any) -> Any:
        from serving.clients import ModelServerError

        raise ModelServerError("UNAVAILABLE", "away")


class _Traffic:
    """One client sending requests one after another, and a probe reading /readyz every
    50 ms, both recording (monotonic time sent, status, fallback, latency)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.answers: list[tuple[float, int | None, str | None, float]] = []
        self.probes: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._probe, daemon=True)]

    def __enter__(self) -> "_Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _send(self) -> None:
        import http.client

        body = json.dumps({"user_id": "u1", "k": 1}).encode()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                connection.request("POST", self.path, body,
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                fallback = json.loads(data).get("fallback") if response.status == 200 else None
                self.answers.append((sent, response.status, fallback,
                                     time.monotonic() - sent))
            except (OSError, http.client.HTTPException, ValueError):
                self.answers.append((sent, None, None, time.monotonic() - sent))
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            time.sleep(0.01)
        connection.close()

    def _probe(self) -> None:
        import urllib.error
        import urllib.request

        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(
                        f"http://{self.host}:{self.port}/readyz", timeout=30) as answer:
                    self.probes.append((sent, answer.status))
            except urllib.error.HTTPError as error:
                self.probes.append((sent, error.code))
            except OSError:
                self.probes.append((sent, None))
            time.sleep(0.05)

    def healthy_since(self, since: float) -> float | None:
        """When both a normal answer and a ready probe sent after `since` were seen (the
        later of the two send times), else None."""
        answer = next((sent for sent, status, fallback, _ in list(self.answers)
                       if sent >= since and status == 200 and fallback != "store_unavailable"),
                      None)
        probe = next((sent for sent, status in list(self.probes)
                      if sent >= since and status == 200), None)
        return None if answer is None or probe is None else max(answer, probe)

    def wait_healthy(self, since: float) -> float | None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            healthy = self.healthy_since(since)
            if healthy is not None:
                return healthy
            time.sleep(0.02)
        return None

    def window(self, start: float, end: float) -> dict[str, Any]:
        answers = [a for a in list(self.answers) if start <= a[0] <= end]
        probes = [p for p in list(self.probes) if start <= p[0] <= end]
        return {"requests": len(answers),
                "requests_5xx": sum(1 for a in answers if a[1] is not None and a[1] >= 500),
                "requests_unanswered": sum(1 for a in answers if a[1] is None),
                "store_fallbacks": sum(1 for a in answers if a[2] == "store_unavailable"),
                "max_latency_ms": round(max((a[3] for a in answers), default=0.0) * 1000, 1),
                "readyz_503": sum(1 for p in probes if p[1] == 503),
                "readyz_other_errors": sum(1 for p in probes
                                           if p[1] is None or (p[1] != 200 and p[1] != 503))}


def service_store(out: str, hold_s: float = 3.0) -> None:
    """The store file changed under a running service (see the module docstring)."""
    _watchdog(300)
    import sqlite3

    from serving.api.service import RECOMMENDATIONS_PATH, ServiceServer, create_app
    from serving.app import _store
    from serving.config import ServiceConfig
    from serving.online.policy import OnlinePolicy
    from serving.online.recommender import Recommender
    from serving.online.status import FixedStatus
    from serving.online.store import SqliteProfileStore

    folder = pathlib.Path(tempfile.mkdtemp(prefix="faults-store-"))
    path = folder / "profiles.db"

    def store_file(target: pathlib.Path, age: int) -> None:
        made = SqliteProfileStore(str(target))
        made.upsert_profiles([{"user_id": "u1", "age": age, "country": "de",
                               "subscription_tier": "basic", "preferred_genres": "drama"}])
        made.close()

    store_file(path, 30)
    store_file(folder / "good.db", 30)  # What a repair puts back.
    config = ServiceConfig(store=str(path))
    # As `recs serve` opens it: store_timeout_ms, behind the profile_cache_s read cache.
    store = _store(config)
    catalogue = {"t1": {"title_id": "t1", "genre": "drama", "popularity": 1.0}}
    app = create_app(OnlinePolicy(Recommender(client=_Away(), store=store, catalogue=catalogue),
                                  # Both models AVAILABLE: readiness reflects the store.
                                  config, status=FixedStatus({"retrieval": 1, "ranker": 1})))
    faults = []

    def good_copy() -> None:
        shutil.copy(folder / "good.db", folder / "incoming.db")
        os.replace(folder / "incoming.db", path)

    def junk() -> None:
        (folder / "junk").write_bytes(b"not a database " * 64)
        os.replace(folder / "junk", path)

    def truncate() -> None:
        with open(path, "r+b") as handle:
            handle.truncate(0)

    holder: list[sqlite3.Connection] = []

    def lock() -> None:
        holder.append(sqlite3.connect(str(path)))
        holder[0].execute("BEGIN EXCLUSIVE")

    def unlock() -> None:
        holder.pop().rollback()

    def restore_backup() -> None:
        store_file(folder / "backup.db", 41)
        os.replace(folder / "backup.db", path)

    with ServiceServer(app) as server, _Traffic(server.host, server.port,
                                                RECOMMENDATIONS_PATH) as traffic:
        if traffic.wait_healthy(time.monotonic()) is None:
            raise RuntimeError("the service never answered before any fault")
        for name, apply, undo in (("store_truncated", truncate, good_copy),
                                  ("store_replaced_by_another_file", junk, good_copy),
                                  ("store_deleted", path.unlink, good_copy),
                                  ("store_locked_past_the_budget", lock, unlock),
                                  ("store_restored_from_a_backup", restore_backup, None)):
            started = time.monotonic()
            apply()
            time.sleep(hold_s)
            ended = time.monotonic()
            if undo is not None:
                undo()
            healthy = traffic.wait_healthy(ended)
            time.sleep(0.2)  # A few answers after the recovery, in the window too.
            seen = traffic.window(started, time.monotonic())
            extra: dict[str, Any] = {}
            if name == "store_restored_from_a_backup":
                # Past the read cache: the file the store has open now.
                restored = store.store.profile("u1") or {}
                extra["reads_the_restored_file"] = restored.get("age") == 41
            if name == "store_locked_past_the_budget":
                extra["store_timeout_ms"] = config.store_timeout_ms
            recovered = healthy is not None and extra.get("reads_the_restored_file", True)
            faults.append(_fault(name, recovered, None if healthy is None else healthy - ended,
                                 seen.pop("requests_5xx"), fault_seconds=hold_s, **seen,
                                 **extra))
            print(f"  service_store {name}: {faults[-1]}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    _write(out, {"faults": faults})


# Event consumer and Redis ------------------------------------------------------------------

STREAM, GROUP = "recs:events", "profile-updater"
DURATIONS = {"t1": 1000.0, "t2": 2000.0}


@contextlib.contextmanager
def _redis(folder: pathlib.Path, *options: str) -> Iterator[KillableRedis]:
    server = KillableRedis(folder, *options)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _events(users: int, rounds: int, now: int) -> list[dict]:
    """Per user and round a play_start (plays + 1), a play_stop watching 1 s of t2
    (watch_seconds + 1) and a like of t1 (likes + 1): every event adds exactly 1 to one
    counter, so the counters count events; every fifth round a play_stop of t1 watches 950 s
    instead (finished)."""
    events, n = [], 0
    for r in range(rounds):
        for u in range(users):
            user = f"u{u}"
            finish = r % 5 == 4
            title = "t1" if finish else "t2"
            events += [
                {"event_id": f"e{n}", "user_id": user, "title_id": title,
                 "device_type": "tv", "event_type": "play_start", "ts": now + n},
                {"event_id": f"e{n + 1}", "user_id": user, "title_id": title,
                 "device_type": "tv", "event_type": "play_stop", "ts": now + n + 1,
                 "watch_seconds": 950.0 if finish else 1.0},
                {"event_id": f"e{n + 2}", "user_id": user, "title_id": "t1",
                 "device_type": "tv", "event_type": "like", "ts": now + n + 2}]
            n += 3
    return events


def _profiles(users: int) -> list[dict]:
    return [{"user_id": f"u{u}", "age": 30, "country": "de", "subscription_tier": "standard",
             "preferred_genres": "drama"} for u in range(users)]


def _contents(store: Any, users: int) -> dict[str, tuple]:
    return {f"u{u}": (store.stats(f"u{u}"), sorted(store.finished(f"u{u}")),
                      store.history(f"u{u}", limit=1000)) for u in range(users)}


def _event_units(stats: dict[str, float]) -> float:
    """Events whose effects a user's counters hold (950 s stops count as one, see _events)."""
    watched = stats["watch_seconds"]
    finishes = int(watched // 950)
    return stats["plays"] + stats["likes"] + stats["skips"] + finishes + (watched - 950 * finishes)


def _compare(actual: dict[str, tuple], expected: dict[str, tuple]) -> dict[str, Any]:
    """Events lost and doubled, from each user's counters against an uninterrupted run, and
    whether the whole store (counters, finished titles, history) is the same."""
    lost = doubled = 0.0
    for user, (stats, _, _) in expected.items():
        difference = _event_units(actual[user][0]) - _event_units(stats)
        lost += max(0.0, -difference)
        doubled += max(0.0, difference)
    return {"events_lost": int(lost), "events_doubled": int(doubled),
            "store_equals_uninterrupted_run": actual == expected}


def _uninterrupted(url: str, events: list[dict], users: int) -> dict[str, tuple]:
    import redis

    from serving.consumer import ProfileUpdater, publish
    from serving.online.store import SqliteProfileStore

    client = redis.Redis.from_url(url, decode_responses=True)
    store = SqliteProfileStore(":memory:")
    store.upsert_profiles(_profiles(users))
    publish(client, events, stream="calm:events")
    ProfileUpdater(client, store, DURATIONS, stream="calm:events", group="calm").drain()
    client.delete("calm:events")
    return _contents(store, users)


@contextlib.contextmanager
def _running(updater: Any) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=updater.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _wait(condition: Callable[[], bool], timeout_s: float = RECOVERY_TIMEOUT_S) -> float | None:
    """The monotonic time `condition` first held, or None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.monotonic()
        except Exception:  # noqa: BLE001  (Redis still coming back: ask again)
            pass
        time.sleep(0.02)
    return None


class _Progress:
    """When a running consumer finishes its first message after `mark()` (a thread watching
    its counts, so that the caller can keep publishing)."""

    def __init__(self, updater: Any) -> None:
        self.updater, self.at = updater, None

    def mark(self) -> None:
        read = self.updater.counts.read
        threading.Thread(target=lambda: setattr(self, "at", _wait(
            lambda: self.updater.counts.read > read)), daemon=True).start()


def _caught_up(client: Any) -> bool:
    [group] = client.xinfo_groups(STREAM)
    return group["pending"] == 0 and \
        group["last-delivered-id"] == client.xinfo_stream(STREAM)["last-generated-id"]


def consumer_redis(out: str, users: int = 20, rounds: int = 10) -> None:
    """Redis changing under a running consumer (see the module docstring)."""
    _watchdog(300)
    import redis

    from serving.consumer import ProfileUpdater, publish
    from serving.online.store import SqliteProfileStore

    folder = pathlib.Path(tempfile.mkdtemp(prefix="faults-redis-"))
    now = int(time.time()) - 3600  # Within the consumer's lateness window.
    events = _events(users, rounds, now)  # 600 events.
    faults = []
    with _redis(folder / "calm", "--appendonly", "no") as calm_server:
        expected = _uninterrupted(calm_server.url, events, users)
        client = redis.Redis.from_url(calm_server.url, decode_responses=True)

        # The group destroyed under a running consumer, with events before and after.
        store = SqliteProfileStore(str(folder / "group.db"))
        store.upsert_profiles(_profiles(users))
        half = len(events) // 2
        publish(client, events[:half])
        updater = ProfileUpdater(client, store, DURATIONS, max_backoff_s=0.2)
        progress = _Progress(updater)
        with _running(updater):
            _wait(lambda: updater.counts.read >= half)
            ended = time.monotonic()
            client.xgroup_destroy(STREAM, GROUP)
            progress.mark()
            publish(client, events[half:])
            done = _wait(lambda: updater.counts.read >= len(events) and _caught_up(client))
        counts = updater.counts
        compared = _compare(_contents(store, users), expected)
        faults.append(_fault(
            "group_destroyed", done is not None and compared["store_equals_uninterrupted_run"],
            None if progress.at is None else progress.at - ended,
            seconds_to_catch_up=None if done is None else round(done - ended, 3),
            events=len(events),
            group_recreations=[dataclasses.asdict(r) for r in counts.group_recreations],
            duplicates_counted=counts.duplicates, **compared))
        print(f"  consumer_redis group_destroyed: {faults[-1]}", flush=True)
        store.close()
        client.delete(STREAM)

        # The stream trimmed beneath a consumer that was behind: what it could not read is
        # counted, with its ids; what came after is applied.
        store = SqliteProfileStore(str(folder / "trim.db"))
        store.upsert_profiles(_profiles(users))
        third = len(events) // 3
        publish(client, events[:third])
        updater = ProfileUpdater(client, store, DURATIONS, max_backoff_s=0.2)
        updater.drain()
        publish(client, events[third:2 * third])
        client.xtrim(STREAM, maxlen=third // 2, approximate=False)  # Half of them trimmed.
        ended = time.monotonic()
        publish(client, events[2 * third:])
        counts = updater.drain()
        done = time.monotonic()
        trimmed = third - third // 2
        kept = events[:third] + events[2 * third - third // 2:]
        compared = _compare(_contents(store, users), _uninterrupted(calm_server.url, kept, users))
        faults.append(_fault(
            "stream_trimmed", counts.unread == trimmed and compared[
                "store_equals_uninterrupted_run"], done - ended,
            note="seconds_to_recover: the behind consumer's drain of the stream after the "
                 "trim (300 entries into a SQLite file)",
            events_lost=trimmed - counts.unread, events_doubled=compared["events_doubled"],
            events=len(events), trimmed_unread=trimmed, counted_as_gap=counts.unread,
            gaps=[dataclasses.asdict(g) for g in counts.gaps],
            store_equals_run_without_the_trimmed=compared["store_equals_uninterrupted_run"]))
        print(f"  consumer_redis stream_trimmed: {faults[-1]}", flush=True)
        store.close()

    for lose_tail in (False, True):
        faults.append(_redis_restart(folder / f"aof-{lose_tail}", events, users, expected,
                                     lose_tail))
        print(f"  consumer_redis {faults[-1]['fault']}: {faults[-1]}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    _write(out, {"faults": faults})


def _lose_tail(folder: pathlib.Path, event_id: str) -> int:
    """Cuts the append-only file where the XADD of `event_id` begins, as `appendfsync
    everysec` may lose its last second when the machine (or a busy disk) loses Redis: the
    XADDs after it were acknowledged to the producer, and the consumer's writes (effects,
    acknowledgements) after it are gone too. Returns the bytes cut."""
    [incr] = (folder / "appendonlydir").glob("*.incr.aof")
    aof = incr.read_bytes()
    marker = f'"event_id": "{event_id}"'.encode()
    for start, _, arguments in aof_commands(aof):
        if arguments[0].upper() == b"XADD" and any(marker in a for a in arguments):
            os.truncate(incr, start)
            return len(aof) - start
    raise RuntimeError(f"no XADD of {event_id} in {incr}")


def _redis_restart(folder: pathlib.Path, events: list[dict], users: int,
                   expected: dict[str, tuple], lose_tail: bool) -> dict[str, Any]:
    """Redis SIGKILLed and restarted with append-only persistence while events flow, the
    store in that Redis (the deployment); with `lose_tail`, the file also loses the writes of
    the last batches before the kill. The producer sends again what the stream no longer
    holds after the restart (`serving.consumer.publish`'s rule); event ids absorb copies."""
    import redis

    from serving.consumer import ProfileUpdater, publish
    from serving.online.store import RedisProfileStore

    with _redis(folder, "--appendonly", "yes", "--appendfsync", "everysec") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = RedisProfileStore(server.url)
        store.upsert_profiles(_profiles(users))
        time.sleep(1.1)  # The profiles on disk (everysec) before the kill: not the fault.
        updater = ProfileUpdater(client, store, DURATIONS, batch=20, max_backoff_s=0.2)
        sent: list[dict] = []
        batches = [events[i:i + 30] for i in range(0, len(events), 30)]
        kill_at, cut, resent = len(batches) // 2, 0, []
        progress = _Progress(updater)
        with _running(updater):
            for index, batch in enumerate(batches):
                if index == kill_at:
                    server.kill()
                    if lose_tail:  # The last three batches' XADDs and all that followed.
                        cut = _lose_tail(folder, batches[index - 3][0]["event_id"])
                    server.start()
                    restarted = time.monotonic()
                    progress.mark()
                    held = {json.loads(fields["event"])["event_id"]
                            for _, fields in client.xrange(STREAM)}
                    resent = [event for event in sent if event["event_id"] not in held]
                    publish(client, resent)
                publish(client, batch)
                sent += batch
                time.sleep(0.03)  # Events flow while the consumer works.
            done = _wait(lambda: _caught_up(client) and sum(
                _event_units(store.stats(f"u{u}")) for u in range(users)) >= len(events))
        counts = updater.counts
        compared = _compare(_contents(store, users), expected)
    name = "redis_sigkill_restart_appendonly" + ("_lost_tail" if lose_tail else "")
    return _fault(
        name, done is not None and compared["store_equals_uninterrupted_run"],
        None if progress.at is None else progress.at - restarted,
        seconds_to_catch_up=None if done is None else round(done - restarted, 3),
        events=len(events), aof_bytes_cut=cut, resent_by_the_producer=len(resent),
        duplicates_counted=counts.duplicates, retries=counts.retries,
        note="seconds_to_recover: from the restart to the first message finished after it; "
             "seconds_to_catch_up: to the last, while the producer sends the second half "
             "(about 0.3 s)", **compared)


# Ingestion ---------------------------------------------------------------------------------

DAY = "2026-01-05"
T0 = 1_767_600_000  # 2026-01-05 08:00:00 UTC.


def _event_line(event_id: str, event_type: str, title: str = "t1", ts: int = T0,
                **extra: Any) -> str:
    return json.dumps({"event_id": event_id, "user_id": "u1", "title_id": title,
                       "event_type": event_type, "ts": ts, "device_type": "tv", **extra}) + "\n"


def _raw(root: pathlib.Path) -> Any:
    """A raw folder with one good day file of two events."""
    from recs.contract.layout import RawLayout

    raw = RawLayout(root / "raw")
    raw.events_day(DAY).mkdir(parents=True)
    raw.users.write_text(json.dumps({"user_id": "u1", "age": 30, "country": "us",
                                     "subscription_tier": "basic",
                                     "preferred_genres": "drama"}) + "\n")
    raw.titles.write_text("".join(json.dumps(title) + "\n" for title in (
        {"title_id": "t1", "genre": "drama", "release_year": 2020, "popularity": 3.0,
         "description": "a story", "duration_seconds": 1000},
        {"title_id": "t2", "genre": "comedy", "release_year": 2021, "popularity": 1.0,
         "description": "a laugh", "duration_seconds": 2000})))
    (raw.events_day(DAY) / "part-0.jsonl").write_text(
        _event_line("g1", "play_start") + _event_line("g2", "play_stop", ts=T0 + 600,
                                                      watch_seconds=600.0))
    return raw


def _odd_entries(root: pathlib.Path) -> tuple[Any, dict[str, int]]:
    """The good day and one odd entry of each kind the issue names; the reasons each should
    be counted under."""
    from recs.contract.layout import SkipReason

    raw = _raw(root)
    day = raw.events_day(DAY)
    for name in ("day=2026-13-45", "day=2026-01-05.bak"):  # Impossible day; a backup copy.
        (raw.events / name).mkdir()
        (raw.events / name / "part-0.jsonl").write_text(_event_line(f"x-{name}", "like"))
    os.mkfifo(day / "pipe.jsonl")
    (day / "sub").mkdir()
    (day / "sub" / "part-0.jsonl").write_text(
        "".join(_event_line(f"n{i}", "like", ts=T0 + 2_000 + i) for i in range(10)))
    (day / "dangling.jsonl").symlink_to("missing.jsonl")
    (day / "loop.jsonl").symlink_to("loop.jsonl")
    secret = root / "elsewhere" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_text("SECRET-OUTSIDE-RAW not an event\n")
    (day / "outside.jsonl").symlink_to(secret)
    return raw, {SkipReason.NOT_A_DAY: 2, SkipReason.NOT_A_REGULAR_FILE: 1,
                 SkipReason.NESTED_FOLDER: 1, SkipReason.DANGLING_LINK: 1,
                 SkipReason.LINK_LOOP: 1, SkipReason.LINK_OUTSIDE_RAW: 1}


def _examples(config: Any) -> list[dict]:
    """The interaction records ingestion wrote (NumPy values)."""
    import tensorflow as tf

    from recs import features as F

    files = tf.io.gfile.glob(f"{config.examples_dir}/day=*/*.tfrecord.gz")
    spec = F.raw_feature_spec()
    return [{key: value.numpy() for key, value in
             tf.io.parse_single_example(example, spec).items()}
            for example in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def ingestion(out: str) -> None:
    """Odd raw folders and a missing users file (see the module docstring)."""
    _watchdog(300)
    import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from recs import features as F
    from recs.contract.layout import RAW_FOLDER_LAYOUT
    from transforms.ingestion import CONFLICTING_DUPLICATE, IngestionConfig, run_ingestion

    folder = pathlib.Path(tempfile.mkdtemp(prefix="faults-ingestion-"))
    faults = []
    raw, planted = _odd_entries(folder / "odd")
    started = time.monotonic()
    report = run_ingestion(IngestionConfig.for_raw(raw.root, folder / "odd" / "out"))
    seconds = time.monotonic() - started
    skipped = {str(reason): count for reason, count in report.skipped.items()}
    counted = skipped == {str(reason): count for reason, count in planted.items()}
    written = "".join(p.read_text() for p in (folder / "odd" / "out").rglob("*.jsonl"))
    faults.append(_fault(
        "odd_raw_folders", counted and report.events_accepted == 2 and report.lines_balanced,
        seconds, events_lost=2 - min(2, report.events_accepted),
        events_doubled=max(0, report.events_accepted - 2),
        planted={str(r): c for r, c in planted.items()}, counted=skipped,
        events_not_read_but_counted=10 + 2,  # The nested folder's 10, the odd days' 2.
        report_says_balanced=report.balanced,
        outside_link_content_copied="SECRET-OUTSIDE-RAW" in written,
        note="seconds_to_recover is the whole job's time: it finishes instead of crashing "
             "or hanging"))
    print(f"  ingestion odd_raw_folders: {faults[-1]}", flush=True)

    # A forged copy of g2 (10 s watched instead of 600) in a file whose name sorts first:
    # before, the earliest copy won; now copies that differ are a conflict and none is used.
    raw = _raw(folder / "forged")
    (raw.events_day(DAY) / "a-forged.jsonl").write_text(
        _event_line("g2", "play_stop", ts=T0 + 600, watch_seconds=10.0))
    config = IngestionConfig.for_raw(raw.root, folder / "forged" / "out")
    started = time.monotonic()
    report = run_ingestion(config)
    seconds = time.monotonic() - started
    watched = [float(record[F.WATCH_SECONDS]) for record in _examples(config)]
    refused = report.dead_lettered.get(CONFLICTING_DUPLICATE, 0)
    faults.append(_fault(
        "conflicting_copies_of_an_event_id", refused == 2 and report.balanced and
        10.0 not in watched, seconds, events_lost=0, events_doubled=0,
        dead_lettered=dict(report.dead_lettered), watch_seconds_written=watched,
        note="both copies of g2 are conflicting_duplicate dead letters (the README's rule): "
             "the forgery displaces nothing; the real g2 is refused with it, by design"))
    print(f"  ingestion conflicting copies: {faults[-1]}", flush=True)

    raw = _raw(folder / "missing")
    raw.users.unlink()
    started = time.monotonic()
    try:
        run_ingestion(IngestionConfig.for_raw(raw.root, folder / "missing" / "out"))
        message = ""
    except ValueError as error:
        message = str(error)
    seconds = time.monotonic() - started
    named = message.startswith(f"users_path {str(raw.users)!r}") and \
        RAW_FOLDER_LAYOUT in message
    faults.append(_fault(
        "missing_users_file", named and not (folder / "missing" / "out").exists(), seconds,
        error=message.splitlines()[0][:200] if message else None,
        note="recovered: a ValueError naming the file and the layout before the pipeline "
             "starts; seconds_to_recover is the time to that error"))
    print(f"  ingestion missing_users_file: {faults[-1]}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    _write(out, {"faults": faults})


# Model server ------------------------------------------------------------------------------

ODD_VERSIONS = ("99999999999999999999", "\u00b2", "-1")
"""Beyond int64, a non-ASCII digit, negative."""


def _tiny_saved_model(path: pathlib.Path) -> None:
    import tensorflow as tf

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 2.0}

    module = Double()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


LARGE_BATCHES, LARGE_BATCH_BYTES, LARGE_BATCH_GROWTH_MB = 10, 30 * 2**20, 64
"""Legal predict bodies near the model server's limit, one after another, and how much the
process may keep beyond what the first one left."""


def _large_batches(url: str) -> tuple[list[int], list[float]]:
    """Sends `LARGE_BATCHES` REST bodies of about `LARGE_BATCH_BYTES` (floats for the tiny
    model's `x`); returns each answer's status and this process's resident MB after it."""
    import urllib.error
    import urllib.request

    import psutil

    count = LARGE_BATCH_BYTES // len("1.25, ")
    statuses, resident = [], []
    for batch in range(LARGE_BATCHES):
        body = ('{"instances": [' + ", ".join([f"{batch % 7}.25"] * count) + "]}").encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body),
                                        timeout=300) as answer:
                answer.read()
                statuses.append(answer.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
        del body
        resident.append(round(psutil.Process().memory_info().rss / 2**20, 1))
    return statuses, resident


def model_server(out: str) -> None:
    """Odd version folders next to good ones (see the module docstring)."""
    _watchdog(300)
    import logging
    import urllib.error
    import urllib.request

    import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    from serving.model_server import ModelRegistry, ModelServer

    folder = pathlib.Path(tempfile.mkdtemp(prefix="faults-models-"))
    model = folder / "ranker"
    _tiny_saved_model(model / "1")
    shutil.copytree(model / "1", model / "2")
    for name in ODD_VERSIONS:  # Each a real SavedModel: only its name is wrong.
        shutil.copytree(model / "1", model / name)
    statuses: list[int | None] = []

    def rest(path: str, body: dict | None = None) -> tuple[int | None, dict]:
        data = None if body is None else json.dumps(body).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    server.rest_url + path, data=data), timeout=30) as answer:
                statuses.append(answer.status)
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
            return error.code, {}
        except OSError:
            statuses.append(None)
            return None, {}

    class Seen(logging.Handler):
        """Log records of the model server that name an odd folder."""

        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.named: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if any(name in message for name in ODD_VERSIONS):
                self.named.append(message)

    seen = Seen()
    logging.getLogger("recs").addHandler(seen)
    logging.getLogger("recs").setLevel(logging.DEBUG)
    faults = []
    started = time.monotonic()
    registry = ModelRegistry(str(folder), ("ranker",))
    try:
        registry.load()
        load_error = None
    except Exception as error:  # noqa: BLE001  (recorded: the fault's answer)
        load_error = f"{type(error).__name__}: {error}"
    with ModelServer(registry) as server:
        registry.start_polling(0.2)
        serving_at_start = time.monotonic() - started
        status, body = rest("/v1/models/ranker")
        versions = [s["version"] for s in body.get("model_version_status", [])]
        predicted, answer = rest("/v1/models/ranker:predict", {"instances": [1.0, 2.0]})
        channel = grpc.insecure_channel(server.grpc_target)
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            grpc_versions = [s.version for s in stub.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "ranker"}),
                timeout=30).model_version_status]
            grpc_error = None
        except grpc.RpcError as error:
            grpc_versions, grpc_error = [], error.code().name
        # A new good version pushed while the odd folders stay: the poller must still run.
        pushed = time.monotonic()
        shutil.copytree(model / "1", model / "3")
        loaded = _wait(lambda: rest("/v1/models/ranker")[1].get("model_version_status", [{}])
                       [0].get("version") == "3")
        failed_5xx = sum(1 for s in statuses if s is not None and s >= 500)
        long_version, _ = rest("/v1/models/ranker/versions/" + "9" * 5000)
        resident = _large_batches(server.rest_url + "/v1/models/ranker:predict")
        channel.close()
        registry.stop_polling()
    ok = (load_error is None and status == 200 and versions == ["2"] and predicted == 200
          and answer.get("predictions") == [2.0, 4.0] and grpc_versions == [2]
          and loaded is not None)
    faults.append(_fault(
        "odd_version_folders", ok, None if loaded is None else loaded - pushed, failed_5xx,
        odd_folders=list(ODD_VERSIONS), load_error=load_error,
        start_to_serving_seconds=round(serving_at_start, 3), rest_versions=versions,
        grpc_versions=grpc_versions, grpc_error=grpc_error,
        new_version_served_after_s=None if loaded is None else round(loaded - pushed, 3),
        odd_folders_logged=len(seen.named),
        # TF Serving's status names versions only; the registry shows what it skipped.
        odd_folders_shown_in_status=any(name in json.dumps(body) for name in ODD_VERSIONS),
        odd_folders_shown_by_registry=registry.not_versions.get("ranker", []),
        note="seconds_to_recover: a good version pushed beside the odd folders until it "
             "serves (the poller kept running)"))
    print(f"  model_server odd_version_folders: {faults[-1]}", flush=True)
    faults.append(_fault("version_of_5000_digits_in_a_rest_path",
                         long_version is not None and 400 <= long_version < 500, 0.0,
                         int(long_version is not None and long_version >= 500),
                         status=long_version))
    print(f"  model_server 5000-digit version: {faults[-1]}", flush=True)
    statuses_large, resident_mb = resident
    growth = resident_mb[-1] - resident_mb[0]
    faults.append(_fault(
        "large_legal_batches", all(s == 200 for s in statuses_large)
        and growth <= LARGE_BATCH_GROWTH_MB, None, sum(1 for s in statuses_large if s >= 500),
        batches=len(statuses_large), body_mb=round(LARGE_BATCH_BYTES / 2**20, 1),
        resident_mb_after_each=resident_mb, growth_after_first_mb=round(growth, 1),
        note=f"recovered: every answer 200 and the resident memory after the last batch at "
             f"most {LARGE_BATCH_GROWTH_MB} MB above the first's"))
    print(f"  model_server large batches: {faults[-1]}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    _write(out, {"faults": faults})


COMPONENTS: dict[str, Callable[[str], None]] = {
    "service_store": service_store, "consumer_redis": consumer_redis,
    "ingestion": ingestion, "model_server": model_server}
"""Component -> its faults, in the order they run."""


def run(components: tuple[str, ...] = tuple(COMPONENTS)) -> dict[str, Any]:
    """Runs each component's faults in a process of its own.

    Returns:
        {component: {"faults": [...], "peak_rss_mb": ..., "seconds": ...}}; a component whose
        process failed has `error` instead of `faults`.
    """
    from common import run_in_process

    figures: dict[str, Any] = {}
    for name in components:
        with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
            out = os.path.join(scratch, "figures.json")
            try:
                seconds, peak_mb = run_in_process(COMPONENTS[name], out)
                figures[name] = json.loads(pathlib.Path(out).read_text())
            except RuntimeError as error:
                figures[name] = {"error": str(error)}
                seconds = peak_mb = None
        figures[name].update(
            {"peak_rss_mb": None if peak_mb is None else round(peak_mb, 1),
             "seconds": None if seconds is None else round(seconds, 1)})
        print(f"{name}: {json.dumps(figures[name])}", flush=True)
    return figures
