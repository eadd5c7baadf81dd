"""The raw playback event contract, one for batch and stream.

`parse_event` is the single validation of a raw event, used by Beam ingestion (batch) and by the
profile-update consumer (stream), so both accept and refuse exactly the same records. It is
total: whatever bytes it is given, it returns either a clean event or the reason it refused
them, and never raises.

    bytes -> UTF-8 (a leading byte-order mark and a trailing CR dropped) -> JSON object
          -> required fields of the right types -> value rules -> time stamp in its window
          -> `Event` holding only the contract's fields

Value rules: ids are 1 to `MAX_ID_CHARS` printable characters; numbers are JSON numbers,
never booleans or strings, and finite (the JSON parser refuses NaN and Infinity literals and
numbers that overflow a double); `ts` is an integer of Unix seconds inside the caller's window
(the delivery day for a batch file, the arrival time for a stream message), which also keeps it
inside what int64 and SQLite hold; a `play_stop` carries `watch_seconds` between 0 and
`MAX_WATCH_SECONDS`. Duplicate keys in one object keep the last value, as JSON parsers do.
Checks that need more than the record (the catalogue's durations, known users and titles, a
user's other events) are the callers'; their reason codes are here too, so that every dead
letter of the project is named from one list.

This module imports nothing but the standard library and orjson: a consumer process validates
events without loading TensorFlow.
"""

import dataclasses
from typing import Any

import orjson

PLAY_START, PLAY_STOP, LIKE, SKIP = "play_start", "play_stop", "like", "skip"
EVENT_TYPES = (PLAY_START, PLAY_STOP, LIKE, SKIP)
"""Every event type a client sends; the generator, the simulator and both validations use
these names."""
EVENT_ID = "event_id"
USER_ID = "user_id"
TITLE_ID = "title_id"
EVENT_TYPE = "event_type"
TS = "ts"
DEVICE_TYPE = "device_type"
WATCH_SECONDS = "watch_seconds"
ID_FIELDS = (EVENT_ID, USER_ID, TITLE_ID, DEVICE_TYPE)
"""String fields every event carries; they must be valid ids."""

EVENT_STREAM = "recs:events"
"""The Redis stream of raw playback events (one event per entry, in its `event` field)."""
DEAD_LETTER_STREAM = "recs:events:dead"
PROFILE_CHANGES = "recs:profile-changes"
"""Redis pub/sub channel: the consumer publishes the id of each user whose online profile it
changed, so services drop their cached reads of that user at once."""

MAX_RECORD_BYTES = 64 * 1024
"""A raw event is a few hundred bytes; anything this large is refused before parsing."""
MAX_ID_CHARS = 128
MAX_WATCH_SECONDS = 86_400.0
"""One play never reports more than a day of watching; more is a broken client."""
_BOM = b"\xef\xbb\xbf"


class Reason:
    """Dead-letter reason codes, for every refusal in batch and stream."""

    UNDECODABLE = "undecodable_bytes"
    OVERSIZED = "oversized_record"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_ID = "invalid_id"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    NON_FINITE_NUMBER = "non_finite_number"
    NEGATIVE_WATCH_TIME = "negative_watch_time"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    # Checks that need more than the record itself: the catalogue, the known users, the user's
    # other events, the other copies of an event id.
    IMPLAUSIBLE_WATCH_TIME = "implausible_watch_time"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    UNKNOWN_USER = "unknown_user"
    UNKNOWN_TITLE = "unknown_title"
    BOT_TRAFFIC = "bot_traffic"
    # Failures of the machinery around a record, never of the rules above.
    UNREADABLE_FILE = "unreadable_file"
    PROCESSING_ERROR = "processing_error"
    QUARANTINED = "too_many_deliveries"
    """A stream message delivered too many times without being applied or refused."""
    # Outcomes from logs (`transforms.outcomes`): a user served by two arms of one
    # experiment, and a subscription decision other than renewed / cancelled.
    ARM_CHANGED = "arm_changed"
    UNKNOWN_SUBSCRIPTION_EVENT = "unknown_subscription_event"
    # Reference rows (`recs.contract.rows`): a profile or catalogue row that breaks its rules.
    INVALID_PROFILE = "invalid_profile"
    INVALID_TITLE = "invalid_title"
    # A field of the right type whose value lies outside its bounds (a served list's hour).
    OUT_OF_RANGE = "out_of_range"


@dataclasses.dataclass(frozen=True)
class TimeWindow:
    """The Unix seconds an event's `ts` may take: `earliest <= ts < latest`."""

    earliest: int
    latest: int

    def __post_init__(self) -> None:
        if not self.earliest < self.latest:
            raise ValueError(f"TimeWindow needs earliest < latest; received {self.earliest} "
                             f"and {self.latest}.")

    @classmethod
    def around(cls, start: int, length: int, before: int, after: int) -> "TimeWindow":
        """`[start - before, start + length + after)`: a delivery day (length 86,400) or an
        arrival instant (length 1) widened by the lateness and earliness allowed."""
        return cls(start - before, start + length + after)


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A validated event, or the reason (and detail) it was refused."""

    event: dict[str, Any] | None
    reason: str = ""
    detail: str = ""


def _refused(reason: str, detail: str) -> Parsed:
    return Parsed(None, reason, detail[:200])


def valid_id(value: str) -> bool:
    """Whether `value` can be an id: 1 to MAX_ID_CHARS printable characters."""
    return 0 < len(value) <= MAX_ID_CHARS and value.isprintable()


def parse_event(record: bytes | str, window: TimeWindow | None = None) -> Parsed:
    """Parses and validates one raw event (a JSON object), totally: it never raises.

    Args:
        record: one line of a log file or one stream message, as delivered.
        window: where `ts` must lie; None checks only that it is a non-negative integer of
            Unix seconds below 2**53 (callers always pass one; tests may not).

    Returns:
        `Parsed(event)` with exactly the contract's fields (`watch_seconds` as a float, when
        present), else `Parsed(None, reason, detail)` with a `Reason` code.
    """
    try:
        return _parse(record, window)
    except Exception as error:  # noqa: BLE001  (totality: a bug here must not stop a job)
        return _refused(Reason.PROCESSING_ERROR, f"{type(error).__name__}: {error}")


def _parse(record: bytes | str, window: TimeWindow | None) -> Parsed:
    if isinstance(record, str):
        try:
            record = record.encode("utf-8")
        except UnicodeEncodeError as error:  # A lone surrogate in an already-decoded line.
            return _refused(Reason.UNDECODABLE, str(error))
    if not isinstance(record, bytes):
        return _refused(Reason.WRONG_TYPE, f"record of type {type(record).__name__}")
    if len(record) > MAX_RECORD_BYTES:
        return _refused(Reason.OVERSIZED, f"{len(record)} bytes > {MAX_RECORD_BYTES}")
    if record.startswith(_BOM):
        record = record[len(_BOM):]
    try:
        record.decode("utf-8")
    except UnicodeDecodeError as error:
        return _refused(Reason.UNDECODABLE, str(error))
    try:
        event = orjson.loads(record)  # Refuses NaN, Infinity, overflow, lone surrogates.
    except orjson.JSONDecodeError as error:
        reason = (Reason.NON_FINITE_NUMBER if "infinity" in str(error).lower()
                  else Reason.MALFORMED_JSON)
        return _refused(reason, str(error))
    if not isinstance(event, dict):
        return _refused(Reason.NOT_AN_OBJECT, type(event).__name__)
    for field in ID_FIELDS + (EVENT_TYPE, TS):
        if event.get(field) is None:
            return _refused(Reason.MISSING_FIELD, field)
    for field in ID_FIELDS + (EVENT_TYPE,):
        if not isinstance(event[field], str):
            return _refused(Reason.WRONG_TYPE, f"{field}={event[field]!r}")
        if not valid_id(event[field]):
            return _refused(Reason.INVALID_ID, f"{field}={event[field]!r}")
    if event[EVENT_TYPE] not in EVENT_TYPES:
        return _refused(Reason.UNKNOWN_EVENT_TYPE, event[EVENT_TYPE])
    ts = event[TS]
    if type(ts) is not int:  # bool is an int subclass; floats are not seconds here.
        return _refused(Reason.WRONG_TYPE, f"ts={ts!r}")
    earliest, latest = (window.earliest, window.latest) if window else (0, 2 ** 53)
    if not earliest <= ts < latest:
        return _refused(Reason.TIMESTAMP_OUT_OF_RANGE, f"ts={ts} outside [{earliest}, {latest})")
    clean = {field: event[field] for field in ID_FIELDS + (EVENT_TYPE, TS)}
    watched = event.get(WATCH_SECONDS)
    if watched is None:
        if event[EVENT_TYPE] == PLAY_STOP:
            return _refused(Reason.MISSING_FIELD, WATCH_SECONDS)
        return Parsed(clean)
    if type(watched) not in (int, float):
        return _refused(Reason.WRONG_TYPE, f"watch_seconds={watched!r}")
    if watched < 0:
        return _refused(Reason.NEGATIVE_WATCH_TIME, str(watched))
    if watched > MAX_WATCH_SECONDS:
        return _refused(Reason.IMPLAUSIBLE_WATCH_TIME,
                        f"watch_seconds={watched} > {MAX_WATCH_SECONDS:g}")
    clean[WATCH_SECONDS] = float(watched)
    return Parsed(clean)


def plausible_watch(watch_seconds: float, duration_seconds: float, max_watch_ratio: float
                    ) -> bool:
    """The catalogue's rule, shared by batch and stream: a play reports at most
    `max_watch_ratio` times the title's duration (a rewatch or two; more is a broken client)."""
    return watch_seconds <= max_watch_ratio * max(1.0, duration_seconds)
