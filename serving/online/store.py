"""The online profile store: user profiles, the titles each user played and finished.

SQLite is the embedded default (one file, no server); Redis (`redis://` URLs, hashes, sets and
sorted sets) is the shared store of a deployment. The event-queue consumer writes through
`apply_event`, which applies each event id at most once, atomically with its effects; the
recommendation service reads.
"""

import collections
import contextlib
import functools
import os
import sqlite3
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterator, TypeVar

from recs.config import require
from recs.contract import features as F
from recs.contract import rows as row_rules
from recs.data.catalogue import read_jsonl
from recs.types import JsonDict
from serving.types import ProfileStore, StoreUnavailableError

_Method = TypeVar("_Method", bound=Callable[..., Any])

PROFILE_FIELDS = row_rules.PROFILE_FIELDS[1:]
"""The stored fields of a profile beside its user_id (`recs.contract.rows`)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT PRIMARY KEY, age INTEGER NOT NULL, country TEXT NOT NULL,
    subscription_tier TEXT NOT NULL, preferred_genres TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS finished (
    user_id TEXT NOT NULL, title_id TEXT NOT NULL, PRIMARY KEY (user_id, title_id));
CREATE TABLE IF NOT EXISTS plays (
    user_id TEXT NOT NULL, title_id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, title_id));
CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS stats (
    user_id TEXT PRIMARY KEY, plays INTEGER NOT NULL DEFAULT 0,
    watch_seconds REAL NOT NULL DEFAULT 0, likes INTEGER NOT NULL DEFAULT 0,
    skips INTEGER NOT NULL DEFAULT 0);
"""
_UPSERT_PLAY = ("INSERT INTO plays VALUES (?, ?, ?) ON CONFLICT (user_id, title_id) "
                "DO UPDATE SET ts = MAX(ts, excluded.ts)")
"""A title keeps the latest time the user played it."""
STAT_FIELDS = ("plays", "watch_seconds", "likes", "skips")


def event_effects(event: JsonDict, duration_seconds: float) -> tuple[str, float, bool]:
    """What one validated playback event changes: (stat to add to, amount, finished?).

    A `play_stop` whose watch time reaches `F.COMPLETED_WATCH_RATIO` of the title's duration
    marks the title finished, the rule ingestion labels `completed` with.
    """
    kind = event["event_type"]
    if kind == "play_start":
        return "plays", 1.0, False
    if kind == "play_stop":
        watched = float(event["watch_seconds"])
        return ("watch_seconds", watched,
                duration_seconds > 0 and watched / duration_seconds >= F.COMPLETED_WATCH_RATIO)
    return ("likes" if kind == "like" else "skips"), 1.0, False


class SqliteProfileStore:
    """Thread-safe SQLite store of profiles and finished titles.

    The file can change under a running store: replaced by another file or restored from a
    backup (a new inode, noticed within `check_every_s`), truncated, or locked by another
    writer. A call that fails raises `StoreUnavailableError` and the next one reopens the
    file (never creating it: a deleted store stays unavailable until it is back), so the
    store recovers by itself once the file is good.

    Args:
        path: database file, created with the schema when missing; ":memory:" for a
            throwaway store.
        busy_timeout_s: how long a call waits for another writer's lock before it fails.
        check_every_s: how often the file's identity is compared with the open one.
        retry_after_s: after a failure, calls fail at once for this long before the file is
            tried again.
    """

    def __init__(self, path: str, busy_timeout_s: float = 5.0, check_every_s: float = 1.0,
                 retry_after_s: float = 0.5) -> None:
        require(min(busy_timeout_s, check_every_s, retry_after_s) >= 0,
                "busy_timeout_s/check_every_s/retry_after_s", ">= 0",
                (busy_timeout_s, check_every_s, retry_after_s))
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._check_every_s = check_every_s
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = sqlite3.connect(
            path, timeout=busy_timeout_s, check_same_thread=False)
        self._connection.executescript(_SCHEMA)
        self._identity = self._file_identity()
        self._checked_at = time.monotonic()
        self._retry_after_s = retry_after_s
        self._failed: tuple[float, str] | None = None

    def _file_identity(self) -> tuple[int, int] | None:
        if self._path == ":memory:":
            return None
        try:
            status = os.stat(self._path)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    def _current(self) -> sqlite3.Connection:
        """The open connection, reopened when the file was swapped or a call failed."""
        if self._path != ":memory:" and time.monotonic() - self._checked_at >= \
                self._check_every_s:
            self._checked_at = time.monotonic()
            if self._file_identity() != self._identity:
                self._drop()
        if self._connection is None:
            # mode=rw: a store whose file is gone stays unavailable rather than empty.
            self._connection = sqlite3.connect(
                f"file:{urllib.parse.quote(self._path)}?mode=rw", uri=True,
                timeout=self._busy_timeout_s, check_same_thread=False)
            self._identity = self._file_identity()
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
        self._connection = None

    @contextlib.contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """The connection under the store's lock; a failure of the file becomes
        `StoreUnavailableError` and the connection is reopened by the next call."""
        failed = self._failed
        if failed is not None and time.monotonic() < failed[0]:
            # Fail fast for a moment after a failure: a request must not wait out another
            # writer's lock (or a broken file) again behind every other request.
            raise StoreUnavailableError(failed[1])
        with self._lock:
            try:
                yield self._current()
            except sqlite3.Error as error:
                # Only the file's faults (locked, not a database, gone, I/O); a programming
                # error or a constraint stays what it is.
                if self._path == ":memory:" or type(error) not in (sqlite3.OperationalError,
                                                                   sqlite3.DatabaseError):
                    raise
                self._drop()
                message = (f"profile store {self._path}: {type(error).__name__}: {error}; "
                           f"retried after {self._retry_after_s:g} s")
                self._failed = (time.monotonic() + self._retry_after_s, message)
                raise StoreUnavailableError(message) from error
            self._failed = None

    def ping(self) -> None:
        """Raises `StoreUnavailableError` unless the store answers a read."""
        with self._session() as connection:
            connection.execute("SELECT 1 FROM profiles LIMIT 1").fetchall()

    def upsert_profiles(self, profiles: list[JsonDict]) -> None:
        """Inserts or replaces profiles (dicts with user_id and PROFILE_FIELDS).

        Raises:
            ValueError: a profile lacks a field or has one of the wrong type.
        """
        rows = [row_rules.profile_values(profile) for profile in profiles]
        with self._session() as connection, connection:
            connection.executemany(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?)", rows)

    def mark_finished(self, pairs: list[tuple[str, str]]) -> None:
        """Records (user_id, title_id) pairs as finished; repeats are ignored."""
        with self._session() as connection, connection:
            connection.executemany("INSERT OR IGNORE INTO finished VALUES (?, ?)", pairs)

    def record_plays(self, plays: list[tuple[str, str, int]]) -> None:
        """Records (user_id, title_id, unix seconds) plays; a title keeps its latest time."""
        with self._session() as connection, connection:
            connection.executemany(_UPSERT_PLAY, plays)

    def history(self, user_id: str, limit: int = F.MAX_WATCHED) -> list[str]:
        """The user's played titles, most recent first (the query's `history`)."""
        with self._session() as connection:
            rows = connection.execute(
                "SELECT title_id FROM plays WHERE user_id = ? ORDER BY ts DESC, title_id "
                "LIMIT ?", (user_id, limit)).fetchall()
        return [title for (title,) in rows]

    def apply_event(self, event: JsonDict, duration_seconds: float) -> bool:
        """Applies one validated playback event unless its id was applied before.

        The id and the effects commit in one transaction, so a consumer that crashes between
        applying and acknowledging re-applies nothing when the event is redelivered.

        Returns:
            True when applied, False for an already-applied event id.
        """
        stat, amount, finished = event_effects(event, duration_seconds)
        user, title = event[F.USER_ID], event[F.TITLE_ID]
        with self._session() as connection, connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO applied_events VALUES (?)", (event["event_id"],))
            if cursor.rowcount == 0:
                return False
            connection.execute(_UPSERT_PLAY, (user, title, int(event["ts"])))
            connection.execute("INSERT OR IGNORE INTO stats (user_id) VALUES (?)", (user,))
            connection.execute(f"UPDATE stats SET {stat} = {stat} + ? WHERE user_id = ?",
                               (amount, user))
            if finished:
                connection.execute("INSERT OR IGNORE INTO finished VALUES (?, ?)",
                                   (user, title))
        return True

    def stats(self, user_id: str) -> dict[str, float]:
        """Counters the consumer keeps per user: plays, watch_seconds, likes, skips."""
        with self._session() as connection:
            row = connection.execute(
                "SELECT plays, watch_seconds, likes, skips FROM stats WHERE user_id = ?",
                (user_id,)).fetchone()
        return dict(zip(STAT_FIELDS, row or (0, 0.0, 0, 0)))

    def profile(self, user_id: str) -> JsonDict | None:
        with self._session() as connection:
            row = connection.execute(
                "SELECT age, country, subscription_tier, preferred_genres FROM profiles "
                "WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else {F.USER_ID: user_id, **dict(zip(PROFILE_FIELDS, row))}

    def finished(self, user_id: str) -> set[str]:
        with self._session() as connection:
            rows = connection.execute(
                "SELECT title_id FROM finished WHERE user_id = ?", (user_id,)).fetchall()
        return {title for (title,) in rows}

    def close(self) -> None:
        with self._lock:
            self._drop()


_APPLY = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], 'GT', ARGV[3], ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[3], ARGV[4], ARGV[5])
if ARGV[6] == '1' then redis.call('SADD', KEYS[4], ARGV[2]) end
return 1
"""


def _redis_unavailable(method: _Method) -> _Method:
    """A Redis store method whose connection and timeout errors are `StoreUnavailableError`
    (redis-py reconnects by itself on the next call)."""
    @functools.wraps(method)
    def call(self: "RedisProfileStore", *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as error:
            raise StoreUnavailableError(f"profile store {self._url}: "
                                        f"{type(error).__name__}: {error}") from error
    return call  # type: ignore[return-value]


class RedisProfileStore:
    """The profile store in Redis, for deployments where several service replicas and the
    consumer share it. Same interface as `ProfileStore`.

    Keys (prefix `recs:`): `profile:<user>` hash, `finished:<user>` set, `plays:<user>` sorted
    set (title -> latest unix seconds), `stats:<user>` hash, `applied_events` set.

    Args:
        url: e.g. `redis://localhost:6379/0`.
        prefix: key prefix, so several stores can share one Redis.
    """

    def __init__(self, url: str, prefix: str = "recs:", timeout_s: float | None = None
                 ) -> None:
        try:
            import redis
        except ImportError as error:  # pragma: no cover - the lock file installs it
            raise ImportError("the Redis profile store needs redis: pip install redis") from error
        self._url = url
        self._redis = redis.Redis.from_url(url, decode_responses=True,
                                           socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s)
        self._prefix = prefix
        self._apply = self._redis.register_script(_APPLY)

    def _key(self, kind: str, user_id: str = "") -> str:
        return f"{self._prefix}{kind}:{user_id}" if user_id else f"{self._prefix}{kind}"

    @_redis_unavailable
    def upsert_profiles(self, profiles: list[JsonDict]) -> None:
        """Inserts or replaces profiles.

        Raises:
            ValueError: a profile lacks a field or has one of the wrong type.
        """
        pipeline = self._redis.pipeline(transaction=True)
        for user, *fields in (row_rules.profile_values(profile) for profile in profiles):
            pipeline.hset(self._key("profile", user), mapping=dict(zip(PROFILE_FIELDS, fields)))
        pipeline.execute()

    @_redis_unavailable
    def mark_finished(self, pairs: list[tuple[str, str]]) -> None:
        pipeline = self._redis.pipeline(transaction=False)
        for user, title in pairs:
            pipeline.sadd(self._key("finished", user), title)
        pipeline.execute()

    @_redis_unavailable
    def record_plays(self, plays: list[tuple[str, str, int]]) -> None:
        pipeline = self._redis.pipeline(transaction=False)
        for user, title, ts in plays:
            pipeline.zadd(self._key("plays", user), {title: ts}, gt=True)
        pipeline.execute()

    @_redis_unavailable
    def apply_event(self, event: JsonDict, duration_seconds: float) -> bool:
        """`ProfileStore.apply_event`, atomic through one Lua script."""
        stat, amount, finished = event_effects(event, duration_seconds)
        user = event[F.USER_ID]
        return bool(self._apply(
            keys=[self._key("applied_events"), self._key("plays", user),
                  self._key("stats", user), self._key("finished", user)],
            args=[event["event_id"], event[F.TITLE_ID], int(event["ts"]), stat, amount,
                  int(finished)]))

    @_redis_unavailable
    def stats(self, user_id: str) -> dict[str, float]:
        values = self._redis.hgetall(self._key("stats", user_id))
        return {field: float(values.get(field, 0)) for field in STAT_FIELDS}

    @_redis_unavailable
    def history(self, user_id: str, limit: int = F.MAX_WATCHED) -> list[str]:
        """Played titles, most recent first."""
        return self._redis.zrevrange(self._key("plays", user_id), 0, limit - 1)

    @_redis_unavailable
    def profile(self, user_id: str) -> JsonDict | None:
        values = self._redis.hgetall(self._key("profile", user_id))
        if not values:
            return None
        return {F.USER_ID: user_id, **values, F.AGE: int(values[F.AGE])}

    @_redis_unavailable
    def finished(self, user_id: str) -> set[str]:
        return set(self._redis.smembers(self._key("finished", user_id)))

    @_redis_unavailable
    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()


class CachedProfileStore:
    """A read-through cache of a `ProfileStore`'s per-user reads, for the service: a request
    reads a user's profile, history and finished titles, three store round trips, at most
    once per `ttl_s`.

    An entry is dropped when its time is up or when `invalidate(user)` is called: the event
    consumer publishes every user it changes (`recs.contract.events.PROFILE_CHANGES`), and
    `listen_for_changes` turns those messages into invalidations, so a finished title leaves
    the next list at once; without that channel a change shows within `ttl_s`. Writes go
    through to the store and invalidate their users.

    Args:
        store: the store to read from.
        ttl_s: how long an entry is served; 0 disables the cache.
        max_users: entries kept (least recently used out first).
    """

    def __init__(self, store: ProfileStore, ttl_s: float = 2.0, max_users: int = 100_000
                 ) -> None:
        if ttl_s < 0 or max_users < 1:
            raise ValueError(f"ttl_s must be >= 0 and max_users >= 1; received {ttl_s} and "
                             f"{max_users}.")
        self.store = store
        self.ttl_s = ttl_s
        self.max_users = max_users
        self._entries: "collections.OrderedDict[str, tuple[float, dict]]" = (
            collections.OrderedDict())
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    def _entry(self, user_id: str) -> dict:
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(user_id)
            if cached is not None and now - cached[0] < self.ttl_s:
                self._entries.move_to_end(user_id)
                return cached[1]
        entry = {"profile": self.store.profile(user_id), "history": self.store.history(user_id),
                 "finished": frozenset(self.store.finished(user_id))}
        if self.ttl_s > 0:
            with self._lock:
                self._entries[user_id] = (now, entry)
                self._entries.move_to_end(user_id)
                while len(self._entries) > self.max_users:
                    self._entries.popitem(last=False)
        return entry

    def invalidate(self, user_id: str) -> None:
        with self._lock:
            self._entries.pop(user_id, None)

    def profile(self, user_id: str) -> JsonDict | None:
        return self._entry(user_id)["profile"]

    def history(self, user_id: str, limit: int = F.MAX_WATCHED) -> list[str]:
        return self._entry(user_id)["history"][:limit]

    def finished(self, user_id: str) -> set[str]:
        return set(self._entry(user_id)["finished"])

    def stats(self, user_id: str) -> dict[str, float]:
        return self.store.stats(user_id)

    def upsert_profiles(self, profiles: list[JsonDict]) -> None:
        self.store.upsert_profiles(profiles)
        for profile in profiles:
            self.invalidate(str(profile.get(F.USER_ID)))

    def mark_finished(self, pairs: list[tuple[str, str]]) -> None:
        self.store.mark_finished(pairs)
        for user, _ in pairs:
            self.invalidate(user)

    def record_plays(self, plays: list[tuple[str, str, int]]) -> None:
        self.store.record_plays(plays)
        for user, _, _ in plays:
            self.invalidate(user)

    def apply_event(self, event: JsonDict, duration_seconds: float) -> bool:
        applied = self.store.apply_event(event, duration_seconds)
        self.invalidate(str(event[F.USER_ID]))
        return applied

    def ping(self) -> None:
        self.store.ping()

    def listen_for_changes(self, redis_url: str) -> None:
        """Drops a user's entry whenever the consumer publishes a change to them, on a daemon
        thread until `close` (reconnecting after a failure; entries still expire meanwhile)."""
        import redis

        from recs.contract.events import PROFILE_CHANGES

        def listen() -> None:
            while not self._stop.is_set():
                try:
                    pubsub = redis.Redis.from_url(redis_url).pubsub(
                        ignore_subscribe_messages=True)
                    pubsub.subscribe(PROFILE_CHANGES)
                    while not self._stop.is_set():
                        message = pubsub.get_message(timeout=0.5)
                        if message is not None:
                            self.invalidate(message["data"].decode("utf-8", "replace"))
                except redis.RedisError:
                    self._stop.wait(1.0)

        self._listener = threading.Thread(target=listen, name="profile-changes", daemon=True)
        self._listener.start()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5.0)
        self.store.close()


REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(spec: str) -> bool:
    """True for a store spec that names a Redis (`open_store` opens it as one)."""
    return spec.startswith(REDIS_URL_SCHEMES)


def open_store(spec: str, timeout_s: float | None = None) -> ProfileStore:
    """A `redis://` (or `rediss://`, `unix://`) URL opens Redis; anything else is a SQLite
    file path (":memory:" for a throwaway store).

    Args:
        timeout_s: how long one call may wait for the store (a SQLite writer's lock, a Redis
            socket) before `StoreUnavailableError`; None keeps each store's default.
    """
    if is_redis_url(spec):
        return RedisProfileStore(spec, timeout_s=timeout_s)
    return SqliteProfileStore(spec) if timeout_s is None else SqliteProfileStore(
        spec, busy_timeout_s=timeout_s)


def load_store(store: ProfileStore, users_path: str, examples_glob: str
               ) -> tuple[int, int]:
    """Bulk-loads profiles from JSON lines, and plays and finished titles from interaction
    tf.Examples.

    Returns:
        (profiles loaded, finished pairs loaded).
    """
    import tensorflow as tf  # A bulk load from tf.Examples: an offline step, not the service's.

    from recs.features import RAW_FEATURE_DTYPES

    profiles = read_jsonl(users_path)
    store.upsert_profiles(profiles)
    spec = {key: tf.io.FixedLenFeature([], RAW_FEATURE_DTYPES[key])
            for key in (F.USER_ID, F.TITLE_ID, F.COMPLETED, F.TIMESTAMP)}
    files = tf.io.gfile.glob(examples_glob)
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
               .map(lambda x: tf.io.parse_example(x, spec)))
    pairs: list[tuple[str, str]] = []
    for batch in dataset:
        store.record_plays([(u.decode(), t.decode(), int(ts)) for u, t, ts in zip(
            batch[F.USER_ID].numpy(), batch[F.TITLE_ID].numpy(), batch[F.TIMESTAMP].numpy())])
        done = batch[F.COMPLETED].numpy() == 1
        users = batch[F.USER_ID].numpy()[done]
        titles = batch[F.TITLE_ID].numpy()[done]
        pairs.extend((u.decode(), t.decode()) for u, t in zip(users, titles))
    store.mark_finished(pairs)
    return len(profiles), len(set(pairs))


def fresh_store(path: str, users_path: str, examples_glob: str) -> SqliteProfileStore:
    """A new SQLite store at `path` (an old file there is replaced) loaded with the profiles
    and the plays of the ingested examples (`load_store`)."""
    import os

    if path != ":memory:" and os.path.exists(path):
        os.unlink(path)
    store = SqliteProfileStore(path)
    load_store(store, users_path, examples_glob)
    return store
