"""Beam ingestion: raw playback events -> one labelled interaction tf.Example per (user, title, session).

    ReadFromText(events) -> parse + validate ----------------------------> dead letter
                         -> deduplicate by event_id ---------------------> dead letter
                         -> group by user, sessionize (inactivity gap)
                         -> aggregate per (user, title, session)
                         -> join profile and catalogue (side inputs) ----> dead letter
                         -> label -> tf.Example -> TFRecord (gzip)

Accounting invariant, checked by the tests: events read = events accepted + events
dead-lettered, where an accepted event is one folded into an interaction record. Every
dead-lettered line is written with its reason so it can be counted, read and replayed.
"""

import dataclasses
import json
import pathlib
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.config import Config, require
from transforms.events import Reason, parse_event

import tensorflow as tf

_NAMESPACE = "recs.ingestion"
_DEAD_LETTER = "dead_letter"


@dataclasses.dataclass(frozen=True)
class IngestionConfig(Config):
    """Where ingestion reads and writes, and how it sessionizes.

    Attributes:
        events_glob: raw event JSON-lines files.
        users_path: user profiles, one JSON object per line.
        titles_path: content catalogue, one JSON object per line.
        output_dir: receives `examples/` (TFRecord.gz, ready for ImportExampleGen) and
            `dead_letter/` (JSON lines with a `reason`).
        session_gap_seconds: inactivity that closes a session.
        num_shards: output example shards; 0 lets the runner decide.
    """

    events_glob: str
    users_path: str
    titles_path: str
    output_dir: str
    session_gap_seconds: int = 1800
    num_shards: int = 0

    def __post_init__(self) -> None:
        require(self.session_gap_seconds > 0, "session_gap_seconds", "> 0",
                 self.session_gap_seconds)
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

    @property
    def events_dead_lettered(self) -> int:
        return sum(self.dead_lettered.values())

    @property
    def balanced(self) -> bool:
        """The accounting invariant: nothing read was lost."""
        return self.events_read == self.events_accepted + self.events_dead_lettered


def _dead(line: str, reason: str, detail: str = "") -> beam.pvalue.TaggedOutput:
    beam.metrics.Metrics.counter(_NAMESPACE, f"dead_letter.{reason}").inc()
    return beam.pvalue.TaggedOutput(
        _DEAD_LETTER, json.dumps({"reason": reason, "detail": detail, "record": line}))


def _dead_events(events: Iterable[dict[str, Any]], reason: str, detail: str
                 ) -> Iterator[beam.pvalue.TaggedOutput]:
    for event in events:
        yield _dead(json.dumps(event), reason, detail)


class ParseEvent(beam.DoFn):
    """JSON line -> validated event dict, or a dead letter with the reason."""

    def process(self, line: str) -> Iterator[Any]:
        beam.metrics.Metrics.counter(_NAMESPACE, "events_read").inc()
        parsed = parse_event(line)
        yield parsed.event if parsed.event is not None else _dead(line, parsed.reason,
                                                                   parsed.detail)


def _first_of_duplicates(element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
    _, copies = element
    ordered = sorted(copies, key=json.dumps)  # Deterministic pick whatever the runner's order.
    yield ordered[0]
    for extra in ordered[1:]:
        yield _dead(json.dumps(extra), Reason.DUPLICATE_EVENT_ID, extra["event_id"])


def _sessionize(element: tuple[str, Iterable[dict[str, Any]]], gap_seconds: int
                ) -> Iterator[tuple[list[dict[str, Any]], str]]:
    """Splits one user's events into sessions at inactivity gaps longer than `gap_seconds`.

    Yields:
        (session events, history): the history is the titles played in earlier sessions,
        most recent first, "|"-joined, at most `MAX_HISTORY`.
    """
    _, events = element
    history: list[str] = []

    def close(session: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        earlier = "|".join(history[:F.MAX_HISTORY])
        for event in session:  # The latest event ends up first.
            title = event[F.TITLE_ID]
            if title in history:
                history.remove(title)
            history.insert(0, title)
        return session, earlier

    session: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: (e["ts"], e["event_id"])):
        if session and event["ts"] - session[-1]["ts"] > gap_seconds:
            yield close(session)
            session = []
        session.append(event)
    if session:
        yield close(session)


def _aggregate(element: tuple[list[dict[str, Any]], str], profiles: dict[str, dict[str, Any]],
               catalogue: dict[str, dict[str, Any]]) -> Iterator[Any]:
    """One session -> one interaction record per title, joined with profile and catalogue."""
    session, history = element
    user_id = session[0][F.USER_ID]
    profile = profiles.get(user_id)
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
        watched = min(float(duration), sum(float(e.get("watch_seconds", 0.0))
                                           for e in events if e["event_type"] == "play_stop"))
        ratio = watched / duration
        liked = any(e["event_type"] == "like" for e in events)
        start = events[0]["ts"]
        beam.metrics.Metrics.counter(_NAMESPACE, "events_accepted").inc(len(events))
        beam.metrics.Metrics.counter(_NAMESPACE, "records_written").inc()
        yield {
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


def build_pipeline(pipeline: beam.Pipeline, config: IngestionConfig) -> None:
    """Adds the ingestion transforms to `pipeline` (runner-agnostic)."""
    profiles = _keyed_jsonl(pipeline, "Users", config.users_path, F.USER_ID)
    catalogue = _keyed_jsonl(pipeline, "Titles", config.titles_path, F.TITLE_ID)

    parsed = (pipeline
              | "ReadEvents" >> beam.io.ReadFromText(config.events_glob)
              | "Parse" >> beam.ParDo(ParseEvent()).with_outputs(_DEAD_LETTER, main="events"))
    unique = (parsed.events
              | "KeyByEventId" >> beam.Map(lambda e: (e["event_id"], e))
              | "GroupByEventId" >> beam.GroupByKey()
              | "Deduplicate" >> beam.FlatMap(_first_of_duplicates).with_outputs(
                  _DEAD_LETTER, main="events"))
    records = (unique.events
               | "KeyByUser" >> beam.Map(lambda e: (e[F.USER_ID], e))
               | "GroupByUser" >> beam.GroupByKey()
               | "Sessionize" >> beam.FlatMap(_sessionize, config.session_gap_seconds)
               | "Aggregate" >> beam.FlatMap(
                   _aggregate, profiles=beam.pvalue.AsDict(profiles),
                   catalogue=beam.pvalue.AsDict(catalogue)).with_outputs(
                       _DEAD_LETTER, main="records"))
    _ = (records.records
         | "ToExample" >> beam.Map(to_example)
         | "WriteExamples" >> beam.io.WriteToTFRecord(
             str(pathlib.Path(config.examples_dir) / "interactions"),
             file_name_suffix=".tfrecord.gz", num_shards=config.num_shards))
    _ = ((parsed[_DEAD_LETTER], unique[_DEAD_LETTER], records[_DEAD_LETTER])
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
        ValueError: `config.output_dir` already holds examples (runs never mix).
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
    )
