"""Beam ingestion: raw playback events -> one labelled interaction tf.Example per (user, title, session).

    ReadFromText(events/day=D/*) -> parse + validate, time stamp near day D ---> dead letter
                         -> deduplicate by event_id --------------------------> dead letter
                         -> group by user: bot-rate hours --------------------> dead letter
                         -> sessionize (inactivity gap; a play is active start -> stop)
                         -> aggregate per (user, title, session)
                         -> join profile (as of the session) and catalogue ---> dead letter
                         -> label -> tf.Example -> examples/day=D/ (TFRecord, gzip)

Events arrive in day partitions (`.../day=YYYY-MM-DD/...`, the day the log was delivered).
Each input day becomes one output span, `examples/day=YYYY-MM-DD/`, holding the sessions whose
first event was delivered that day; ImportExampleGen reads them with the span pattern
`day={YYYY}-{MM}-{DD}/*` (see `SPAN_PATTERN`). Partitioning by delivery day means a late
event never reopens a span that was already written.

Cleaning rules (each refusal is a dead letter with its reason):
- A record that is not valid JSON, lacks a field or has a wrongly typed one, or reports a
  negative watch time: refused (`transforms.events.parse_event`, shared with the streaming
  consumer). Optional fields are not imputed here; numeric normalization is tf.Transform's.
- An event stamped more than `max_lateness_seconds` before its delivery day or more than
  `max_early_seconds` after it: a broken device clock, refused.
- A second copy of an event id: refused.
- Every event of a user's clock hour holding more than `bot_events_per_hour` events: bot or
  stuck-client traffic, refused.
- A (user, title, session) whose play reports more than `max_watch_ratio` x the title's
  duration: refused as a whole (its watch time cannot be trusted). Below that the watch
  ratio is capped at 1.
- Unknown user or title ids: refused, never silently dropped.

Accounting invariant, checked by the tests: events read = events accepted + events
dead-lettered, where an accepted event is one folded into an interaction record. Every
dead-lettered line is written with its reason so it can be counted, read and replayed.
"""

import dataclasses
import datetime as dt
import functools
import json
import pathlib
import re
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.config import Config, require
from transforms.events import Reason, parse_event

import tensorflow as tf

_NAMESPACE = "recs.ingestion"
_DEAD_LETTER = "dead_letter"
_DAY_PARTITION = re.compile(r"day=(\d{4}-\d{2}-\d{2})")
_ARRIVAL = "arrival_day"
_UPDATED_TS = "updated_ts"
SPAN_PATTERN = "day={YYYY}-{MM}-{DD}/*.tfrecord.gz"
"""ImportExampleGen's input pattern for ingestion's output: one span per delivery day."""


@dataclasses.dataclass(frozen=True)
class IngestionConfig(Config):
    """Where ingestion reads and writes, and how it sessionizes.

    Attributes:
        events_glob: raw event JSON-lines files, each inside a delivery-day partition
            folder `day=YYYY-MM-DD`.
        users_path: user profiles, one JSON object per line.
        titles_path: content catalogue, one JSON object per line.
        output_dir: receives `examples/day=YYYY-MM-DD/` (TFRecord.gz, one span per day,
            ready for ImportExampleGen) and `dead_letter/` (JSON lines with a `reason`).
        profile_updates_glob: optional profile changes, each line a full profile with an
            `updated_ts`; a session is joined with the profile in force when it started.
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
    """

    events_glob: str
    users_path: str
    titles_path: str
    output_dir: str
    profile_updates_glob: str = ""
    session_gap_seconds: int = 1800
    max_play_seconds: int = 6 * 3600
    max_lateness_seconds: int = 86_400
    max_early_seconds: int = 86_400
    bot_events_per_hour: int = 300
    max_watch_ratio: float = 3.0
    num_shards: int = 0

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

    @property
    def examples_dir(self) -> str:
        return str(pathlib.Path(self.output_dir) / "examples")

    @property
    def dead_letter_dir(self) -> str:
        return str(pathlib.Path(self.output_dir) / "dead_letter")


@dataclasses.dataclass(frozen=True)
class IngestionReport:
    """Counters of one ingestion run."""

    events_read: int
    events_accepted: int
    dead_lettered: dict[str, int]
    records_written: int
    records_per_span: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def events_dead_lettered(self) -> int:
        return sum(self.dead_lettered.values())

    @property
    def balanced(self) -> bool:
        """The accounting invariant: nothing read was lost."""
        return self.events_read == self.events_accepted + self.events_dead_lettered

    def summary(self) -> str:
        """The counters as a table, dead letters per reason, for the end of a run."""
        lines = [f"events read          {self.events_read:>12,}",
                 f"events accepted      {self.events_accepted:>12,}",
                 f"events dead-lettered {self.events_dead_lettered:>12,}"]
        lines += [f"  {reason:<26}{count:>10,}" for reason, count in self.dead_lettered.items()]
        lines.append(f"records written      {self.records_written:>12,}")
        lines += [f"  span {span:<21}{count:>10,}" for span, count in
                  self.records_per_span.items()]
        lines.append("balanced: read = accepted + dead-lettered" if self.balanced else
                     "NOT BALANCED: read != accepted + dead-lettered")
        return "\n".join(lines)


def _dead(line: str, reason: str, detail: str = "") -> beam.pvalue.TaggedOutput:
    beam.metrics.Metrics.counter(_NAMESPACE, f"dead_letter.{reason}").inc()
    return beam.pvalue.TaggedOutput(
        _DEAD_LETTER, json.dumps({"reason": reason, "detail": detail, "record": line}))


def _dead_events(events: Iterable[dict[str, Any]], reason: str, detail: str
                 ) -> Iterator[beam.pvalue.TaggedOutput]:
    for event in events:
        yield _dead(json.dumps(event), reason, detail)


def delivery_day(path: str) -> str:
    """The `day=YYYY-MM-DD` partition an events file sits in.

    Raises:
        ValueError: the path has no day partition.
    """
    match = _DAY_PARTITION.search(path)
    if match is None:
        raise ValueError(f"events file {path!r} is not inside a day partition; put each "
                         "day's events under a folder named day=YYYY-MM-DD (the day they "
                         "were delivered).")
    return match.group(1)


@functools.lru_cache(maxsize=1024)
def _delivery_window(path: str) -> tuple[str, int]:
    """(delivery day, its start in epoch seconds) of an events file; once per file, not per line."""
    day = delivery_day(path)
    date = dt.date.fromisoformat(day)
    return day, int(dt.datetime(date.year, date.month, date.day,
                                tzinfo=dt.timezone.utc).timestamp())


class ParseEvent(beam.DoFn):
    """(file, JSON line) -> validated event dict stamped with its delivery day, or a dead
    letter with the reason."""

    def __init__(self, max_lateness_seconds: int, max_early_seconds: int) -> None:
        self._lateness = max_lateness_seconds
        self._early = max_early_seconds

    def process(self, element: tuple[str, str]) -> Iterator[Any]:
        path, line = element
        beam.metrics.Metrics.counter(_NAMESPACE, "events_read").inc()
        parsed = parse_event(line)
        if parsed.event is None:
            yield _dead(line, parsed.reason, parsed.detail)
            return
        day, start = _delivery_window(path)
        ts = parsed.event["ts"]
        if not start - self._lateness <= ts < start + 86_400 + self._early:
            yield _dead(line, Reason.TIMESTAMP_OUT_OF_RANGE, f"ts={ts} delivered {day}")
            return
        yield {**parsed.event, _ARRIVAL: day}


def _first_of_duplicates(element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
    _, copies = element
    ordered = sorted(copies, key=json.dumps)  # Deterministic pick whatever the runner's order.
    yield ordered[0]
    for extra in ordered[1:]:
        yield _dead(json.dumps(extra), Reason.DUPLICATE_EVENT_ID, extra["event_id"])


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
        if event["event_type"] == "play_stop":
            next_stop[event[F.TITLE_ID]] = event["ts"]
        elif event["event_type"] == "play_start":
            stop = next_stop.get(event[F.TITLE_ID])
            if stop is not None and stop - event["ts"] <= max_play_seconds:
                ends[index] = stop
    return ends


def _sessionize(element: tuple[str, Iterable[dict[str, Any]]], gap_seconds: int,
                max_play_seconds: int, bot_events_per_hour: int) -> Iterator[Any]:
    """Splits one user's events into sessions at inactivity gaps longer than `gap_seconds`.

    A play is activity from its start to its stop: measuring the gap from the last event
    alone would cut every play longer than the gap in two (a start-only record with nothing
    watched, and a stop whose history already holds its own title: a label leak).
    Clock hours with more than `bot_events_per_hour` events are dead-lettered first.

    Yields:
        (session events, history): the history is the titles played in earlier sessions,
        most recent first, "|"-joined, at most `MAX_WATCHED`.
    """
    _, grouped = element
    events = list(grouped)
    per_hour: dict[int, int] = {}
    for event in events:
        per_hour[event["ts"] // 3600] = per_hour.get(event["ts"] // 3600, 0) + 1
    busy = {hour for hour, count in per_hour.items() if count > bot_events_per_hour}
    if busy:
        bot = [e for e in events if e["ts"] // 3600 in busy]
        yield from _dead_events(bot, Reason.BOT_TRAFFIC,
                                f"more than {bot_events_per_hour} events in an hour")
        events = [e for e in events if e["ts"] // 3600 not in busy]
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


def _profile_as_of(versions: Iterable[dict[str, Any]], ts: int) -> dict[str, Any] | None:
    """The newest profile version in force at `ts` (the first one if all are newer)."""
    ordered = sorted(versions, key=lambda v: v.get(_UPDATED_TS, 0))
    in_force = [v for v in ordered if v.get(_UPDATED_TS, 0) <= ts]
    return (in_force or ordered or [None])[-1]


def _aggregate(element: tuple[list[dict[str, Any]], str],
               profiles: Mapping[str, list[dict[str, Any]]], catalogue: dict[str, dict[str, Any]],
               max_watch_ratio: float) -> Iterator[Any]:
    """One session -> (span, interaction record) per title, joined with profile and catalogue."""
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
    for title_id, events in by_title.items():
        title = catalogue.get(title_id)
        if title is None:
            yield from _dead_events(events, Reason.UNKNOWN_TITLE, title_id)
            continue
        duration = max(1, int(title[F.DURATION_SECONDS]))
        stops = [float(e.get("watch_seconds", 0.0)) for e in events
                 if e["event_type"] == "play_stop"]
        if any(stop > max_watch_ratio * duration for stop in stops):
            yield from _dead_events(events, Reason.IMPLAUSIBLE_WATCH_TIME,
                                    f"{max(stops)} s of a {duration} s title")
            continue
        watched = min(float(duration), sum(stops))
        ratio = watched / duration
        liked = any(e["event_type"] == "like" for e in events)
        start = events[0]["ts"]
        beam.metrics.Metrics.counter(_NAMESPACE, "events_accepted").inc(len(events))
        beam.metrics.Metrics.counter(_NAMESPACE, "records_written").inc()
        beam.metrics.Metrics.counter(_NAMESPACE, f"span.{span}").inc()
        yield span, {
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
            F.SKIPPED: int(any(e["event_type"] == "skip" for e in events)),
            F.COMPLETED: int(ratio >= F.COMPLETED_WATCH_RATIO),
            F.LABEL: int(ratio >= F.ENGAGED_WATCH_RATIO or liked),
        }


def to_example(record: dict[str, Any]) -> bytes:
    """Serializes an interaction record as a tf.Example with the contract's dtypes."""
    feature = {}
    for key, dtype in F.RAW_FEATURE_DTYPES.items():
        value = record[key]
        if dtype == tf.string:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif dtype == tf.int64:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _keyed_jsonl(pipeline: beam.Pipeline, label: str, path: str, key: str
                 ) -> beam.PCollection:
    return (pipeline
            | f"Read{label}" >> beam.io.ReadFromText(path)
            | f"Parse{label}" >> beam.Map(json.loads)
            | f"Key{label}" >> beam.Map(lambda row: (row[key], row)))


def delivery_days(events_glob: str) -> list[str]:
    """The day partitions `events_glob` matches, in order: one output span each.

    Raises:
        ValueError: nothing matches, or a matched file sits outside a day partition.
    """
    paths = tf.io.gfile.glob(events_glob)
    if not paths:
        raise ValueError(f"events_glob {events_glob!r} matches no files.")
    return sorted({delivery_day(path) for path in paths})


def build_pipeline(pipeline: beam.Pipeline, config: IngestionConfig) -> None:
    """Adds the ingestion transforms to `pipeline` (runner-agnostic)."""
    days = delivery_days(config.events_glob)
    profiles = _keyed_jsonl(pipeline, "Users", config.users_path, F.USER_ID)
    if config.profile_updates_glob and tf.io.gfile.glob(config.profile_updates_glob):
        updates = _keyed_jsonl(pipeline, "ProfileUpdates", config.profile_updates_glob,
                               F.USER_ID)
        profiles = (profiles, updates) | "ProfileVersions" >> beam.Flatten()
    catalogue = _keyed_jsonl(pipeline, "Titles", config.titles_path, F.TITLE_ID)

    parsed = (pipeline
              | "ReadEvents" >> beam.io.ReadFromTextWithFilename(config.events_glob)
              | "Parse" >> beam.ParDo(ParseEvent(config.max_lateness_seconds,
                                                 config.max_early_seconds)).with_outputs(
                  _DEAD_LETTER, main="events"))
    unique = (parsed.events
              | "KeyByEventId" >> beam.Map(lambda e: (e["event_id"], e))
              | "GroupByEventId" >> beam.GroupByKey()
              | "Deduplicate" >> beam.FlatMap(_first_of_duplicates).with_outputs(
                  _DEAD_LETTER, main="events"))
    sessions = (unique.events
                | "KeyByUser" >> beam.Map(lambda e: (e[F.USER_ID], e))
                | "GroupByUser" >> beam.GroupByKey()
                | "Sessionize" >> beam.FlatMap(
                    _sessionize, config.session_gap_seconds, config.max_play_seconds,
                    config.bot_events_per_hour).with_outputs(_DEAD_LETTER, main="sessions"))
    # Versions grouped per user and read as one dict: a multimap side input would cost a
    # runner round trip per session lookup.
    profile_versions = profiles | "GroupProfileVersions" >> beam.GroupByKey()
    records = (sessions.sessions
               | "Aggregate" >> beam.FlatMap(
                   _aggregate, profiles=beam.pvalue.AsDict(profile_versions),
                   catalogue=beam.pvalue.AsDict(catalogue),
                   max_watch_ratio=config.max_watch_ratio).with_outputs(
                       _DEAD_LETTER, main="records"))
    by_day = records.records | "SplitBySpan" >> beam.Partition(
        lambda element, _: days.index(element[0]), len(days))
    for day, span in zip(days, by_day):
        _ = (span
             | f"ToExample[{day}]" >> beam.Map(lambda element: to_example(element[1]))
             | f"WriteExamples[{day}]" >> beam.io.WriteToTFRecord(
                 str(pathlib.Path(config.examples_dir) / f"day={day}" / "interactions"),
                 file_name_suffix=".tfrecord.gz", num_shards=config.num_shards))
    _ = ((parsed[_DEAD_LETTER], unique[_DEAD_LETTER], sessions[_DEAD_LETTER],
          records[_DEAD_LETTER])
         | "MergeDeadLetters" >> beam.Flatten()
         | "WriteDeadLetters" >> beam.io.WriteToText(
             str(pathlib.Path(config.dead_letter_dir) / "dead_letter"),
             file_name_suffix=".jsonl"))


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
        ValueError: `config.output_dir` already holds examples (runs never mix), or an
            events file is outside a `day=YYYY-MM-DD` partition.
    """
    existing = tf.io.gfile.glob(str(pathlib.Path(config.examples_dir) / "*"))
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


def _report(result: beam.runners.runner.PipelineResult) -> IngestionReport:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + int(counter.committed or counter.attempted or 0)
    prefix = f"{_DEAD_LETTER}."
    return IngestionReport(
        events_read=totals.get("events_read", 0),
        events_accepted=totals.get("events_accepted", 0),
        dead_lettered={name[len(prefix):]: count for name, count in sorted(totals.items())
                       if name.startswith(prefix)},
        records_written=totals.get("records_written", 0),
        records_per_span={name[len("span."):]: count for name, count in sorted(totals.items())
                          if name.startswith("span.")},
    )
