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
`claim_idle_ms`. A message is counted once, when it is acknowledged, however many attempts it
took.

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

Nor can Redis itself lose the consumer (Redis >= 7.0):
- a restarted Redis may have lost writes it had acknowledged (`appendfsync everysec` writes the
  append-only file after answering; a SIGKILL loses what was not written yet): an XACK, so an
  entry already finished is pending again, or the delivery and effects of a batch. Whenever the
  connection had to be made again, the consumer re-reads its own pending entries at once instead
  of waiting `claim_idle_ms` for them; the event ids absorb what was applied already. XADDs a
  producer was told were written can be lost the same way: only the producer can send them
  again (it should re-send what it cannot find in the stream after a restart; the event ids
  make the copies harmless);
- a consumer group that vanished (XGROUP DESTROY, a Redis restarted without persistence) is
  created again, after the last entry this consumer finished (from the start when the stream
  was lost as well), and `ConsumerCounts.group_recreations` says where it resumed and what it
  could not account for;
- entries trimmed from the stream (XTRIM, XADD MAXLEN/MINID) before the group read them, or
  while they were pending, are counted with their id range in `ConsumerCounts.gaps` and logged.
"""

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

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
TRIMMED_UNREAD = "trimmed_unread"
"""Gap reason: entries trimmed from the stream before the consumer group read them."""
TRIMMED_PENDING = "trimmed_pending"
"""Gap reason: entries delivered, then trimmed from the stream before they were finished."""
_APPLIED, _DUPLICATE = "<applied>", "<duplicate>"
"""Outcomes of a message beside the dead-letter reasons (which are snake_case words)."""
_LOG = logging.getLogger("recs.consumer")


@dataclasses.dataclass(frozen=True)
class StreamGap:
    """Stream entries the consumer could not read: trimmed (XTRIM, XADD MAXLEN or MINID)
    before the group read them, or while they were pending.

    Attributes:
        reason: TRIMMED_UNREAD or TRIMMED_PENDING.
        count: how many entries; None when Redis cannot tell how many, if any (its count of
            the group's reads was unknown, e.g. just after the group was re-created
            mid-stream).
        first_id / last_id: every lost entry has an id in this range (both ends included);
            for pending entries, the first and the last lost id themselves.
    """

    reason: str
    count: int | None
    first_id: str
    last_id: str


@dataclasses.dataclass(frozen=True)
class GroupRecreation:
    """The consumer group was gone (XGROUP DESTROY, or a Redis restarted without persistence)
    and this consumer created it again.

    Attributes:
        resumed_after: the group delivers the entries after this id: the last one this consumer
            finished (before the first it still had to retry), or "0-0" when the stream was
            lost as well or the consumer had finished nothing yet.
        stream_reset: the stream was lost too: it is gone, had fewer entries ever added than
            the consumer saw, ends before the last entry the consumer read, or begins after it
            without ever having lost an entry.
        unaccounted: entries published before the loss that can no longer be read: 0 when the
            stream kept every entry after `resumed_after`; None when the stream was lost, since
            nothing is left that could tell how many it held.
    """

    resumed_after: str
    stream_reset: bool
    unaccounted: int | None


@dataclasses.dataclass
class ConsumerCounts:
    """What a consumer did: every message finished is applied, a duplicate, or dead-lettered
    (quarantined ones included), counted once when it is acknowledged; `retries` counts
    transient failures, which finish nothing; `gaps` and `group_recreations` are what Redis
    lost beneath it."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: dict[str, int] = dataclasses.field(default_factory=dict)
    retries: int = 0
    gaps: list[StreamGap] = dataclasses.field(default_factory=list)
    group_recreations: list[GroupRecreation] = dataclasses.field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.read == self.applied + self.duplicates + sum(self.dead_lettered.values())

    @property
    def unread(self) -> int:
        """Entries trimmed before the consumer could read them, where Redis could tell."""
        return sum(gap.count or 0 for gap in self.gaps)


def publish(redis_client: Any, events: list[dict[str, Any] | str | bytes],
            stream: str = E.EVENT_STREAM) -> list[Any]:
    """Appends events (dicts, or raw strings or bytes as a producer might send them) to the
    stream.

    An id returned here may still be lost if Redis is killed within about a second (with
    `appendfsync everysec`); a producer that must lose nothing checks after a restart which
    of its events the stream holds and publishes the others again.

    Returns:
        The stream entry ids.
    """
    pipeline = redis_client.pipeline(transaction=False)
    for event in events:
        pipeline.xadd(stream, {EVENT_FIELD: event if isinstance(event, (str, bytes))
                               else json.dumps(event)})
    return pipeline.execute()


def _consumer_client(redis_client: Any) -> tuple[Any, list[int]]:
    """A client of the same server for the consumer alone, and the number of connections it
    has made so far (a one-element list the client increments).

    It reads bytes whatever `redis_client` decodes: a client that decodes would raise inside
    redis-py on the first value that is not UTF-8, before we could refuse it. It counts its
    connections because redis-py replaces a broken connection silently (and retries the
    command on it), while a new connection may reach a restarted Redis that lost writes it had
    acknowledged.
    """
    import redis

    kwargs = dict(redis_client.connection_pool.connection_kwargs)
    kwargs["decode_responses"] = False
    connects = [0]
    handshake = kwargs.get("redis_connect_func")

    def counted(connection: Any) -> None:
        if handshake is None:
            connection.on_connect()
        else:
            handshake(connection)
        connects[0] += 1

    kwargs["redis_connect_func"] = counted
    pool = redis.ConnectionPool(connection_class=redis_client.connection_pool.connection_class,
                                **kwargs)
    return redis.Redis(connection_pool=pool), connects


def _transient_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
            sqlite3.OperationalError, StoreUnavailableError, ConnectionError, TimeoutError)


class _GroupMissing(Exception):
    """The consumer group (or the stream with it) no longer exists."""


def _group_missing(error: Exception) -> bool:
    import redis

    return isinstance(error, _GroupMissing) or (
        isinstance(error, redis.ResponseError) and str(error).startswith("NOGROUP"))


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "backslashreplace")


def _id(value: bytes | str) -> tuple[int, int]:
    """A stream id ("<ms>-<seq>") as a pair that sorts like Redis sorts ids."""
    ms, seq = _text(value).split("-")
    return int(ms), int(seq)


def _next_id(value: bytes | str) -> str:
    ms, seq = _id(value)
    return f"{ms}-{seq + 1}" if seq < 2 ** 64 - 1 else f"{ms + 1}-0"


def _previous_id(value: bytes | str) -> str:
    ms, seq = _id(value)
    return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2 ** 64 - 1}"


_READ_NEW = """
-- New entries for one consumer (XREADGROUP >), after checking in the same atomic step whether
-- a trim removed entries beyond the group's position: they would be skipped without a word.
-- KEYS[1] stream; ARGV group, consumer, count. Returns {'NOGROUP'}, or {'OK', lost (-1 when
-- unknown), group position, first entry id or '', last generated id, entries ever added,
-- entries read by the group after this read (-1 when unknown), entries}.
local stream, group = KEYS[1], ARGV[1]
local function map(flat)
  local fields = {}
  for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
  return fields
end
local function after(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
if redis.call('EXISTS', stream) == 0 then return {'NOGROUP'} end
local position, read
for _, flat in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = map(flat)
  if info['name'] == group then position, read = info['last-delivered-id'], info['entries-read'] end
end
if not position then return {'NOGROUP'} end
if not read and position == '0-0' then read = 0 end
local s = map(redis.call('XINFO', 'STREAM', stream))
local head = s['length'] > 0 and s['first-entry'][1] or ''
-- Trims delete the oldest entries: deleted entries lie beyond the group's position only if
-- the oldest entry left (or the last id ever given, when none is left) does.
local deleted, lost = s['entries-added'] - s['length'], 0
if deleted > 0 and after(head ~= '' and head or s['last-generated-id'], position) then
  if not read then lost = -1 elseif deleted > read then lost = deleted - read end
  if lost ~= 0 then
    -- Count the lost entries as read, so that the next check starts from here.
    redis.call('XGROUP', 'SETID', stream, group, position, 'ENTRIESREAD', deleted)
    read = deleted
  end
end
local reply = redis.call('XREADGROUP', 'GROUP', group, ARGV[2], 'COUNT', ARGV[3],
                         'STREAMS', stream, '>')
local entries = reply and reply[1][2] or {}
return {'OK', lost, position, head, s['last-generated-id'], s['entries-added'],
        read and read + #entries or -1, entries}
"""


class ProfileUpdater:
    """Consumes playback events from a Redis Stream into a profile store.

    Args:
        redis_client: a `redis.Redis`; the consumer opens its own connections with the same
            settings, read as bytes whatever its `decode_responses`.
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
        self.redis, self._connects = _consumer_client(redis_client)
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
        self._read_new_script = self.redis.register_script(_READ_NEW)
        self._own_pending_done = False
        self._connects_seen = 0
        self._backoff_s = 0.0
        self._unfinished: list[tuple[bytes, Any]] = []
        # Messages whose event this consumer's store call applied, not yet acknowledged: a
        # retry after a failed XACK finds the id applied and must not call it a duplicate.
        self._applied_here: set[bytes] = set()
        # Messages left pending after an unexpected failure, to be read again.
        self._retrying: set[bytes] = set()
        # Where the group should resume if it vanished: the last entry delivered here.
        self._last_seen: bytes | None = None
        # The group's position and its count of entries read after this consumer's last read
        # of new entries; the stream's last id and entries ever added then.
        self._position: tuple[bytes, int | None] | None = None
        self._stream_last: bytes = b"0-0"
        self._entries_added_seen = 0

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

    def _outcome(self, message_id: bytes, fields: dict[bytes, bytes]) -> str:
        """Applies or dead-letters one message: _APPLIED, _DUPLICATE or the refusal reason.

        Raises:
            Exception: a transient failure, or a failure this method cannot classify: the
                message stays pending and is retried (then quarantined by its delivery count).
        """
        event, reason, detail = self._refusal(message_id, fields)
        if event is None:
            # Written again if the acknowledgement fails: dead letters are at least once.
            self._dead_letter(message_id, fields, reason, detail)
            return reason
        if self.store.apply_event(event, self.durations[event[E.TITLE_ID]]):
            self._applied_here.add(message_id)
        if message_id not in self._applied_here:
            return _DUPLICATE
        try:
            # Services cache profile reads: tell them this user changed. Fire and forget:
            # a service that misses it still sees the change when its cache entry expires.
            self.redis.publish(E.PROFILE_CHANGES, event[E.USER_ID])
        except _transient_errors():
            pass
        return _APPLIED

    def _finish(self, message_id: bytes, fields: dict[bytes, bytes],
                times_delivered: int) -> None:
        if times_delivered >= self.max_deliveries:
            self._dead_letter(message_id, fields, QUARANTINED,
                              f"delivered {times_delivered} times without being applied or "
                              "refused")
            outcome = QUARANTINED
        else:
            outcome = self._outcome(message_id, fields)
        # Acknowledge only after the store has the effects (at least once), and count only
        # then: a message tried again after a failed acknowledgement is still one message.
        self.redis.xack(self.stream, self.group, message_id)
        self._applied_here.discard(message_id)
        self._retrying.discard(message_id)
        self.counts.read += 1
        if outcome == _APPLIED:
            self.counts.applied += 1
        elif outcome == _DUPLICATE:
            self.counts.duplicates += 1
        else:
            self.counts.dead_lettered[outcome] = self.counts.dead_lettered.get(outcome, 0) + 1

    def _delivery_counts(self, entries: list[tuple[bytes, Any]]) -> dict[bytes, int]:
        pending = self.redis.xpending_range(self.stream, self.group, min=entries[0][0],
                                            max=entries[-1][0], count=len(entries),
                                            consumername=self.consumer)
        return {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}

    def _process(self, entries: list[tuple[bytes, Any]], delivered: dict[bytes, int]) -> int:
        """Handles a batch in order. A message failing for a reason nobody can classify stays
        pending and the batch goes on (it is read again after a pause, one delivery more);
        a transient failure stops the batch, keeps the rest in memory and backs off, so that
        an outage raises no delivery count."""
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
                self._retrying.add(message_id)
                self._retry_later(error, own_pending=True)
        if not failed:
            self._backoff_s = 0.0
        return len(entries)

    def _note_gap(self, reason: str, count: int | None, first_id: bytes | str,
                  last_id: bytes | str) -> None:
        gap = StreamGap(reason, count, _text(first_id), _text(last_id))
        self.counts.gaps.append(gap)
        _LOG.warning("%s entries of %s could not be read (%s), ids %s to %s",
                     "an unknown number of" if count is None else count, self.stream, reason,
                     gap.first_id, gap.last_id)

    def _trimmed_pending(self, ids: list[bytes]) -> None:
        """Reports pending entries the stream no longer holds (after XACK or XAUTOCLAIM took
        them out of the pending list)."""
        if ids:
            ordered = sorted(ids, key=_id)
            self._retrying.difference_update(ids)
            self._applied_here.difference_update(ids)
            self._note_gap(TRIMMED_PENDING, len(ids), ordered[0], ordered[-1])

    def _read_own_pending(self) -> list[tuple[bytes, Any]]:
        """This consumer's pending entries, oldest first, without those trimmed meanwhile
        (Redis returns them with no fields; XADD cannot write an entry without one)."""
        while True:
            response = self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0"},
                                             count=self.batch)
            entries = response[0][1] if response else []
            trimmed = [message_id for message_id, fields in entries if not fields]
            if trimmed:
                self.redis.xack(self.stream, self.group, *trimmed)
                self._trimmed_pending(trimmed)
            if len(trimmed) < len(entries) or not entries:
                return [(message_id, fields) for message_id, fields in entries if fields]

    def _read_new_once(self) -> list[tuple[bytes, Any]]:
        reply = self._read_new_script(keys=[self.stream],
                                      args=[self.group, self.consumer, self.batch])
        if reply[0] == b"NOGROUP":
            raise _GroupMissing(f"consumer group {self.group} of {self.stream}")
        _, lost, position, head, last, added, read_after, raw = reply
        self._stream_last, self._entries_added_seen = last, added
        if lost:
            self._note_gap(TRIMMED_UNREAD, None if lost < 0 else lost, _next_id(position),
                           _previous_id(head) if head else last)
        entries = [(entry_id, dict(zip(flat[::2], flat[1::2]))) for entry_id, flat in raw]
        self._position = (entries[-1][0] if entries else position,
                          None if read_after < 0 else read_after)
        return entries

    def _read_new(self, block_ms: int) -> list[tuple[bytes, Any]]:
        entries = self._read_new_once()
        # Wait for an entry after the last one the stream had, without taking it: entries are
        # taken only by the script, which looks for a trim beneath the group first.
        if not entries and block_ms and self.redis.xread(
                {self.stream: self._stream_last}, count=1, block=block_ms):
            entries = self._read_new_once()
        return entries

    def _read(self, block_ms: int) -> tuple[list[tuple[bytes, Any]], bool]:
        """The next batch and whether it is redelivered (own pending or claimed)."""
        if self._connects[0] != self._connects_seen:
            # A new connection: the last one broke, and the server may be a restarted Redis
            # that lost writes it had acknowledged. An XACK lost makes an entry finished here
            # pending again; a delivery whose answer was lost (redis-py sends the read again
            # on the new connection) leaves entries pending that were never seen here. Read
            # them now, not after claim_idle_ms.
            self._connects_seen = self._connects[0]
            self._own_pending_done = False
        if not self._own_pending_done:
            # Re-reading its history raises each entry's delivery count: the poison counter.
            entries = self._read_own_pending()
            if entries:
                return entries, True
            self._own_pending_done = True
        _, claimed, *deleted = self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                                     min_idle_time=self.claim_idle_ms,
                                                     start_id="0-0", count=self.batch)
        self._trimmed_pending(deleted[0] if deleted else [])
        if claimed:
            return claimed, True
        return self._read_new(block_ms), False

    def step(self, block_ms: int = 100) -> int:
        """Processes one batch: what a transient failure left unfinished, then own pending
        messages (after a restart or a new connection), then messages idle on dead consumers,
        then new ones. A group that vanished is created again.

        Returns:
            Messages handled.
        """
        if self._unfinished:
            entries, self._unfinished = self._unfinished, []
            return self._process(entries, {})
        try:
            entries, redelivered = self._read(block_ms)
            delivered = self._delivery_counts(entries) if redelivered and entries else {}
        except Exception as error:  # noqa: BLE001  (Redis away: the consumer waits, never stops)
            self._recover(error)
            return 0
        for message_id, _ in entries:
            if self._last_seen is None or _id(message_id) > _id(self._last_seen):
                self._last_seen = message_id
        return self._process(entries, delivered)

    def _recover(self, error: Exception) -> None:
        if _group_missing(error):
            try:
                self._recreate_group()
                return
            except Exception as failure:  # noqa: BLE001  (Redis away meanwhile: retried)
                error = failure
        self._retry_later(error)

    def _recreate_group(self) -> None:
        """Creates the vanished group again, after the last entry delivered here (just before
        the first one this consumer must retry), so that nothing after it is skipped and
        nothing before it is applied again; from the start if the stream was lost too.

        Entries that were pending on other consumers when the group vanished are not known
        here; if another consumer created the group first, this one goes on with it.
        """
        import redis

        anchor = min(self._retrying, key=_id) if self._retrying else self._last_seen
        try:
            stream = self.redis.xinfo_stream(self.stream)
        except redis.ResponseError:  # No such key: the stream went with the group.
            stream = None
        reset = self._stream_lost(stream, anchor)
        start = ("0-0" if reset or anchor is None
                 else _previous_id(anchor) if self._retrying else _text(anchor))
        # Redis counts the group's reads (for its lag and for the trim check) only from an id
        # whose place in the stream it knows; this consumer knows it if it resumes where its
        # last read of new entries left the group.
        entries_read = (self._position[1] if self._position is not None and not reset
                        and _text(self._position[0]) == start else None)
        try:
            self.redis.xgroup_create(self.stream, self.group, id=start, mkstream=True,
                                     entries_read=entries_read)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
            _LOG.warning("consumer group %s of %s was gone and another consumer created it "
                         "again", self.group, self.stream)
            return
        self._retrying.clear()  # Delivered again: they come after `start`.
        self._own_pending_done = True  # A new group has nothing pending.
        if reset:
            self._last_seen, self._position, self._entries_added_seen = None, None, 0
        self.counts.group_recreations.append(GroupRecreation(start, reset, None if reset else 0))
        _LOG.warning("consumer group %s of %s was gone; created it again, resuming after %s; %s",
                     self.group, self.stream, start,
                     "the stream was lost too: entries it held and nobody read cannot be "
                     "counted" if reset else "every entry after it is still in the stream")

    def _stream_lost(self, stream: dict[str, Any] | None, anchor: bytes | None) -> bool:
        """Whether the stream (XINFO STREAM, None when missing) is not the one this consumer
        read `anchor` from: it is gone, had fewer entries ever added than this consumer saw,
        ends before `anchor`, or never lost an entry yet begins after it."""
        if stream is None or stream["entries-added"] < self._entries_added_seen:
            return True
        if anchor is None:
            return False
        first = stream["first-entry"]
        return (_id(stream["last-generated-id"]) < _id(anchor)
                or (stream["entries-added"] == stream["length"]
                    and (first is None or _id(first[0]) > _id(anchor))))

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
        if self._last_seen is not None or self._entries_added_seen:
            # This consumer has read the group before: if it vanished since, `step` creates
            # it again where the consumer left off and says so; `ensure_group` would start
            # from the beginning without a word.
            return
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
