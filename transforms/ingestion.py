"""Beam ingestion: raw playback events -> one labelled interaction tf.Example per (user, title, session).

    events/day=D/* listed before the pipeline starts: entries not read -----------> dead letter
    files -> read bytes, line by line (gzip by its magic bytes) ------------------> dead letter
      -> parse + validate (recs.contract.events), time stamp near day D ----------> dead letter
      -> packed per user bucket (events) and per event-id bucket (ids), compressed
    ids:   group by event-id bucket -> copies of an id not used (identical: all but the
                                       earliest delivered; differing: all), as positions
                                       for the user bucket holding them
    users: group by user bucket (events, unused copies, profile versions)
      -> drop unused copies of an event id --------------------------------------> dead letter
      -> per user: bot-rate hours -------------------------------------------------> dead letter
      -> sessionize (inactivity gap; a play is active start -> stop)
      -> aggregate per (user, title, session)
      -> join profile (as of the session) and catalogue (side input) -------------> dead letter
      -> label -> tf.Example -> examples/day=D/ (TFRecord, gzip)

Events arrive in day partitions (`.../day=YYYY-MM-DD/...`, the day the log was delivered).
Each input day becomes one output span, `examples/day=YYYY-MM-DD/`, holding the sessions whose
first event was delivered that day; ImportExampleGen reads them with the span pattern
`day={YYYY}-{MM}-{DD}/*` (see `SPAN_PATTERN`). Partitioning by delivery day means a late
event never reopens a span that was already written.

Listing (`transforms.ingestion_files`, before the pipeline starts): only regular files directly
inside a `day=YYYY-MM-DD` folder of a real date are read. Every other entry the glob names is
counted in the report's `skipped` under a `recs.contract.layout.SkipReason` and written as a
dead letter naming its path (never its bytes): a folder that is not a day (`day=2026-13-45`,
`day=2026-01-05.bak`), a folder inside a day folder, a file beside the day folders, a FIFO,
socket or device (never opened), a hidden name, a dangling or looping link, a link leading
outside the raw folder (`raw_dir`; not followed). `IngestionReport.balanced` is false while
anything is skipped. The users and titles files must exist as regular files: a clear
`ValueError` naming the file and the raw folder's layout otherwise, before anything runs.

Reading: files are read as bytes and split on newlines, so one undecodable byte costs one line,
not the job. A byte-order mark and CRLF endings are accepted; a file whose first bytes are
gzip's magic number is decompressed whatever its name (`*.jsonl.gz`, or a gzip file named
`.jsonl`); a file with neither a `.json`/`.jsonl` name nor gzip content, or one that breaks
while being read (a truncated gzip), is one dead letter (`unreadable_file`) for what could not
be read, never skipped silently. Lines longer than `MAX_RECORD_BYTES` are dead-lettered with
their first bytes. Blank lines hold no event and are counted apart (`blank_lines`).

Cleaning rules (each refusal is a dead letter with its reason):
- A record that is not UTF-8 or valid JSON, lacks a field or has a wrongly typed one, holds a
  non-finite number, an invalid id, or a negative or implausibly long watch time, or is
  stamped more than `max_lateness_seconds` before its delivery day or more than
  `max_early_seconds` after it: refused by `recs.contract.events.parse_event`, the contract the
  streaming consumer applies too. Optional fields are not imputed here; numeric normalization
  is tf.Transform's.
- Copies of one event id. Identical copies (the same parsed event, whatever the line's
  spacing or key order) are duplicates: the earliest delivered (delivery day, then file path,
  then line) is kept, whatever order the runner sees them in, and the others are refused
  (`duplicate_event_id`); the consumer keeps the first to arrive, the same rule in a stream.
  Copies whose contents differ (another watch time, another user) are a conflict: the job
  cannot tell the real one from a forgery, so every copy is refused (`conflicting_duplicate`)
  and none is used; a forged copy in a file that sorts first no longer displaces the real
  event. Contents are compared by a 96-bit BLAKE2b digest, which a forger cannot match.
- Every event of a user's clock hour holding more than `bot_events_per_hour` events: bot or
  stuck-client traffic, refused.
- A (user, title, session) whose play reports more than `max_watch_ratio` x the title's
  duration (`recs.contract.events.plausible_watch`): refused as a whole (its watch time cannot be
  trusted). Below that the watch ratio is capped at 1.
- Unknown user or title ids: refused, never silently dropped. Profile and catalogue rows that
  break the row rules (`recs.contract.rows`: the ones the store and the service apply) are
  refused too (`invalid_profile`, `invalid_title`, counted apart from events), so their users'
  and titles' events become unknown ones rather than a crash.
- Anything that would raise while a record is processed becomes a dead letter
  (`processing_error`) naming the exception class, with the events it held.

Memory: what crosses a shuffle is what a runner holding shuffles in memory (the local
DirectRunner, which keeps each one in its controller until the next stage has read it) grows
with, so nothing crosses one as an object per event, and dead letters never cross one: each
stage writes the lines it refuses itself. A reader packs the events of each user
bucket (a stable hash of the user id into `shuffle_buckets`) into one compressed JSON array per
flush of `_FLUSH_BYTES`, and the (event id, file, line, user bucket) of each event-id bucket
the same way: a few tens of bytes per event, and one element per bucket and flush. Duplicates
are found in the id shuffle, which holds no event fields, and reach the user shuffle as
positions, so one shuffle of the events both dedupes and sessionizes. What a worker holds
follows distinct keys, not copies: an event-id bucket keeps a few fields per distinct id, a
user bucket eight bytes per refused copy, and it reads its packed events twice (first
counting each user's events per hour) so that copies and bot hours are refused as they are
met, never held: a day of one replayed event, one forged id or one bot stays within a clean
day's memory (`benchmarks/ingestion_skew.py`). Profile versions travel
with their users' events in that shuffle (bounded by the profile table); the catalogue is the
only side input (bounded by the catalogue). A worker holds one bucket's events at a time.

Accounting invariant, checked by the tests: events read = events accepted + events
dead-lettered, in total and for each file, where an accepted event is one folded into an
interaction record. Every dead-lettered line is written with its reason, its input, its file
and line, and its bytes (as text, or base64 when they are not UTF-8): the dead-letter record of
`recs.contract.dead_letters`, so it can be counted, read and replayed.
"""

import array
import base64
import collections
import dataclasses
import datetime as dt
import functools
import gzip
import hashlib
import io
import json
import os
import pathlib
import stat
import zlib
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from recs.config import Config, require
from recs.contract import features as F
from recs.contract.dead_letters import EVENTS, PROFILE_UPDATES, TITLES, USERS, DeadLetter
from recs.contract.events import (LIKE, MAX_RECORD_BYTES, PLAY_START, PLAY_STOP, SKIP, Reason,
                                  TimeWindow, parse_event, plausible_watch)
from recs.contract.layout import DEAD_LETTERS, EXAMPLES, RAW_FOLDER_LAYOUT, RawLayout
from recs.contract.rows import UPDATED_TS, invalid_profile_fields, invalid_title_fields
from transforms.examples import encode_examples
from transforms.ingestion_files import Listing, Skipped, delivery_day, list_files


_NAMESPACE = "recs.ingestion"
_DEAD_LETTER = "dead_letter"
_ARRIVAL = "arrival_day"
_POSITION = "delivered_at"
"""(delivery day, file, line) of an event: the order in which copies of one id count."""
_IDS = "ids"
_EVENTS, _DUPLICATES, _CONFLICTS, _PROFILES = "events", "duplicates", "conflicts", "profiles"
"""Kinds of what crosses the user-bucket shuffle: packed events, packed positions of later
copies of an event id, packed positions of the copies of an id whose contents differ, and
profile rows."""
_DIGEST_BYTES = 12
"""An event's content digest (BLAKE2b, 96 bits): a forged copy cannot be made to pass for
the real one by matching its digest (a second preimage), and it adds 16 characters to what
crosses the event-id shuffle."""
_FLUSH_BYTES = 4 << 20
"""A reader's packed, not yet compressed, event bytes before it emits them: bounds a reader's
buffer and keeps each bucket's array long enough to compress well."""
_ENCODE_BATCH = 2048
"""Records a worker holds before it encodes them in bulk."""
_Accepted = tuple[str, dict[str, Any], list[dict[str, Any]]]
"""(span, interaction record, the events folded into it)."""
_GZIP_MAGIC = b"\x1f\x8b"
_TEXT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt")
SPAN_PATTERN = "day={YYYY}-{MM}-{DD}/*.tfrecord.gz"
"""ImportExampleGen's input pattern for ingestion's output: one span per delivery day."""
INVALID_PROFILE, INVALID_TITLE = Reason.INVALID_PROFILE, Reason.INVALID_TITLE
"""Dead-letter reasons of reference rows (profiles, catalogue), counted apart from events."""
CONFLICTING_DUPLICATE = "conflicting_duplicate"
"""Dead-letter reason of every copy of an event id whose copies differ in content: none is
used, as the job cannot tell the real one from a forgery (batch only: the stream consumer
keeps the first to arrive, not knowing what comes later)."""


@dataclasses.dataclass(frozen=True)
class IngestionConfig(Config):
    """Where ingestion reads and writes, and how it sessionizes.

    Attributes:
        events_glob: raw event files, each inside a delivery-day partition folder
            `day=YYYY-MM-DD`: JSON lines, plain (`.jsonl`) or gzip-compressed (`.jsonl.gz`,
            or any name: gzip is recognized by its first bytes).
        users_path: user profiles, one JSON object per line (`recs.contract.rows`' rules).
        titles_path: content catalogue, one JSON object per line (`recs.contract.rows`'
            rules).
        output_dir: receives `examples/day=YYYY-MM-DD/` (TFRecord.gz, one span per day,
            ready for ImportExampleGen) and `dead_letter/` (JSON lines with a `reason`).
        profile_updates_glob: optional profile changes, each line a full profile with an
            `updated_ts`; a session is joined with the profile in force when it started.
        raw_dir: the raw folder. A symbolic link among the events and profile-update files
            is followed only when it leads inside it or inside the glob's own folder (the
            part before its first wildcard); "" = the glob's folder only.
        session_gap_seconds: inactivity that closes a session. A play counts as activity
            from its `play_start` to its `play_stop`, so a two-hour film with no events in
            between is one session, not a start and a stop in two.
        max_play_seconds: a `play_start` holds its session open until the same title's next
            `play_stop` only when that comes within this; a start whose stop never arrives is
            activity at its own time only.
        max_lateness_seconds: how long before its delivery day an event may be stamped.
        max_early_seconds: how long after its delivery day ends an event may be stamped.
        bot_events_per_hour: more events than this in one clock hour marks bot traffic.
        max_watch_ratio: watch time over this multiple of the duration is implausible.
        num_shards: output example shards per span; 0 lets the runner decide.
        shuffle_buckets: users (and event ids) are hashed into this many shuffle keys. A
            worker holds one bucket's events at a time (about the input's events /
            `shuffle_buckets`), and a runner spreads sessionization over at most this many
            workers: raise it with the input's size on a distributed runner. It changes no
            output.
    """

    events_glob: str
    users_path: str
    titles_path: str
    output_dir: str
    profile_updates_glob: str = ""
    raw_dir: str = ""
    session_gap_seconds: int = 1800
    max_play_seconds: int = 6 * 3600
    max_lateness_seconds: int = 86_400
    max_early_seconds: int = 86_400
    bot_events_per_hour: int = 300
    max_watch_ratio: float = 3.0
    num_shards: int = 0
    shuffle_buckets: int = 256

    def __post_init__(self) -> None:
        require(self.session_gap_seconds > 0, "session_gap_seconds", "> 0",
                self.session_gap_seconds)
        require(self.max_play_seconds > 0, "max_play_seconds", "> 0", self.max_play_seconds)
        for name in ("max_lateness_seconds", "max_early_seconds"):
            require(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))
        require(self.bot_events_per_hour > 0, "bot_events_per_hour", "> 0",
                self.bot_events_per_hour)
        require(self.max_watch_ratio >= 1.0, "max_watch_ratio", ">= 1", self.max_watch_ratio)
        require(self.num_shards >= 0, "num_shards", ">= 0", self.num_shards)
        require(self.shuffle_buckets > 0, "shuffle_buckets", "> 0", self.shuffle_buckets)

    @classmethod
    def for_raw(cls, raw_dir: str | pathlib.Path, output_dir: str | pathlib.Path,
                **options: Any) -> "IngestionConfig":
        """The config reading a raw folder as the generator writes it (and as a daily log
        delivery is laid out, `recs.contract.layout.RawLayout`): `events/day=D/*`,
        `users.jsonl`, `titles.jsonl`, `profile_updates/day=D/*.jsonl`; `options` set the
        other fields."""
        raw = RawLayout(raw_dir)
        return cls(events_glob=raw.events_glob, users_path=str(raw.users),
                   titles_path=str(raw.titles), profile_updates_glob=raw.profile_updates_glob,
                   raw_dir=str(raw.root), output_dir=str(output_dir), **options)

    @property
    def examples_dir(self) -> str:
        return str(pathlib.Path(self.output_dir) / EXAMPLES)

    @property
    def dead_letter_dir(self) -> str:
        return str(pathlib.Path(self.output_dir) / DEAD_LETTERS)


@dataclasses.dataclass(frozen=True)
class FileCounts:
    """One events file's share of the accounting invariant."""

    read: int = 0
    accepted: int = 0
    dead_lettered: int = 0

    @property
    def balanced(self) -> bool:
        return self.read == self.accepted + self.dead_lettered


@dataclasses.dataclass(frozen=True)
class IngestionReport:
    """Counters of one ingestion run."""

    events_read: int
    events_accepted: int
    dead_lettered: dict[str, int]
    records_written: int
    records_per_span: dict[str, int] = dataclasses.field(default_factory=dict)
    files: dict[str, FileCounts] = dataclasses.field(default_factory=dict)
    blank_lines: int = 0
    reference_dead_lettered: dict[str, int] = dataclasses.field(default_factory=dict)
    """Refused profile and catalogue rows, by reason (not events: outside the invariant)."""
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    """Files and folders the globs name that were not read, by
    `recs.contract.layout.SkipReason` (each also a dead letter naming its path)."""

    @property
    def events_dead_lettered(self) -> int:
        return sum(self.dead_lettered.values())

    @property
    def lines_balanced(self) -> bool:
        """Nothing read was lost: read = accepted + dead-lettered, in total and per file."""
        return (self.events_read == self.events_accepted + self.events_dead_lettered
                and all(counts.balanced for counts in self.files.values()))

    @property
    def balanced(self) -> bool:
        """The accounting invariant: nothing read was lost, and nothing the globs name was
        left unread (a skipped file or folder may hold events that were never counted)."""
        return self.lines_balanced and not self.skipped

    def summary(self) -> str:
        """The counters as a table, dead letters per reason, for the end of a run."""
        lines = [f"files read           {len(self.files):>12,}",
                 f"events read          {self.events_read:>12,}",
                 f"events accepted      {self.events_accepted:>12,}",
                 f"events dead-lettered {self.events_dead_lettered:>12,}"]
        lines += [f"  {reason:<26}{count:>10,}" for reason, count in self.dead_lettered.items()]
        if self.blank_lines:
            lines.append(f"blank lines skipped  {self.blank_lines:>12,}")
        for reason, count in self.reference_dead_lettered.items():
            lines.append(f"refused {reason:<21}{count:>10,}")
        if self.skipped:
            lines.append(f"files/folders unread {sum(self.skipped.values()):>12,}")
            lines += [f"  {reason:<26}{count:>10,}" for reason, count in self.skipped.items()]
        lines.append(f"records written      {self.records_written:>12,}")
        lines += [f"  span {span:<21}{count:>10,}" for span, count in
                  self.records_per_span.items()]
        if not self.lines_balanced:
            lines.append("NOT BALANCED: read != accepted + dead-lettered")
        if self.skipped:
            lines.append(f"NOT BALANCED: {sum(self.skipped.values()):,} files or folders were "
                         "not read (see the dead letters for their paths)")
        if self.balanced:
            lines.append("balanced: read = accepted + dead-lettered, in every file; every "
                         "file named was read")
        return "\n".join(lines)


def _count(name: str, value: int = 1) -> None:
    beam.metrics.Metrics.counter(_NAMESPACE, name).inc(value)


def _dead(record: bytes | str, reason: str, detail: str = "",
          position: tuple[str, str, int] | None = None, source: str = EVENTS
          ) -> beam.pvalue.TaggedOutput:
    """A dead letter (`recs.contract.dead_letters`): the record as it was delivered, why it
    was refused, and where from.

    Args:
        source: the input: `events` (counted in the accounting invariant, and in its file's
            share), or a profile or catalogue table (counted apart).
    """
    if source != EVENTS:
        _count(f"reference_dead.{reason}")
    else:
        _count(f"dead_letter.{reason}")
        if position is not None:
            _count(f"file_dead.{position[1]}")
    if isinstance(record, str):
        record = record.encode("utf-8", "surrogatepass")
    file, line = (position[1], position[2]) if position is not None else ("", 0)
    letter = DeadLetter(reason, source, detail, file, line, record)
    return beam.pvalue.TaggedOutput(_DEAD_LETTER, letter.to_json())


def _dead_events(events: Iterable[dict[str, Any]], reason: str, detail: str
                 ) -> Iterator[beam.pvalue.TaggedOutput]:
    for event in events:
        position = tuple(event[_POSITION])
        clean = {key: value for key, value in event.items() if key not in (_ARRIVAL, _POSITION)}
        yield _dead(json.dumps(clean), reason, detail, position)  # type: ignore[arg-type]


def _failure(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


@functools.lru_cache(maxsize=1024)
def _delivery_window(day: str, lateness: int, early: int) -> TimeWindow:
    """The time stamps a file delivered on `day` may hold; once per file, not per line."""
    date = dt.date.fromisoformat(day)
    start = int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc).timestamp())
    return TimeWindow.around(start, 86_400, lateness, early)


def _open_bytes(path: str) -> BinaryIO:
    """The file's raw bytes; a local path that is not a regular file is refused before a
    byte is read.

    Raises:
        ValueError: a local FIFO, socket, device or folder.
        OSError: the file cannot be opened.
    """
    if FileSystems.get_scheme(path) is not None:
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer for ever.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"not a regular file (mode {stat.filemode(mode)}); only regular "
                             "files are read")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def open_lines(path: str) -> BinaryIO:
    """The file's bytes, decompressed when they start with gzip's magic number.

    Raises:
        ValueError: neither a JSON-lines name nor gzip content, or (local) not a regular
            file: a FIFO is never waited on.
        OSError: the file cannot be opened.
    """
    raw = _open_bytes(path)
    handle = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
    if handle.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    if not path.lower().endswith(_TEXT_SUFFIXES):
        handle.close()
        raise ValueError(f"unknown file type: expected JSON lines ({', '.join(_TEXT_SUFFIXES)}) "
                         "or gzip-compressed JSON lines")
    return handle


def bounded_lines(handle: BinaryIO, limit: int) -> Iterator[tuple[bytes, int]]:
    """(line without its newline, full length) pairs; a line over `limit` bytes is cut to its
    first `limit` bytes (the rest is read and dropped), so one line never fills memory."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        length = len(line)
        if length > limit and not line.endswith(b"\n"):
            while True:  # Skip to the end of the over-long line.
                rest = handle.readline(1 << 20)
                length += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line[:limit], length
        else:
            yield line.rstrip(b"\n"), length


def _file_lines(path: str, day: str, source: str, read: list[int]) -> Iterator[Any]:
    """((day, path, line number), line bytes) for every non-blank line of one file; what
    cannot be read becomes a dead letter instead.

    Args:
        day: the file's delivery day ("" for a reference table).
        source: the input (`events`: its dead letters count in the accounting invariant).
        read: `[lines read, blank lines]`, incremented here and counted by the caller once
            per file: a metric update per line costs more than parsing it.
    """
    number = 0
    try:
        with open_lines(path) as handle:
            for number, (line, length) in enumerate(bounded_lines(handle, MAX_RECORD_BYTES), 1):
                if not line.strip():
                    read[1] += 1
                    continue
                position = (day, path, number)
                read[0] += 1
                if length > MAX_RECORD_BYTES:
                    yield _dead(line, Reason.OVERSIZED,
                                f"{length} bytes > {MAX_RECORD_BYTES}; first bytes kept",
                                position, source)
                    continue
                yield position, line
    except (OSError, EOFError, ValueError, zlib.error) as error:
        # A file that cannot be opened, is not JSON lines, or breaks half-way (a truncated
        # gzip): one dead letter stands for what was not read.
        read[0] += 1
        yield _dead(b"", Reason.UNREADABLE_FILE,
                    f"after line {number}: {_failure(error)}", (day, path, number + 1), source)


def _count_read(path: str, read: list[int], events: bool) -> None:
    if events and read[0]:
        _count("events_read", read[0])
        _count(f"file_read.{path}", read[0])
    if read[1]:
        _count("blank_lines", read[1])


class ReadLines(beam.DoFn):
    """Reference table path (profiles, catalogue) -> ((\"\", path, line number), line bytes)
    for every non-blank line; what cannot be read becomes a dead letter, counted apart from
    events.

    Args:
        source: the table's input name (`users`, `profile_updates`, `titles`).
    """

    def __init__(self, source: str) -> None:
        self._source = source

    def process(self, path: str) -> Iterator[Any]:
        read = [0, 0]
        yield from _file_lines(path, "", self._source, read)
        _count_read(path, read, False)


def bucket(key: str, buckets: int) -> int:
    """A stable hash of `key` into [0, buckets): the same in every process and on every runner
    (Python's `hash` of a str is salted per process)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % buckets


class _Packer:
    """Items packed per bucket into compressed JSON arrays: what crosses a shuffle is one
    element per bucket and flush, not one object per event, so a runner that holds a shuffle
    in memory (the local DirectRunner) holds a few compressed bytes per event."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._arrays: dict[int, bytearray] = {}
        self.size = 0

    def add(self, key: int, item: bytes) -> None:
        # Copied into one array per bucket at once: each `orjson.dumps` result holds a
        # 4 KiB allocation whatever its length, so a list of them costs 20x the bytes.
        buffer = self._arrays.get(key)
        if buffer is None:
            self._arrays[key] = buffer = bytearray(b"[")
        else:
            buffer += b","
        buffer += item
        self.size += len(item) + 1

    def emit(self) -> Iterator[tuple[int, tuple[str, bytes]]]:
        """(bucket, (kind, compressed JSON array)) per bucket held; empties the buffer."""
        arrays, self._arrays, self.size = self._arrays, {}, 0
        for key, buffer in arrays.items():
            buffer += b"]"
            yield key, (self._kind, zlib.compress(buffer, 1))


def _unpack(blob: bytes) -> list[Any]:
    return orjson.loads(zlib.decompress(blob))


class ReadEvents(beam.DoFn):
    """Index of an events file -> its valid events packed per user bucket (main output), their
    (event id, file, line, user bucket) packed per event-id bucket (`ids`), and a dead letter
    for every line refused while reading or parsing.

    A packed event is the contract's event dict with `delivered_at` = [file index, line], the
    files indexed in delivery order (day, then path), so positions compare as (day, path, line)
    do.

    Args:
        files: the events files in delivery order.
        buckets: shuffle keys users and event ids are hashed into.
        max_lateness_seconds, max_early_seconds: the delivery window of time stamps.
    """

    def __init__(self, files: list[str], buckets: int, max_lateness_seconds: int,
                 max_early_seconds: int) -> None:
        self._files = files
        self._buckets = buckets
        self._lateness = max_lateness_seconds
        self._early = max_early_seconds

    def process(self, index: int) -> Iterator[Any]:
        path = self._files[index]
        day = delivery_day(path)
        window = _delivery_window(day, self._lateness, self._early)
        events, ids = _Packer(_EVENTS), _Packer(_IDS)
        read = [0, 0]
        for element in _file_lines(path, day, EVENTS, read):
            if isinstance(element, beam.pvalue.TaggedOutput):
                yield element
                continue
            (_, _, number), line = element
            parsed = parse_event(line, window)
            if parsed.event is None:
                yield _dead(line, parsed.reason, parsed.detail, element[0])
                continue
            event = parsed.event
            user_bucket = bucket(event[F.USER_ID], self._buckets)
            digest = _digest(event)
            event[_POSITION] = (index, number)
            events.add(user_bucket, orjson.dumps(event))
            ids.add(bucket(event["event_id"], self._buckets),
                    orjson.dumps((event["event_id"], index, number, user_bucket, digest)))
            if events.size >= _FLUSH_BYTES:
                yield from events.emit()
                for packed in ids.emit():
                    yield beam.pvalue.TaggedOutput(_IDS, packed)
        yield from events.emit()
        for packed in ids.emit():
            yield beam.pvalue.TaggedOutput(_IDS, packed)
        _count_read(path, read, True)


def _digest(event: dict[str, Any]) -> str:
    """A digest of a parsed event's contents (the contract's fields, not the line's bytes:
    copies that differ only in spacing, key order or ignored fields are the same event)."""
    content = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return base64.b64encode(hashlib.blake2b(content, digest_size=_DIGEST_BYTES).digest()
                            ).decode("ascii")


_MAX_CONTENTS = 1000
"""Distinct contents counted per event id before a conflict's detail says "more than": a
flood of forged copies must not make one id's state grow with the flood."""


class _Copies:
    """What the first pass over an event-id bucket keeps of one id: how many copies, the
    earliest delivered, and its distinct contents (at most `_MAX_CONTENTS` + 1)."""

    __slots__ = ("count", "earliest", "digests")

    def __init__(self, position: tuple[int, int], digest: str) -> None:
        self.count = 1
        self.earliest = position
        self.digests: set[str] | str = digest

    def add(self, position: tuple[int, int], digest: str) -> None:
        self.count += 1
        self.earliest = min(self.earliest, position)
        if isinstance(self.digests, str):
            if digest != self.digests:
                self.digests = {self.digests, digest}
        elif len(self.digests) <= _MAX_CONTENTS:
            self.digests.add(digest)

    @property
    def contents(self) -> int | str:
        if isinstance(self.digests, str):
            return 1
        count = len(self.digests)
        return count if count <= _MAX_CONTENTS else f"more than {_MAX_CONTENTS}"


def _later_copies(element: tuple[int, Iterable[tuple[str, bytes]]]
                  ) -> Iterator[tuple[int, tuple[str, bytes]]]:
    """Event-id bucket -> the positions of the copies of an id that are not used, packed per
    the user bucket that holds the copy (where it is dead-lettered): of identical copies every
    one but the earliest delivered (`_DUPLICATES`, as (file index, line)); of copies whose
    contents differ every one (`_CONFLICTS`, as (file index, line, copies, contents)).

    Two passes over the bucket's packed ids, so memory follows the bucket's distinct ids, not
    its copies: one key delivered millions of times (a replayed log, a forgery flood) costs
    what one id does, and the positions leave in packed flushes of `_FLUSH_BYTES`.
    """
    _, values = element
    copies: dict[str, _Copies] = {}
    for _, blob in values:
        for event_id, index, number, _, digest in _unpack(blob):
            seen = copies.get(event_id)
            if seen is None:
                copies[event_id] = _Copies((index, number), digest)
            else:
                seen.add((index, number), digest)
    copies = {event_id: seen for event_id, seen in copies.items() if seen.count > 1}
    if not copies:
        return
    later, conflicts = _Packer(_DUPLICATES), _Packer(_CONFLICTS)
    for _, blob in values:
        for event_id, index, number, user_bucket, _ in _unpack(blob):
            seen = copies.get(event_id)
            if seen is None:
                continue
            if seen.contents == 1:
                if (index, number) != seen.earliest:
                    later.add(user_bucket, orjson.dumps((index, number)))
            else:
                conflicts.add(user_bucket, orjson.dumps((index, number, seen.count,
                                                         seen.contents)))
            if later.size + conflicts.size >= _FLUSH_BYTES:
                yield from later.emit()
                yield from conflicts.emit()
    yield from later.emit()
    yield from conflicts.emit()


def _activity_ends(events: list[dict[str, Any]], max_play_seconds: int) -> list[int]:
    """When each event's activity ends: a `play_start` lasts until the same title's next
    `play_stop` (if within `max_play_seconds`), any other event is an instant.

    Args:
        events: one user's events sorted by time.
        max_play_seconds: the longest a start may wait for its stop.

    Returns:
        One timestamp per event, in the same order.
    """
    ends = [int(event["ts"]) for event in events]
    next_stop: dict[str, int] = {}
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event["event_type"] == PLAY_STOP:
            next_stop[event[F.TITLE_ID]] = event["ts"]
        elif event["event_type"] == PLAY_START:
            stop = next_stop.get(event[F.TITLE_ID])
            if stop is not None and stop - event["ts"] <= max_play_seconds:
                ends[index] = stop
    return ends


def _sessionize(element: tuple[str, Iterable[dict[str, Any]]], gap_seconds: int,
                max_play_seconds: int) -> Iterator[Any]:
    """Splits one user's events into sessions at inactivity gaps longer than `gap_seconds`.

    A play is activity from its start to its stop: measuring the gap from the last event
    alone would cut every play longer than the gap in two (a start-only record with nothing
    watched, and a stop whose history already holds its own title: a label leak).

    Yields:
        (session events, history): the history is the titles played in earlier sessions,
        most recent first, "|"-joined, at most `MAX_WATCHED`.
    """
    _, grouped = element
    events = list(grouped)
    try:
        yield from _sessions(events, gap_seconds, max_play_seconds)
    except Exception as error:  # noqa: BLE001  (one user's events must not stop the job)
        yield from _dead_events(events, Reason.PROCESSING_ERROR, _failure(error))


def _sessions(events: list[dict[str, Any]], gap_seconds: int, max_play_seconds: int
              ) -> Iterator[Any]:
    history: list[str] = []

    def close(session: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        earlier = "|".join(history[:F.MAX_WATCHED])
        for event in session:  # The latest event ends up first.
            title = event[F.TITLE_ID]
            if title in history:
                history.remove(title)
            history.insert(0, title)
        return session, earlier

    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    session: list[dict[str, Any]] = []
    active_until = 0
    for event, end in zip(events, _activity_ends(events, max_play_seconds)):
        if session and event["ts"] - active_until > gap_seconds:
            yield close(session)
            session = []
        active_until = max(active_until, end) if session else end
        session.append(event)
    if session:
        yield close(session)


class _Unused:
    """Positions of the copies of event ids a user bucket must not use, as sorted int64 keys
    (file index << 32 | line) with a label each: `None` for a later identical copy, or the
    conflict's (copies, contents). Eight bytes and a label index per copy, so a bucket
    holding millions of copies of one id stays small."""

    def __init__(self) -> None:
        self._keys = array.array("q")
        self._labels = array.array("q")
        self._table: list[tuple[int, int | str]] = [(0, 0)]  # Label 0: a later copy.
        self._index: dict[tuple[int, int | str], int] = {}
        self._sorted_keys = np.zeros(0, dtype=np.int64)
        self._sorted_labels = np.zeros(0, dtype=np.int64)

    def add_later(self, positions: list[list[int]]) -> None:
        for index, number in positions:
            self._keys.append(index << 32 | number)
            self._labels.append(0)

    def add_conflicts(self, positions: list[list[Any]]) -> None:
        for index, number, copies, contents in positions:
            label = self._index.get((copies, contents))
            if label is None:
                label = self._index[copies, contents] = len(self._table)
                self._table.append((copies, contents))
            self._keys.append(index << 32 | number)
            self._labels.append(label)

    def seal(self) -> None:
        keys = np.frombuffer(self._keys, dtype=np.int64) if self._keys else np.zeros(
            0, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[order]
        self._sorted_labels = np.frombuffer(self._labels, dtype=np.int64)[order] if len(
            self._labels) else np.zeros(0, dtype=np.int64)
        self._keys, self._labels = array.array("q"), array.array("q")

    def of(self, events: list[dict[str, Any]]) -> list[int]:
        """Per event: -1 when it is used, else its label (0: a later identical copy)."""
        if not len(self._sorted_keys):
            return [-1] * len(events)
        keys = np.fromiter((index << 32 | number for index, number in
                            (event[_POSITION] for event in events)),
                           dtype=np.int64, count=len(events))
        at = np.minimum(np.searchsorted(self._sorted_keys, keys), len(self._sorted_keys) - 1)
        found = self._sorted_keys[at] == keys
        return np.where(found, self._sorted_labels[at], -1).tolist()

    def conflict(self, label: int) -> tuple[int, int | str]:
        """(copies, contents) of a conflict's label (> 0)."""
        return self._table[label]


def _profile_as_of(versions: Iterable[dict[str, Any]], ts: int) -> dict[str, Any] | None:
    """The newest profile version in force at `ts` (the first one if all are newer)."""
    ordered = sorted(versions, key=lambda v: v.get(UPDATED_TS, 0))
    in_force = [v for v in ordered if v.get(UPDATED_TS, 0) <= ts]
    return (in_force or ordered or [None])[-1]


class Sessionize(beam.DoFn):
    """User bucket -> the interaction tf.Examples of its users' sessions, each on the output
    `span_<i>` of its span (`days[i]`), and a dead letter for every event refused after
    parsing.

    The bucket's values are its users' packed events, the positions of the ones whose event id
    was delivered earlier (duplicates), and its users' profile versions; the catalogue is a
    side input. A worker holds one bucket's events at a time.

    Args:
        config: sessionization and cleaning rules.
        files: the events files in delivery order, as `ReadEvents` indexed them.
        days: the output spans, in order.
    """

    def __init__(self, config: IngestionConfig, files: list[str], days: list[str]) -> None:
        self._gap = config.session_gap_seconds
        self._max_play = config.max_play_seconds
        self._bot = config.bot_events_per_hour
        self._max_watch_ratio = config.max_watch_ratio
        self._files = files
        self._spans = {day: f"span_{i}" for i, day in enumerate(days)}

    def process(self, element: tuple[int, Iterable[tuple[str, bytes]]],
                catalogue: Mapping[str, dict[str, Any]]) -> Iterator[Any]:
        # Two passes over the bucket's packed events, so what is held follows what is used:
        # the first counts each user's events per clock hour, the second refuses copies and
        # bot hours as it meets them and keeps only the rest. A key holding millions of
        # events (a bot, a replayed log) costs its packed bytes, not a dict per event.
        _, values = element
        packed: list[bytes] = []
        unused = _Unused()
        profiles: dict[str, list[dict[str, Any]]] = {}
        for kind, blob in values:
            if kind == _EVENTS:
                packed.append(blob)
            elif kind == _DUPLICATES:
                unused.add_later(_unpack(blob))
            elif kind == _CONFLICTS:
                unused.add_conflicts(_unpack(blob))
            else:
                row = orjson.loads(blob)
                profiles.setdefault(row[F.USER_ID], []).append(row)
        unused.seal()
        per_hour: collections.Counter[tuple[str, int]] = collections.Counter()
        for blob in packed:
            events = _unpack(blob)
            per_hour.update((event[F.USER_ID], event["ts"] // 3600)
                            for event, label in zip(events, unused.of(events)) if label < 0)
        busy = {key for key, count in per_hour.items() if count > self._bot}
        del per_hour
        places = [(delivery_day(path), path) for path in self._files]
        users: dict[str, list[dict[str, Any]]] = {}
        for blob in packed:
            events = _unpack(blob)
            for event, label in zip(events, unused.of(events)):
                index, number = event[_POSITION]
                day, path = places[index]
                event[_ARRIVAL] = day
                event[_POSITION] = (day, path, number)
                if label == 0:
                    yield from _dead_events([event], Reason.DUPLICATE_EVENT_ID,
                                            event["event_id"])
                elif label > 0:
                    copies, contents = unused.conflict(label)
                    yield from _dead_events(
                        [event], CONFLICTING_DUPLICATE,
                        f"{event['event_id']}: {copies} copies with {contents} different "
                        "contents; none is used")
                elif (event[F.USER_ID], event["ts"] // 3600) in busy:
                    yield from _dead_events([event], Reason.BOT_TRAFFIC,
                                            f"more than {self._bot} events in an hour")
                else:
                    users.setdefault(event[F.USER_ID], []).append(event)
        counts: collections.Counter[str] = collections.Counter()
        pending: list[_Accepted] = []
        for user_id, events in users.items():
            for item in _sessionize((user_id, events), self._gap, self._max_play):
                if isinstance(item, beam.pvalue.TaggedOutput):
                    yield item
                    continue
                for out in _aggregate(item, profiles, catalogue, self._max_watch_ratio):
                    if isinstance(out, beam.pvalue.TaggedOutput):
                        yield out
                    else:
                        pending.append(out)
            if len(pending) >= _ENCODE_BATCH:
                yield from self._write(pending, counts)
                pending = []
        yield from self._write(pending, counts)
        for name, count in counts.items():
            _count(name, count)

    def _write(self, pending: list[_Accepted], counts: collections.Counter[str]) -> Iterator[Any]:
        """(span, record, its events) -> the record's tf.Example on its span's output, counted
        as accepted; the events of a record that cannot be encoded are dead-lettered."""
        for (span, record, events), example in zip(pending, _encoded(pending)):
            if example is None:
                yield from _dead_events(events, Reason.PROCESSING_ERROR,
                                        "the record does not encode as a tf.Example")
                continue
            counts["events_accepted"] += len(events)
            for event in events:
                counts[f"file_accepted.{event[_POSITION][1]}"] += 1
            counts["records_written"] += 1
            counts[f"span.{span}"] += 1
            yield beam.pvalue.TaggedOutput(self._spans[span], example)


def _encoded(pending: list[_Accepted]) -> list[bytes | None]:
    """The records' tf.Examples encoded in bulk; if the batch fails, one record at a time,
    None for each record that does not encode."""
    records = [record for _, record, _ in pending]
    try:
        return encode_examples(records)
    except Exception:  # noqa: BLE001  (one bad record must not cost its batch)
        examples: list[bytes | None] = []
        for record in records:
            try:
                examples.extend(encode_examples([record]))
            except Exception:  # noqa: BLE001
                examples.append(None)
        return examples


def _aggregate(element: tuple[list[dict[str, Any]], str],
               profiles: Mapping[str, list[dict[str, Any]]],
               catalogue: Mapping[str, dict[str, Any]], max_watch_ratio: float) -> Iterator[Any]:
    """One session -> (span, interaction record, its events) per title, joined with profile
    and catalogue; a session that fails is dead-lettered whole."""
    session, _ = element
    try:
        yield from _records(element, profiles, catalogue, max_watch_ratio)
    except Exception as error:  # noqa: BLE001  (one session must not stop the job)
        yield from _dead_events(session, Reason.PROCESSING_ERROR, _failure(error))


def _records(element: tuple[list[dict[str, Any]], str],
             profiles: Mapping[str, list[dict[str, Any]]],
             catalogue: Mapping[str, dict[str, Any]], max_watch_ratio: float) -> Iterator[Any]:
    session, history = element
    user_id = session[0][F.USER_ID]
    span = session[0][_ARRIVAL]
    profile = _profile_as_of(profiles.get(user_id, []), session[0]["ts"])
    if profile is None:
        yield from _dead_events(session, Reason.UNKNOWN_USER, user_id)
        return
    by_title: dict[str, list[dict[str, Any]]] = {}
    for event in session:
        by_title.setdefault(event[F.TITLE_ID], []).append(event)
    records = []
    for title_id, events in by_title.items():
        title = catalogue.get(title_id)
        if title is None:
            yield from _dead_events(events, Reason.UNKNOWN_TITLE, title_id)
            continue
        duration = max(1, int(title[F.DURATION_SECONDS]))
        stops = [e["watch_seconds"] for e in events if e["event_type"] == PLAY_STOP]
        if not all(plausible_watch(stop, duration, max_watch_ratio) for stop in stops):
            yield from _dead_events(events, Reason.IMPLAUSIBLE_WATCH_TIME,
                                    f"{max(stops)} s of a {duration} s title")
            continue
        records.append((events, _record(user_id, profile, history, title_id, title, events,
                                        duration, stops)))
    # Built before anything is yielded: a failure above dead-letters the whole session once,
    # and the caller counts what it accepts.
    for events, record in records:
        yield span, record, events


def _record(user_id: str, profile: dict[str, Any], history: str, title_id: str,
            title: dict[str, Any], events: list[dict[str, Any]], duration: int,
            stops: list[float]) -> dict[str, Any]:
    watched = min(float(duration), sum(stops))
    ratio = watched / duration
    liked = any(e["event_type"] == LIKE for e in events)
    start = events[0]["ts"]
    return {
        F.USER_ID: user_id,
        F.AGE: int(profile[F.AGE]),
        F.COUNTRY: str(profile[F.COUNTRY]),
        F.SUBSCRIPTION_TIER: str(profile[F.SUBSCRIPTION_TIER]),
        F.PREFERRED_GENRES: str(profile[F.PREFERRED_GENRES]),
        F.HISTORY: history,
        F.DEVICE_TYPE: events[0][F.DEVICE_TYPE],
        F.HOUR: (start // 3600) % F.HOURS_PER_DAY,
        F.TIMESTAMP: start,
        F.TITLE_ID: title_id,
        F.GENRE: str(title[F.GENRE]),
        F.RELEASE_YEAR: int(title[F.RELEASE_YEAR]),
        F.POPULARITY: float(title[F.POPULARITY]),
        F.DESCRIPTION: str(title[F.DESCRIPTION]),
        F.DURATION_SECONDS: duration,
        F.WATCH_SECONDS: watched,
        F.WATCH_RATIO: ratio,
        F.LIKED: int(liked),
        F.SKIPPED: int(any(e["event_type"] == SKIP for e in events)),
        F.COMPLETED: int(ratio >= F.COMPLETED_WATCH_RATIO),
        F.LABEL: int(ratio >= F.ENGAGED_WATCH_RATIO or liked),
    }


class ParseReference(beam.DoFn):
    """(position, line) of a profile or catalogue table -> (id, row), or a dead letter.

    Args:
        source: the table's input name (`users`, `profile_updates`, `titles`).
        key: the row's id field.
        invalid: row -> its missing or invalid fields (`recs.contract.rows`); a row with
            any is refused.
        reason: the dead-letter reason of a refused row.
    """

    def __init__(self, source: str, key: str,
                 invalid: Callable[[dict[str, Any]], list[str]], reason: str) -> None:
        self._source = source
        self._key = key
        self._invalid = invalid
        self._reason = reason

    def process(self, element: tuple[tuple[str, str, int], bytes]) -> Iterator[Any]:
        position, line = element
        try:
            row = orjson.loads(line[3:] if line.startswith(b"\xef\xbb\xbf") else line)
        except orjson.JSONDecodeError as error:
            yield self._refuse(line, f"not JSON: {error}", position)
            return
        if not isinstance(row, dict):
            yield self._refuse(line, f"not an object: {type(row).__name__}", position)
            return
        bad = self._invalid(row)
        if bad:
            yield self._refuse(line, f"missing or invalid {bad}", position)
            return
        yield row[self._key], row

    def _refuse(self, line: bytes, detail: str, position: tuple[str, str, int]
                ) -> beam.pvalue.TaggedOutput:
        return _dead(line, self._reason, detail, position, self._source)


def _reference_rows(pipeline: beam.Pipeline, label: str, source: str, paths: list[str],
                    key: str, invalid: Callable[[dict[str, Any]], list[str]], reason: str
                    ) -> tuple[beam.PCollection, list[beam.PCollection]]:
    """(id, row) pairs of a reference table read from `paths`, and its dead letters."""
    read = (pipeline
            | f"Files{label}" >> beam.Create(paths)
            | f"Read{label}" >> beam.ParDo(ReadLines(source)).with_outputs(
                _DEAD_LETTER, main="lines"))
    parsed = read.lines | f"Parse{label}" >> beam.ParDo(
        ParseReference(source, key, invalid, reason)).with_outputs(_DEAD_LETTER, main="rows")
    return parsed.rows, [read[_DEAD_LETTER], parsed[_DEAD_LETTER]]


def _glob(pattern: str) -> list[str]:
    """The paths `pattern` matches on any filesystem Beam knows (local, gs://, s3://, hdfs://)."""
    return [match.path for match in FileSystems.match([pattern])[0].metadata_list]


def table_files(name: str, path: str, what: str) -> list[str]:
    """The files of a reference table the job cannot run without (profiles, catalogue),
    checked before the pipeline starts.

    Args:
        name: the config field, for the error (`users_path`, `titles_path`).
        path: a file, or a glob of files.
        what: what the table holds, in words.

    Raises:
        ValueError: `path` names no regular file; the error says what was expected and the
            raw folder's layout.
    """
    if FileSystems.get_scheme(path) is None and not any(c in path for c in "*?["):
        if os.path.isfile(path):
            return [path]
        problem = ("is a folder" if os.path.isdir(path)
                   else "is not a regular file" if os.path.exists(path)
                   else "is a link to nothing" if os.path.lexists(path)
                   else "does not exist")
    else:
        files = _glob(path)
        if files:
            return files
        problem = "matches no file"
    raise ValueError(
        f"{name} {path!r} {problem}; ingestion needs {what} before it starts. A raw folder "
        f"holds {RAW_FOLDER_LAYOUT}. Write the file there, or pass its path as {name} "
        "(IngestionConfig.for_raw(raw_dir, ...) sets every path from a raw folder).")


def event_files(events_glob: str, raw_dir: str = "") -> Listing:
    """The events files `events_glob` names, in delivery order (day, then path): the order
    in which copies of one event id count; and every entry it names that is not read
    (`transforms.ingestion_files`).

    Raises:
        ValueError: no events file to read.
    """
    listing = list_files(events_glob, raw_dir, days=True)
    if not listing.files:
        unread = collections.Counter(skipped.reason for skipped in listing.skipped)
        raise ValueError(
            f"events_glob {events_glob!r} names no events file inside a day partition to read"
            + (f" (unread: {dict(sorted(unread.items()))}, e.g. {listing.skipped[0].path!r})"
               if unread else "")
            + "; put each day's events under a folder named day=YYYY-MM-DD of a real date "
            f"(the day they were delivered). A raw folder holds {RAW_FOLDER_LAYOUT}.")
    files = sorted(listing.files, key=lambda path: (delivery_day(path), path))
    return Listing(tuple(files), listing.skipped)


def _skipped_letter(element: tuple[str, str, str, str]) -> str:
    """(input, path, reason, detail) of an entry not read -> its dead letter, counted."""
    source, path, reason, detail = element
    _count(f"skipped.{reason}")
    return DeadLetter(reason, source, detail, path).to_json()


def build_pipeline(pipeline: beam.Pipeline, config: IngestionConfig) -> None:
    """Adds the ingestion transforms to `pipeline` (runner-agnostic).

    Raises:
        ValueError: no events file to read, or no users or titles file.
    """
    listing = event_files(config.events_glob, config.raw_dir)
    users = table_files("users_path", config.users_path,
                        "the user profiles (one JSON object per line)")
    titles = table_files("titles_path", config.titles_path,
                         "the catalogue (one JSON object per line)")
    files = list(listing.files)
    days = sorted({delivery_day(path) for path in files})
    unread: list[tuple[str, Skipped]] = [(EVENTS, skipped) for skipped in listing.skipped]
    buckets = config.shuffle_buckets
    profiles, dead = _reference_rows(pipeline, "Users", USERS, users, F.USER_ID,
                                     invalid_profile_fields, Reason.INVALID_PROFILE)
    if config.profile_updates_glob:
        changes = list_files(config.profile_updates_glob, config.raw_dir)
        unread += [(PROFILE_UPDATES, skipped) for skipped in changes.skipped]
        if changes.files:
            updates, more = _reference_rows(pipeline, "ProfileUpdates", PROFILE_UPDATES,
                                            list(changes.files), F.USER_ID,
                                            invalid_profile_fields, Reason.INVALID_PROFILE)
            profiles = (profiles, updates) | "ProfileVersions" >> beam.Flatten()
            dead += more
    catalogue, more = _reference_rows(pipeline, "Titles", TITLES, titles,
                                      F.TITLE_ID, invalid_title_fields, Reason.INVALID_TITLE)
    dead += more
    if unread:
        dead.append(pipeline
                    | "UnreadEntries" >> beam.Create(
                        [(source, entry.path, entry.reason, entry.detail)
                         for source, entry in unread])
                    | "CountUnreadEntries" >> beam.Map(_skipped_letter))

    read = (pipeline
            | "EventFiles" >> beam.Create(range(len(files)))
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadEvents" >> beam.ParDo(ReadEvents(
                files, buckets, config.max_lateness_seconds,
                config.max_early_seconds)).with_outputs(_IDS, _DEAD_LETTER, main="events"))
    later_copies = (read[_IDS]
                    | "GroupByEventIdBucket" >> beam.GroupByKey()
                    | "FindLaterCopies" >> beam.FlatMap(_later_copies))
    # Profile versions travel with their users' events (bounded by the profile table, and
    # split over the buckets), not as a side input every worker would hold whole.
    versions = profiles | "KeyProfilesByUserBucket" >> beam.Map(
        lambda pair, n: (bucket(pair[0], n), (_PROFILES, orjson.dumps(pair[1]))), buckets)
    tags = [f"span_{i}" for i in range(len(days))]
    sessions = ((read.events, later_copies, versions)
                | "ByUserBucket" >> beam.Flatten()
                | "GroupByUserBucket" >> beam.GroupByKey()
                | "Sessionize" >> beam.ParDo(
                    Sessionize(config, files, days),
                    catalogue=beam.pvalue.AsDict(catalogue)).with_outputs(_DEAD_LETTER, *tags))
    for day, tag in zip(days, tags):
        _ = (sessions[tag]
             | f"WriteExamples[{day}]" >> beam.io.WriteToTFRecord(
                 str(pathlib.Path(config.examples_dir) / f"day={day}" / "interactions"),
                 file_name_suffix=".tfrecord.gz", num_shards=config.num_shards))
    # Each stage writes its own dead letters, in the stage that refuses them: a Flatten of
    # the stages' outputs would make a runner that holds PCollections between stages in
    # memory (the local DirectRunner) hold every refused line of a junk day.
    dead_letters = pathlib.Path(config.dead_letter_dir)
    tables = dead | "MergeTableDeadLetters" >> beam.Flatten()
    for name, letters in (("read", read[_DEAD_LETTER]), ("sessions", sessions[_DEAD_LETTER]),
                          ("tables", tables)):
        _ = letters | f"WriteDeadLetters[{name}]" >> beam.io.WriteToText(
            str(dead_letters / f"{DEAD_LETTERS}-{name}"), file_name_suffix=".jsonl")


def run_ingestion(config: IngestionConfig, beam_args: list[str] | None = None
                  ) -> IngestionReport:
    """Runs ingestion to completion and returns its counters.

    Args:
        config: inputs, outputs and sessionization.
        beam_args: Beam pipeline options passed through unchanged, e.g.
            `["--direct_running_mode=multi_processing", "--direct_num_workers=2"]` or a
            Dataflow/Flink/Spark runner's options.

    Returns:
        The run's counters; `report.balanced` is the accounting invariant.

    Raises:
        ValueError: `config.output_dir` already holds examples (runs never mix), no events
            file to read in a `day=YYYY-MM-DD` partition, or the users or titles file is
            missing (all before the pipeline starts).
    """
    existing = _glob(str(pathlib.Path(config.examples_dir) / "*" / "*"))
    if existing:
        raise ValueError(
            f"output_dir {config.output_dir!r} already holds {len(existing)} example files; "
            "ingestion writes a fresh span, so give it an empty or new output_dir.")
    options = PipelineOptions(beam_args or [])
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    return _report(result)


def counters(result: beam.runners.runner.PipelineResult, namespace: str) -> dict[str, int]:
    """A finished run's counters of `namespace` by name, summed over steps (committed
    counts, else attempted, as runners differ in which they report)."""
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(namespace))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + int(counter.committed or counter.attempted or 0)
    return totals


def under(totals: dict[str, int], prefix: str) -> dict[str, int]:
    """{rest of the name: count} of the non-zero counters whose name starts with `prefix`."""
    return {name[len(prefix):]: count for name, count in sorted(totals.items())
            if name.startswith(prefix) and count}


def _report(result: beam.runners.runner.PipelineResult) -> IngestionReport:
    totals = counters(result, _NAMESPACE)
    prefixed = functools.partial(under, totals)
    read, accepted, dead = (prefixed("file_read."), prefixed("file_accepted."),
                            prefixed("file_dead."))
    return IngestionReport(
        events_read=totals.get("events_read", 0),
        events_accepted=totals.get("events_accepted", 0),
        dead_lettered=prefixed("dead_letter."),
        records_written=totals.get("records_written", 0),
        records_per_span=prefixed("span."),
        files={path: FileCounts(read.get(path, 0), accepted.get(path, 0), dead.get(path, 0))
               for path in sorted(set(read) | set(dead))},
        blank_lines=totals.get("blank_lines", 0),
        reference_dead_lettered=prefixed("reference_dead."),
        skipped=prefixed("skipped."),
    )
