"""Profile updates from the event queue: a Redis Streams consumer group feeding the online
profile store, so the next recommendation reflects a watch that just happened.

    producers --XADD--> stream `recs:events` --XREADGROUP--> ProfileUpdater --> profile store
                                                                   |--XADD--> `recs:events:dead`

Delivery is at least once: a message is acknowledged (XACK) only after the store applied it.
Effects are exactly once: the store applies each event id once, atomically with its effects, so
a redelivered message changes nothing. A consumer that restarts first re-reads its own pending
messages; messages pending on a consumer that died are claimed (XAUTOCLAIM) once idle for
`claim_idle_ms`. Malformed records are acknowledged and dead-lettered with a reason, never
dropped silently.
"""

import dataclasses
import json
import threading
from typing import Any

from recs import features as F
from recs.types import JsonDict
from serving.store import ProfileStore, RedisProfileStore
from transforms.events import Reason, parse_event

EVENT_FIELD = "event"
"""Stream entries carry one raw event (the streaming-log JSON object) in this field."""


@dataclasses.dataclass
class ConsumerCounts:
    """What a consumer did: every message read is applied, a duplicate, or dead-lettered."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.read == self.applied + self.duplicates + sum(self.dead_lettered.values())


def publish(redis_client: Any, events: list[JsonDict | str], stream: str = "recs:events"
            ) -> list[str]:
    """Appends events (dicts, or raw strings as a producer might send them) to the stream.

    Returns:
        The stream entry ids.
    """
    pipeline = redis_client.pipeline(transaction=False)
    for event in events:
        pipeline.xadd(stream, {EVENT_FIELD: event if isinstance(event, str)
                               else json.dumps(event)})
    return pipeline.execute()


class ProfileUpdater:
    """Consumes playback events from a Redis Stream into a profile store.

    Args:
        redis_client: a `redis.Redis` with `decode_responses=True`.
        store: where the events land (SQLite or Redis).
        durations: title_id -> duration in seconds (from the catalogue), to tell finished.
        stream / group / consumer: the stream, consumer group and this consumer's name; a
            restarted consumer should keep its name to resume its own pending messages.
        dead_letter_stream: where refused records go, with their reason.
        claim_idle_ms: messages pending this long on another consumer are taken over.
        batch: messages per read.
    """

    def __init__(self, redis_client: Any, store: ProfileStore | RedisProfileStore,
                 durations: dict[str, float], stream: str = "recs:events",
                 group: str = "profile-updater", consumer: str = "updater-1",
                 dead_letter_stream: str = "recs:events:dead", claim_idle_ms: int = 30_000,
                 batch: int = 100) -> None:
        if claim_idle_ms < 0 or batch < 1:
            raise ValueError(f"claim_idle_ms must be >= 0 and batch >= 1; received "
                             f"{claim_idle_ms} and {batch}.")
        self.redis = redis_client
        self.store = store
        self.durations = durations
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self.claim_idle_ms = claim_idle_ms
        self.batch = batch
        self.counts = ConsumerCounts()
        self._own_pending_done = False

    def ensure_group(self) -> None:
        """Creates the consumer group (and the stream) if missing; reads from the start."""
        import redis

        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _dead_letter(self, message_id: str, record: str, reason: str, detail: str) -> None:
        self.redis.xadd(self.dead_letter_stream, {"reason": reason, "detail": detail,
                                                  "record": record, "message_id": message_id})
        self.counts.dead_lettered[reason] = self.counts.dead_lettered.get(reason, 0) + 1

    def _handle(self, message_id: str, fields: dict[str, str]) -> None:
        self.counts.read += 1
        record = fields.get(EVENT_FIELD)
        if record is None:
            self._dead_letter(message_id, json.dumps(fields), Reason.MISSING_FIELD, EVENT_FIELD)
            return
        parsed = parse_event(record)
        if parsed.event is None:
            self._dead_letter(message_id, record, parsed.reason, parsed.detail)
            return
        event = parsed.event
        if event[F.TITLE_ID] not in self.durations:
            self._dead_letter(message_id, record, Reason.UNKNOWN_TITLE, event[F.TITLE_ID])
        elif self.store.profile(event[F.USER_ID]) is None:
            self._dead_letter(message_id, record, Reason.UNKNOWN_USER, event[F.USER_ID])
        elif self.store.apply_event(event, self.durations[event[F.TITLE_ID]]):
            self.counts.applied += 1
        else:
            self.counts.duplicates += 1

    def _process(self, entries: list[tuple[str, dict[str, str]]]) -> int:
        for message_id, fields in entries:
            if fields is None:  # Trimmed from the stream while pending: nothing to apply.
                self.redis.xack(self.stream, self.group, message_id)
                continue
            self._handle(message_id, fields)
            # Acknowledge only after the store has the effects (at least once).
            self.redis.xack(self.stream, self.group, message_id)
        return len(entries)

    def step(self, block_ms: int = 100) -> int:
        """Processes one batch: own pending messages first (after a restart), then messages
        idle on dead consumers, then new ones.

        Returns:
            Messages handled.
        """
        if not self._own_pending_done:
            response = self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0"},
                                             count=self.batch)
            entries = response[0][1] if response else []
            if entries:
                return self._process(entries)
            self._own_pending_done = True
        _, claimed, *_ = self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                               min_idle_time=self.claim_idle_ms,
                                               start_id="0-0", count=self.batch)
        if claimed:
            return self._process(claimed)
        response = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                         count=self.batch, block=block_ms or None)
        return self._process(response[0][1] if response else [])

    def run(self, stop: threading.Event, block_ms: int = 100) -> ConsumerCounts:
        """Consumes until `stop` is set; returns the counts."""
        self.ensure_group()
        while not stop.is_set():
            self.step(block_ms)
        return self.counts

    def drain(self, block_ms: int = 50) -> ConsumerCounts:
        """Consumes until a read comes back empty (tests, backfills)."""
        self.ensure_group()
        while self.step(block_ms):
            pass
        return self.counts
