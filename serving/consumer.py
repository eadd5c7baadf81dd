"""Profile updates from the event queue: a Redis Streams consumer group feeding the online
profile store, so the next recommendation reflects a watch that just happened.

    producers --XADD--> stream `recs:events` --XREADGROUP--> ProfileUpdater --> profile store
                                                                   |--XADD--> `recs:events:dead`

After applying an event it publishes the user's id on `recs:profile-changes`, so services that
cache profile reads (`serving.online.store.CachedProfileStore`) drop that user's entry at once.

Delivery is at least once: a message is acknowledged (XACK) only after the store applied it.
Effects are exactly once: the store applies each event id once, atomically with its effects, so
a redelivered message changes nothing. A consumer that restarts first re-reads its own pending
messages; messages pending on a consumer that died are claimed (XAUTOCLAIM) once idle for
`claim_idle_ms`.

No message can stop the consumer:
- reads are binary-safe (the stream is read as bytes; a field name or value that is not UTF-8
  is just a record the contract refuses);
- each message is validated by `recs.contract.events.parse_event`, the contract Beam ingestion
  applies, with the time stamp bounded by the message's arrival time, and checked against the
  catalogue (known title, `plausible_watch`) and the store (known user);
- a message refused for good is copied to the dead-letter stream, with the reason and every
  original field byte for byte (`orig:<name>`), and acknowledged;
- a failure of Redis or of the store is transient: the message stays pending, the consumer
  backs off (doubling, up to `max_backoff_s`) and retries; any other exception while applying is
  retried the same way;
- a message delivered `max_deliveries` times (the pending entry's delivery count, which a restart
  or a claim raises) is quarantined to the dead-letter stream and acknowledged: a poison message
  that kills the process on every attempt cannot hold back the messages behind it.
"""

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from typing import Any, Callable

from recs.contract import events as E
from recs.contract import features as F
from recs.contract import rows as row_rules
from recs.contract.events import Reason, TimeWindow, parse_event, plausible_watch
from recs.types import JsonDict
from serving.types import ProfileStore, StoreUnavailableError

EVENT_FIELD = "event"
"""Stream entries carry one raw event (the streaming-log JSON object) in this field."""
QUARANTINED = Reason.QUARANTINED
"""Dead-letter reason of a message quarantined by its delivery count."""
_LOG = logging.getLogger("recs.consumer")


@dataclasses.dataclass
class ConsumerCounts:
    """What a consumer did: every message finished is applied, a duplicate, or dead-lettered
    (quarantined ones included); `retries` counts transient failures, which finish nothing."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: dict[str, int] = dataclasses.field(default_factory=dict)
    retries: int = 0

    @property
    def balanced(self) -> bool:
        return self.read == self.applied + self.duplicates + sum(self.dead_lettered.values())


def publish(redis_client: Any, events: list[dict[str, Any] | str | bytes],
            stream: str = E.EVENT_STREAM) -> list[Any]:
    """Appends events (dicts, or raw strings or bytes as a producer might send them) to the
    stream.

    Returns:
        The stream entry ids.
    """
    pipeline = redis_client.pipeline(transaction=False)
    for event in events:
        pipeline.xadd(stream, {EVENT_FIELD: event if isinstance(event, (str, bytes))
                               else json.dumps(event)})
    return pipeline.execute()


def _binary(redis_client: Any) -> Any:
    """The same connection settings with `decode_responses=False`: a client that decodes would
    raise inside redis-py on the first value that is not UTF-8, before we could refuse it."""
    import redis

    kwargs = dict(redis_client.connection_pool.connection_kwargs)
    if not kwargs.get("decode_responses"):
        return redis_client
    kwargs["decode_responses"] = False
    pool = redis.ConnectionPool(connection_class=redis_client.connection_pool.connection_class,
                                **kwargs)
    return redis.Redis(connection_pool=pool)


def _transient_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
            sqlite3.OperationalError, StoreUnavailableError, ConnectionError, TimeoutError)


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "backslashreplace")


class ProfileUpdater:
    """Consumes playback events from a Redis Stream into a profile store.

    Args:
        redis_client: a `redis.Redis`; read as bytes whatever its `decode_responses`.
        store: where the events land (SQLite or Redis).
        durations: title_id -> duration in seconds (from the catalogue), to tell finished.
        stream / group / consumer: the stream, consumer group and this consumer's name; a
            restarted consumer should keep its name to resume its own pending messages.
        dead_letter_stream: where refused and quarantined records go, with their reason.
        claim_idle_ms: messages pending this long on another consumer are taken over.
        batch: messages per read.
        max_deliveries: a message delivered this many times is quarantined.
        max_lateness_seconds / max_early_seconds: how far before / after its arrival (the
            stream entry's time) an event may be stamped.
        max_watch_ratio: watch time over this multiple of the title's duration is refused.
        max_backoff_s: the longest wait between retries after a transient failure.
        clock: seconds since the epoch at which a message counts as arrived; None takes the
            stream entry's own time (the Redis server's clock). A simulation that plays days
            faster than they pass (`simulation.loop`) passes its simulated clock.
    """

    def __init__(self, redis_client: Any, store: ProfileStore,
                 durations: dict[str, float], stream: str = E.EVENT_STREAM,
                 group: str = "profile-updater", consumer: str = "updater-1",
                 dead_letter_stream: str = E.DEAD_LETTER_STREAM, claim_idle_ms: int = 30_000,
                 batch: int = 100, max_deliveries: int = 10,
                 max_lateness_seconds: int = 2 * 86_400, max_early_seconds: int = 3600,
                 max_watch_ratio: float = 3.0, max_backoff_s: float = 30.0,
                 clock: Callable[[], float] | None = None) -> None:
        checks = {"claim_idle_ms": (claim_idle_ms, claim_idle_ms >= 0, ">= 0"),
                  "batch": (batch, batch >= 1, ">= 1"),
                  "max_deliveries": (max_deliveries, max_deliveries >= 1, ">= 1"),
                  "max_lateness_seconds": (max_lateness_seconds, max_lateness_seconds >= 0,
                                           ">= 0"),
                  "max_early_seconds": (max_early_seconds, max_early_seconds >= 0, ">= 0"),
                  "max_watch_ratio": (max_watch_ratio, max_watch_ratio >= 1.0, ">= 1"),
                  "max_backoff_s": (max_backoff_s, max_backoff_s > 0, "> 0")}
        for name, (value, valid, expected) in checks.items():
            if not valid:
                raise ValueError(f"{name} must be {expected}; received {value!r}.")
        self.redis = _binary(redis_client)
        self.store = store
        self.durations = durations
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self.claim_idle_ms = claim_idle_ms
        self.batch = batch
        self.max_deliveries = max_deliveries
        self.max_lateness_seconds = max_lateness_seconds
        self.max_early_seconds = max_early_seconds
        self.max_watch_ratio = max_watch_ratio
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.counts = ConsumerCounts()
        self._own_pending_done = False
        self._backoff_s = 0.0
        self._unfinished: list[tuple[bytes, Any]] = []

    def ensure_group(self) -> None:
        """Creates the consumer group (and the stream) if missing; reads from the start."""
        import redis

        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _dead_letter(self, message_id: bytes, fields: dict[bytes, bytes], reason: str,
                     detail: str) -> None:
        entry: dict[bytes | str, bytes | str] = {
            "reason": reason, "detail": detail[:500], "message_id": message_id}
        for name, value in fields.items():
            entry[b"orig:" + (name if isinstance(name, bytes) else name.encode())] = value
        self.redis.xadd(self.dead_letter_stream, entry)
        self.counts.dead_lettered[reason] = self.counts.dead_lettered.get(reason, 0) + 1

    def _arrival_window(self, message_id: bytes) -> TimeWindow:
        arrival_s = (int(self.clock()) if self.clock is not None
                     else int(_text(message_id).split("-")[0]) // 1000)
        return TimeWindow.around(arrival_s, 1, self.max_lateness_seconds,
                                 self.max_early_seconds)

    def _refusal(self, message_id: bytes, fields: dict[bytes, bytes]
                 ) -> tuple[dict[str, Any] | None, str, str]:
        """(event, "", "") for a message to apply, else (None, reason, detail)."""
        record = fields.get(EVENT_FIELD.encode())
        if record is None:
            return None, Reason.MISSING_FIELD, EVENT_FIELD
        parsed = parse_event(record, self._arrival_window(message_id))
        if parsed.event is None:
            return None, parsed.reason, parsed.detail
        event = parsed.event
        title, user = event[E.TITLE_ID], event[E.USER_ID]
        if title not in self.durations:
            return None, Reason.UNKNOWN_TITLE, title
        watched = event.get(E.WATCH_SECONDS)
        if watched is not None and not plausible_watch(watched, self.durations[title],
                                                      self.max_watch_ratio):
            return None, Reason.IMPLAUSIBLE_WATCH_TIME, (
                f"{watched} s of a {self.durations[title]} s title")
        if self.store.profile(user) is None:
            return None, Reason.UNKNOWN_USER, user
        return event, "", ""

    def _handle(self, message_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Applies or dead-letters one message, then acknowledges it.

        Raises:
            Exception: a transient failure, or a failure this method cannot classify: the
                message stays pending and is retried (then quarantined by its delivery count).
        """
        event, reason, detail = self._refusal(message_id, fields)
        if event is None:
            self._dead_letter(message_id, fields, reason, detail)
        elif self.store.apply_event(event, self.durations[event[E.TITLE_ID]]):
            self.counts.applied += 1
            # Services cache profile reads: tell them this user changed. Fire and forget:
            # a service that misses it still sees the change when its cache entry expires.
            self.redis.publish(E.PROFILE_CHANGES, event[E.USER_ID])
        else:
            self.counts.duplicates += 1
        self.counts.read += 1
        # Acknowledge only after the store has the effects (at least once).
        self.redis.xack(self.stream, self.group, message_id)

    def _delivery_counts(self, entries: list[tuple[bytes, Any]]) -> dict[bytes, int]:
        pending = self.redis.xpending_range(self.stream, self.group, min=entries[0][0],
                                            max=entries[-1][0], count=len(entries),
                                            consumername=self.consumer)
        return {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}

    def _process(self, entries: list[tuple[bytes, Any]], redelivered: bool) -> int:
        """Handles a batch in order. A message failing for a reason nobody can classify stays
        pending and the batch goes on (it is read again after a pause, one delivery more);
        a transient failure stops the batch, keeps the rest in memory and backs off, so that
        an outage raises no delivery count."""
        delivered = self._delivery_counts(entries) if redelivered and entries else {}
        failed = False
        for index, (message_id, fields) in enumerate(entries):
            try:
                self._finish(message_id, fields, delivered.get(message_id, 1))
            except _transient_errors() as error:
                self._unfinished = entries[index:]
                self._retry_later(error)
                return index
            except Exception as error:  # noqa: BLE001  (retried, then quarantined)
                failed = True
                self._retry_later(error, own_pending=True)
        if not failed:
            self._backoff_s = 0.0
        return len(entries)

    def _finish(self, message_id: bytes, fields: dict[bytes, bytes] | None,
                times_delivered: int) -> None:
        if fields is None:  # Trimmed from the stream while pending: nothing to apply.
            self.redis.xack(self.stream, self.group, message_id)
        elif times_delivered >= self.max_deliveries:
            self.counts.read += 1
            self._dead_letter(message_id, fields, QUARANTINED,
                              f"delivered {times_delivered} times without being applied or "
                              "refused")
            self.redis.xack(self.stream, self.group, message_id)
        else:
            self._handle(message_id, fields)

    def _read(self) -> tuple[list[tuple[bytes, Any]], bool]:
        """The next batch and whether it is redelivered (own pending or claimed)."""
        if not self._own_pending_done:
            # Re-reading its history raises each entry's delivery count: the poison counter.
            response = self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0"},
                                             count=self.batch)
            entries = response[0][1] if response else []
            if entries:
                return entries, True
            self._own_pending_done = True
        _, claimed, *_ = self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                               min_idle_time=self.claim_idle_ms,
                                               start_id="0-0", count=self.batch)
        if claimed:
            return claimed, True
        return [], False

    def step(self, block_ms: int = 100) -> int:
        """Processes one batch: what a transient failure left unfinished, then own pending
        messages (after a restart), then messages idle on dead consumers, then new ones.

        Returns:
            Messages handled.
        """
        if self._unfinished:
            entries, self._unfinished = self._unfinished, []
            return self._process(entries, redelivered=False)
        try:
            entries, redelivered = self._read()
            if not redelivered:
                response = self.redis.xreadgroup(self.group, self.consumer,
                                                 {self.stream: ">"}, count=self.batch,
                                                 block=block_ms or None)
                entries = response[0][1] if response else []
        except Exception as error:  # noqa: BLE001  (Redis away: the consumer waits, never stops)
            self._retry_later(error)
            return 0
        return self._process(entries, redelivered)

    def _retry_later(self, error: Exception, own_pending: bool = False) -> None:
        """Counts a failure and waits out the backoff (doubling, up to `max_backoff_s`).

        Args:
            own_pending: read this consumer's pending messages again before new ones.
        """
        self.counts.retries += 1
        self._own_pending_done = self._own_pending_done and not own_pending
        self._backoff_s = min(self.max_backoff_s, max(0.05, 2 * self._backoff_s))
        kind = "transient" if isinstance(error, _transient_errors()) else "unexpected"
        _LOG.warning("%s failure (%s: %s); retrying in %.2f s", kind, type(error).__name__,
                     error, self._backoff_s)
        time.sleep(self._backoff_s)

    def run(self, stop: threading.Event, block_ms: int = 100) -> ConsumerCounts:
        """Consumes until `stop` is set; returns the counts. Never raises for a message or a
        transient failure."""
        self._ensure_group_with_retries(stop)
        while not stop.is_set():
            self.step(block_ms)
        return self.counts

    def drain(self, block_ms: int = 50, max_idle_steps: int = 3) -> ConsumerCounts:
        """Consumes until the stream has nothing new for `max_idle_steps` reads in a row
        (tests, backfills); transient failures are retried, not counted as idle."""
        self._ensure_group_with_retries(threading.Event())
        idle = 0
        while idle < max_idle_steps:
            retries = self.counts.retries
            if self.step(block_ms):
                idle = 0
            elif self.counts.retries == retries:
                idle += 1
        return self.counts

    def _ensure_group_with_retries(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.ensure_group()
                return
            except _transient_errors() as error:
                self._retry_later(error)


def catalogue_durations(titles: list[JsonDict]) -> dict[str, float]:
    """title_id -> duration in seconds, from the catalogue rows whose id and duration follow
    the contract's title rules (`recs.contract.rows`; the consumer reads no other field); a
    row that breaks them is logged and left out, so its plays count but never finish the
    title.
    """
    durations, refused = {}, []
    for row in titles:
        bad = ([F.TITLE_ID] if not isinstance(row, dict) else
               [field for field in row_rules.invalid_title_fields(row)
                if field in (F.TITLE_ID, F.DURATION_SECONDS)])
        if bad:
            refused.append(f"{bad} of {str(row)[:120]}")
            continue
        durations[row[F.TITLE_ID]] = float(row[F.DURATION_SECONDS])
    if refused:
        _LOG.warning("%d catalogue rows refused, their titles never count as finished; the "
                     "first: %s", len(refused), refused[0])
    return durations


def consume(redis_url: str, store_spec: str, catalogue_path: str, consumer: str = "updater-1",
            claim_idle_ms: int = 30_000, until_idle: bool = False) -> ConsumerCounts:
    """`recs consume`: the profile-update consumer until interrupted, or until the stream is
    idle (`until_idle`).

    Args:
        redis_url: the event queue.
        store_spec: the profile store (`serving.online.store.open_store`).
        catalogue_path: catalogue JSON lines (title durations).
        consumer: this consumer's name in the group (keep it across restarts).
        claim_idle_ms: messages pending this long on another consumer are taken over.
        until_idle: stop once the stream has nothing new.

    Returns:
        The consumer's counts.
    """
    import redis

    from recs.data.catalogue import read_jsonl
    from serving.online.store import open_store

    durations = catalogue_durations(read_jsonl(catalogue_path))
    updater = ProfileUpdater(redis.Redis.from_url(redis_url), open_store(store_spec),
                             durations, consumer=consumer, claim_idle_ms=claim_idle_ms)
    if until_idle:
        return updater.drain()
    stop = threading.Event()
    try:
        return updater.run(stop)
    except KeyboardInterrupt:
        stop.set()
        return updater.counts
