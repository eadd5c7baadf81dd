"""Experiment outcomes from logs: one row per user exposed to an A/B test, for `recs abtest`.

    served/day=D/*.jsonl (the service's served lists) -------------------------------> dead letter
      -> (user, (day D, the experiment's arm or none, the served titles, where))
    examples/day=D/*.tfrecord.gz (ingestion's interaction records) -------------------> dead letter
      -> (user, (UTC day of the session start, title, watch seconds, engaged))
    subscriptions/day=D/*.jsonl (optional renewal decisions) -------------------------> dead letter
      -> (user, (day D, time stamp, renewed or cancelled, where))
    CoGroupByKey by user: the one shuffle
      -> users served a list naming the experiment on a day in [start, end]
      -> one arm per user (two arms is a broken assignment) ---------------------------> dead letter
      -> the user's outcome row -> output_path (JSON lines, what `recs abtest` reads)
      -> with `daily`: the row as it stood at each day -> <output>.daily.jsonl
         (what `recs abtest --sequential` reads)
    counters -> <output>.report.json; dead letters -> <output>.dead_letter.jsonl

The rows are `recs.contract.outcomes`' records.

Days. A served list's day is its partition's: the line's `ts` is the server's wall clock,
which a simulated service does not follow. A record's day is the UTC date of its session start
(`TIMESTAMP`), not its partition's, since ingestion files a session under the day it was
delivered, which can be a day after it started. A subscription decision's day is its
partition's.

The row of a user first exposed on day d0 (the window is [start, end], both inclusive):
- `arm`: the arm the experiment's lists name; a user whose lists name two arms is
  dead-lettered (`arm_changed`), never guessed.
- `lists_served`: lists naming the experiment in the window; `titles_served`: distinct titles
  in them.
- `served_engaged`: distinct served titles with an engaged record (`LABEL` = 1) on the day a
  list served them or up to `attribution_days` later, at most `end`; `engaged` is 1 when there
  is at least one. Days are whole days: an engagement earlier on the day of the serve counts.
- `watch_seconds`: the user's records on days in [d0, end], every title;
  `pre_watch_seconds`: on days in [start - pre_period_days, start), 0.0 when none (CUPED needs
  a covariate for every user).
- `returned`: 1 when the user was active (a record, or any served list) on a day in
  (d0, d0 + return_horizon_days], else 0; null when that horizon ends after `end` (the window
  cannot tell).
- `renewed`: the user's first subscription decision on a day in (d0, end], ordered by day then
  time stamp: 1 renewed, 0 cancelled; null without one or without a subscriptions input.
- `churned`, `days_observed` (survival, `monitoring.survival`): with a cancellation on a day
  c in [d0, end] (the first such), churned 1 and c - d0 days; otherwise censored, churned 0
  and end - d0 days. A cancellation on d0 counts (0 days; a closed loop decides churn at the
  end of the day, after the day's sessions), unlike `renewed`, which reads decisions after
  d0: a user who is gone must not be counted as still subscribed. A cancellation before d0
  does not count (the arm cannot have caused it). Both null without a subscriptions input.

Daily rows (`daily`): for each day d from the user's first exposure to `end`, the row a run
with `end_day` = d would write, plus `as_of_day` (d) and `experiment_day` (d - start + 1):
every input is cut at d, and `returned` stays null until its horizon ends by d. They equal
such a run's rows exactly while no example is filed more than `delivery_slack_days` after its
session day (what both runs assume). A user whose lists name a second arm later has rows for
the days before it (as a run then would have), and no row from that day on; the final rows
dead-letter them as above. One pass over the shuffle gives every day's rows.

Hostile input. Every line read is either used or dead-lettered with its reason, file and line
(its bytes as text, or base64 when they are not UTF-8): bytes that are not UTF-8, JSON that
does not parse, a value that is not an object, a missing or wrongly typed id, an unknown
subscription event, an over-long line, a file that cannot be read. A served-list line is
parsed with the standard parser when orjson refuses it: the service writes with `json.dumps`,
which spells a non-finite score `NaN`, and only ids are read here. Records outside the windows
and users never exposed are not faults: they are counted apart (`skipped`). An example file
that is not a readable TFRecord fails the job: ingestion wrote it, and rows missing part of a
day's watch time would bias the comparison without a trace in any one row.

Memory: what crosses the shuffle is one small tuple per served list, interaction record and
decision (ids, day numbers, a watch time), never a whole line; a worker holds one user's at a
time.
"""

import collections
import dataclasses
import datetime as dt
import functools
import json
import posixpath
import re
import zlib
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions
from google.protobuf.message import DecodeError

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.config import Config, require
from recs.contract import outcomes as O
from recs.contract.dead_letters import (RECORDS, SERVED, SUBSCRIPTIONS, DeadLetter, Refused,
                                        require_id)
from recs.contract.events import Reason
from recs.contract.layout import day_partition
from recs.contract.served import json_object, read_exposure
from transforms.ingestion import bounded_lines, counters, open_lines, under

import tensorflow as tf

_NAMESPACE = "recs.outcomes"
_DEAD_LETTER = "dead_letter"
_DAILY = "daily"
_DAY_PARTITION = re.compile(r"day=(\d{4}-\d{2}-\d{2})")
_EPOCH = dt.date(1970, 1, 1).toordinal()
MAX_LINE_BYTES = 1 << 20
"""A served list of a few hundred titles is tens of kilobytes; a longer line is refused."""

USER_ID, TS, EVENT = "user_id", "ts", "event"
"""A subscription decision's fields (the served lists' are `recs.contract.served`'s)."""
SUBSCRIPTION_EVENTS = {"renewed": 1, "cancelled": 0}
"""A subscription decision's `event` -> its `renewed` value."""
_RECORD_KEYS = (F.USER_ID, F.TITLE_ID, F.TIMESTAMP, F.WATCH_SECONDS, F.LABEL)
_LAYOUT = f"{{argument}}/{day_partition('YYYY-MM-DD')}/*{{suffix}}"


def _day(text: str) -> int:
    """An ISO date -> its proleptic ordinal (days compare and add as ints)."""
    return dt.date.fromisoformat(text).toordinal()


def _iso(day: int) -> str:
    return dt.date.fromordinal(day).isoformat()


def _is_iso_day(value: Any) -> bool:
    try:
        _day(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclasses.dataclass(frozen=True)
class OutcomesConfig(Config):
    """What the outcome job reads and writes, and how it counts.

    Attributes:
        served_path: the served-list log (JSON lines, plain or gzip): a glob of files each
            inside a `day=YYYY-MM-DD` folder (the day the lists were served), or the folder
            holding those day folders (read as `<served_path>/day=*/*.jsonl`).
        examples_dir: ingestion's examples, `<examples_dir>/day=YYYY-MM-DD/*.tfrecord.gz`.
        output_path: the per-user rows (one JSON lines file, `recs abtest --outcomes`); the
            dead letters and the report go beside it (`dead_letter_path`, `report_path`).
        experiment: the experiment's name, as the served lists' `experiments` name it.
        start_day: first day of the experiment window (ISO date).
        end_day: last day of the window (ISO date, inclusive).
        subscriptions_dir: optional renewal decisions,
            `<subscriptions_dir>/day=YYYY-MM-DD/*.jsonl`, each {"user_id", "ts", "event":
            "renewed" | "cancelled"}; "" = none (every `renewed` is null).
        pre_period_days: length of the covariate window [start - pre_period_days, start).
        return_horizon_days: a user returned when active within this many days after the
            first exposure.
        attribution_days: a served title counts as engaged when engaged on the day it was
            served or up to this many days later.
        delivery_slack_days: how many days after a record's session day its example may be
            filed (ingestion files a session under its delivery day); example partitions are
            read this much beyond both ends of what the windows need.
        daily: also write the rows as they stood at each day of the window to
            `daily_path` (`recs abtest --sequential` reads them).
        beam_args: Beam pipeline options passed through unchanged, e.g.
            `("--direct_running_mode=multi_processing", "--direct_num_workers=2")` or a
            Dataflow/Flink/Spark runner's (`transforms.runners.BeamRunnerConfig.args()`).
    """

    served_path: str
    examples_dir: str
    output_path: str
    experiment: str
    start_day: str
    end_day: str
    subscriptions_dir: str = ""
    pre_period_days: int = 7
    return_horizon_days: int = 7
    attribution_days: int = 1
    delivery_slack_days: int = 1
    daily: bool = False
    beam_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("served_path", "examples_dir", "output_path", "experiment"):
            value = getattr(self, name)
            require(isinstance(value, str) and bool(value), name, "a non-empty string", value)
        require(isinstance(self.subscriptions_dir, str), "subscriptions_dir",
                "a folder of day partitions, or '' for none", self.subscriptions_dir)
        require(not self.output_path.endswith("/"), "output_path",
                "a file path such as 'outcomes/ranker-v2.jsonl', not a folder",
                self.output_path)
        for name in ("start_day", "end_day"):
            require(_is_iso_day(getattr(self, name)), name, "an ISO date such as '2026-01-08'",
                    getattr(self, name))
        require(self.start_day <= self.end_day, "end_day", f">= start_day ({self.start_day})",
                self.end_day)
        require(self.pre_period_days >= 0, "pre_period_days", ">= 0", self.pre_period_days)
        require(self.return_horizon_days > 0, "return_horizon_days", "> 0",
                self.return_horizon_days)
        require(self.attribution_days >= 0, "attribution_days", ">= 0", self.attribution_days)
        require(self.delivery_slack_days >= 0, "delivery_slack_days", ">= 0",
                self.delivery_slack_days)
        require(isinstance(self.daily, bool), "daily", "True or False", self.daily)
        require(isinstance(self.beam_args, tuple)
                and all(isinstance(arg, str) for arg in self.beam_args), "beam_args",
                "a tuple of strings such as ('--direct_num_workers=2',)", self.beam_args)

    @property
    def start(self) -> int:
        return _day(self.start_day)

    @property
    def end(self) -> int:
        return _day(self.end_day)

    @property
    def _base(self) -> str:
        if self.output_path.endswith(".jsonl"):
            return self.output_path[:-len(".jsonl")]
        return self.output_path

    @property
    def dead_letter_path(self) -> str:
        return f"{self._base}.dead_letter.jsonl"

    @property
    def report_path(self) -> str:
        return f"{self._base}.report.json"

    @property
    def daily_path(self) -> str:
        """The daily rows' file (written when `daily`)."""
        return O.daily_path(self.output_path)


@dataclasses.dataclass(frozen=True)
class OutcomesReport:
    """Counters of one outcome run, also written as JSON to `report_path`.

    Attributes:
        users_by_arm: users with an output row, per arm.
        dead_lettered: dead letters per reason, every input together (`arm_changed` counts
            users, every other reason lines or records).
        dead_lettered_by_input: the same per input (`served`, `records`, `subscriptions`).
        read: what was read: `served_files`, `served_lines`, `example_files`, `records`,
            `subscription_files`, `subscription_lines` (blank lines not included).
        skipped: what was read and is not a fault but has no part in the rows:
            `blank_lines`, `records_outside_window` (session days outside [start -
            pre_period_days, end]), `users_not_exposed`, `files_outside_window` (partitions
            not read).
        output_path, dead_letter_path, report_path: what the run wrote.
        daily_path: the daily rows' file; "" when the run wrote none.
        daily_rows: daily rows written (every user's, every day).
    """

    users_by_arm: dict[str, int]
    dead_lettered: dict[str, int]
    dead_lettered_by_input: dict[str, dict[str, int]]
    read: dict[str, int]
    skipped: dict[str, int]
    output_path: str
    dead_letter_path: str
    report_path: str
    daily_path: str = ""
    daily_rows: int = 0

    @property
    def users(self) -> int:
        return sum(self.users_by_arm.values())

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "users": self.users}

    def summary(self) -> str:
        """The counters as a short table, for the end of a run."""
        def line(label: str, count: int) -> str:
            return f"{label:<32}{count:>10,}"

        lines = [line("users with a row", self.users)]
        lines += [line(f"  arm {arm}", count) for arm, count in self.users_by_arm.items()]
        lines += [line(f"read {name}", count) for name, count in self.read.items()]
        lines.append(line("dead-lettered", sum(self.dead_lettered.values())))
        lines += [line(f"  {reason}", count) for reason, count in self.dead_lettered.items()]
        lines += [line(f"skipped {name}", count) for name, count in self.skipped.items()]
        if self.daily_path:
            lines.append(line("daily rows", self.daily_rows))
        lines += [f"rows          {self.output_path}",
                  f"dead letters  {self.dead_letter_path}",
                  f"report        {self.report_path}"]
        if self.daily_path:
            lines.append(f"daily rows    {self.daily_path}")
        return "\n".join(lines)


def _count(name: str, value: int = 1) -> None:
    beam.metrics.Metrics.counter(_NAMESPACE, name).inc(value)


def _dead(source: str, reason: str, detail: str, record: bytes | None = None,
          file: str = "", line: int = 0, **context: Any) -> beam.pvalue.TaggedOutput:
    """A dead letter (counted by input and reason): why, where from, and the bytes as read."""
    _count(f"dead_letter.{source}.{reason}")
    letter = DeadLetter(reason, source, detail, file, line, record, context)
    return beam.pvalue.TaggedOutput(_DEAD_LETTER, letter.to_json())


def _failure(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def parse_subscription(row: dict[str, Any]) -> tuple[str, int, int]:
    """A subscription line's object -> (user id, time stamp, renewed 1 / cancelled 0).

    Raises:
        Refused: a missing or wrongly typed field, or an event other than "renewed" and
            "cancelled" (`unknown_subscription_event`).
    """
    user = require_id(row, USER_ID)
    ts = row.get(TS)
    if ts is None:
        raise Refused(Reason.MISSING_FIELD, TS)
    if type(ts) is not int:  # bool is an int subclass; floats are not seconds here.
        raise Refused(Reason.WRONG_TYPE, f"{TS}={ts!r}")
    event = row.get(EVENT)
    if event is None:
        raise Refused(Reason.MISSING_FIELD, EVENT)
    if not isinstance(event, str):
        raise Refused(Reason.WRONG_TYPE, f"{EVENT}={event!r}")
    if event not in SUBSCRIPTION_EVENTS:
        raise Refused(Reason.UNKNOWN_SUBSCRIPTION_EVENT, f"{EVENT}={event!r}")
    return user, ts, SUBSCRIPTION_EVENTS[event]


def _served_value(row: dict[str, Any], day: int, index: int, number: int,
                  experiment: str) -> tuple[str, tuple]:
    user, arm, titles = read_exposure(row, experiment)
    # A list outside the experiment matters only as activity (for `returned`): its titles
    # need not cross the shuffle.
    return user, (day, arm, titles if arm is not None else (), index, number)


def _subscription_value(row: dict[str, Any], day: int, index: int, number: int
                        ) -> tuple[str, tuple]:
    user, ts, renewed = parse_subscription(row)
    return user, (day, ts, index, number, renewed)


class ReadLines(beam.DoFn):
    """Index of a day-partitioned JSON-lines file -> (user id, value) per line `parse` takes,
    and a dead letter for every other line (or for what of the file could not be read).

    Args:
        source: the input's name (`served` or `subscriptions`), for counters and dead letters.
        files: (day ordinal, path) of the input's files.
        parse: (object, day, file index, line number) -> (user id, value); raises `Refused`.
    """

    def __init__(self, source: str, files: list[tuple[int, str]],
                 parse: Callable[[dict[str, Any], int, int, int], tuple[str, tuple]]) -> None:
        self._source = source
        self._files = files
        self._parse = parse

    def process(self, index: int) -> Iterator[Any]:
        day, path = self._files[index]
        read = blank = number = 0
        try:
            with open_lines(path) as handle:
                for number, (line, length) in enumerate(bounded_lines(handle, MAX_LINE_BYTES), 1):
                    if not line.strip():
                        blank += 1
                        continue
                    read += 1
                    if length > MAX_LINE_BYTES:
                        yield _dead(self._source, Reason.OVERSIZED,
                                    f"{length} bytes > {MAX_LINE_BYTES}; first bytes kept",
                                    line, path, number)
                        continue
                    yield self._line(line, day, index, number, path)
        except (OSError, EOFError, ValueError, zlib.error) as error:
            # A file that cannot be opened, is not JSON lines, or breaks half-way (a truncated
            # gzip): one dead letter stands for what was not read.
            read += 1
            yield _dead(self._source, Reason.UNREADABLE_FILE,
                        f"after line {number}: {_failure(error)}", b"", path, number + 1)
        _count(f"read.{self._source}_lines", read)
        if blank:
            _count("skipped.blank_lines", blank)

    def _line(self, line: bytes, day: int, index: int, number: int, path: str) -> Any:
        try:
            return self._parse(json_object(line), day, index, number)
        except Refused as refused:
            return _dead(self._source, refused.reason, refused.detail, line, path, number)
        except Exception as error:  # noqa: BLE001  (one line must not stop the job)
            return _dead(self._source, Reason.PROCESSING_ERROR, _failure(error), line, path,
                         number)


class _CountingDoFn(beam.DoFn):
    """Counts into `self._counts` and reports them once per bundle: a metric update per
    record costs more than parsing it."""

    _counts: collections.Counter[str]

    def start_bundle(self) -> None:
        self._counts.clear()

    def finish_bundle(self) -> None:
        for name, count in self._counts.items():
            _count(name, count)


class ParseRecords(_CountingDoFn):
    """(file, serialized tf.Example) -> (user id, (session day, title, watch seconds,
    engaged)) for the records whose session day is in [first_day, last_day]; a record that
    does not parse, or lacks one of the fields read, is dead-lettered.

    Args:
        first_day, last_day: the days any row reads (ordinals, inclusive).
    """

    def __init__(self, first_day: int, last_day: int) -> None:
        self._first = first_day
        self._last = last_day
        self._counts: collections.Counter[str] = collections.Counter()

    def process(self, element: tuple[str, bytes]) -> Iterator[Any]:
        path, serialized = element
        self._counts["read.records"] += 1
        try:
            user, title, ts, watch, label = _record_values(serialized)
        except Refused as refused:
            yield _dead(RECORDS, refused.reason, refused.detail, serialized, path)
            return
        except Exception as error:  # noqa: BLE001  (one record must not stop the job)
            yield _dead(RECORDS, Reason.PROCESSING_ERROR, _failure(error), serialized, path)
            return
        day = _EPOCH + ts // 86_400
        if not self._first <= day <= self._last:
            self._counts["skipped.records_outside_window"] += 1
            return
        yield user, (day, title, watch, label)


def _record_values(serialized: bytes) -> tuple[str, str, int, float, int]:
    """The (user, title, session start, watch seconds, engaged) of an interaction record.

    Raises:
        Refused: not a tf.Example, a field missing or not of the contract's type, an id not
            UTF-8, or a watch time that is negative or not finite.
    """
    try:
        example = tf.train.Example.FromString(serialized)
    except DecodeError as error:
        raise Refused(Reason.UNDECODABLE, f"not a tf.Example: {error}") from error
    features = example.features.feature
    values = []
    for key in _RECORD_KEYS:
        kind = F.RAW_FEATURE_TYPES[key]
        held = (features[key].bytes_list.value if kind == F.STRING else
                features[key].int64_list.value if kind == F.INT64 else
                features[key].float_list.value) if key in features else ()
        if len(held) != 1:
            raise Refused(Reason.MISSING_FIELD, f"{key} ({kind}): {len(held)} values")
        values.append(held[0])
    user, title, ts, watch, label = values
    try:
        user, title = user.decode("utf-8"), title.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refused(Reason.UNDECODABLE, str(error)) from error
    watch = float(watch)
    if watch != watch or watch in (float("inf"), float("-inf")):
        raise Refused(Reason.NON_FINITE_NUMBER, f"{F.WATCH_SECONDS}={watch}")
    if watch < 0:
        raise Refused(Reason.NEGATIVE_WATCH_TIME, f"{F.WATCH_SECONDS}={watch}")
    return user, title, int(ts), watch, int(label)


def user_outcome(config: OutcomesConfig, served: Iterable[tuple], records: Iterable[tuple],
                 subscriptions: Iterable[tuple] | None, as_of: int | None = None
                 ) -> dict[str, Any] | list[tuple] | None:
    """One user's outcome row, from their served lists, records and decisions in the window.

    Args:
        config: the windows and rules.
        served: (day, arm or None, titles, file index, line) per served list.
        records: (session day, title, watch seconds, engaged) per record.
        subscriptions: (day, time stamp, file index, line, renewed) per decision; None
            without a subscriptions input.
        as_of: the last day the row sees (an ordinal in [start, end]); default `end`. Every
            input is cut at this day: the row a run with `end_day` = this day would write.

    Returns:
        The row (without `user_id`); None for a user not exposed by `as_of`; for a user
        exposed to more than one arm, their exposures (day, arm, file index, line), sorted.
    """
    end = config.end if as_of is None else as_of
    served = [value for value in served if value[0] <= end]
    exposures = [value for value in served if value[1] is not None]
    if not exposures:
        return None
    arms = {arm for _, arm, _, _, _ in exposures}
    if len(arms) > 1:
        return sorted((day, arm, index, line) for day, arm, _, index, line in exposures)
    first = min(day for day, _, _, _, _ in exposures)
    served_on: dict[str, set[int]] = {}
    for day, _, titles, _, _ in exposures:
        for title in titles:
            served_on.setdefault(title, set()).add(day)
    records = [value for value in records if value[0] <= end]
    engaged = {title for day, title, _, label in records if label == 1
               and any(s <= day <= s + config.attribution_days
                       for s in served_on.get(title, ()))}
    pre_start = config.start - config.pre_period_days
    horizon = first + config.return_horizon_days
    returned = None
    if horizon <= end:
        active = {day for day, _, _, _ in records} | {day for day, _, _, _, _ in served}
        returned = int(any(first < day <= horizon for day in active))
    renewed = churned = days_observed = None
    if subscriptions is not None:
        decisions = sorted(value for value in subscriptions if first <= value[0] <= end)
        later = [value for value in decisions if value[0] > first]
        if later:
            renewed = later[0][-1]
        cancelled = [value[0] for value in decisions if value[-1] == 0]
        churned = int(bool(cancelled))
        days_observed = (cancelled[0] if cancelled else end) - first
    return {
        O.ARM: arms.pop(),
        O.FIRST_EXPOSURE_DAY: _iso(first),
        O.LISTS_SERVED: len(exposures),
        O.TITLES_SERVED: len(served_on),
        O.ENGAGED: int(bool(engaged)),
        O.SERVED_ENGAGED: len(engaged),
        O.WATCH_SECONDS: float(sum(w for day, _, w, _ in records if first <= day)),
        O.PRE_WATCH_SECONDS: float(sum(w for day, _, w, _ in records
                                       if pre_start <= day < config.start)),
        O.RETURNED: returned,
        O.RENEWED: renewed,
        O.DAYS_OBSERVED: days_observed,
        O.CHURNED: churned,
    }


def daily_outcomes(config: OutcomesConfig, served: Iterable[tuple], records: Iterable[tuple],
                   subscriptions: Iterable[tuple] | None) -> Iterator[dict[str, Any]]:
    """The user's rows as they stood at each day from their first exposure to `end`
    (`user_outcome` with `as_of` that day), each with `as_of_day` and `experiment_day`;
    none for the days on which the user's lists name two arms.

    Args:
        config, served, records, subscriptions: as `user_outcome`'s.
    """
    served, records = list(served), list(records)
    subscriptions = None if subscriptions is None else list(subscriptions)
    days = [value[0] for value in served if value[1] is not None]
    for day in range(min(days, default=config.end + 1), config.end + 1):
        outcome = user_outcome(config, served, records, subscriptions, as_of=day)
        if isinstance(outcome, dict):
            yield {O.AS_OF_DAY: _iso(day), O.EXPERIMENT_DAY: day - config.start + 1, **outcome}


class UserOutcomes(_CountingDoFn):
    """(user id, {input: values}) -> the user's outcome row as JSON, and with `daily` their
    daily rows (tagged `_DAILY`); a dead letter for a user exposed to two arms, or whose
    outcome raised.

    Args:
        config: the windows and rules.
        served_files: (day, path) of the served files, as `ReadLines` indexed them.
    """

    def __init__(self, config: OutcomesConfig, served_files: list[tuple[int, str]]) -> None:
        self._config = config
        self._served_files = served_files
        self._subscriptions = bool(config.subscriptions_dir)
        self._counts: collections.Counter[str] = collections.Counter()

    def process(self, element: tuple[str, dict[str, Iterable[tuple]]]) -> Iterator[Any]:
        user, grouped = element
        served, records = list(grouped.get(SERVED, ())), list(grouped.get(RECORDS, ()))
        decisions = list(grouped.get(SUBSCRIPTIONS, ())) if self._subscriptions else None
        try:
            outcome = user_outcome(self._config, served, records, decisions)
            daily = (list(daily_outcomes(self._config, served, records, decisions))
                     if self._config.daily else [])
        except Exception as error:  # noqa: BLE001  (one user must not stop the job)
            yield _dead(SERVED, Reason.PROCESSING_ERROR, _failure(error), user_id=user)
            return
        if daily:
            self._counts["daily_rows"] += len(daily)
        for row in daily:
            yield beam.pvalue.TaggedOutput(_DAILY, json.dumps({O.USER_ID: user, **row}))
        if outcome is None:
            self._counts["skipped.users_not_exposed"] += 1
        elif isinstance(outcome, list):
            arms = sorted({arm for _, arm, _, _ in outcome})
            yield _dead(SERVED, Reason.ARM_CHANGED,
                        f"lists name arms {arms} of experiment {self._config.experiment!r}",
                        user_id=user, exposures=[
                            {"day": _iso(day), "arm": arm,
                             "file": self._served_files[index][1], "line": line}
                            for day, arm, index, line in outcome])
        else:
            self._counts[f"arm.{outcome['arm']}"] += 1
            yield json.dumps({O.USER_ID: user, **outcome})


def _partitions(pattern: str, argument: str, layout: str) -> list[tuple[int, str]]:
    """(day ordinal, path) of every file `pattern` matches, by day then path; the day is the
    last `day=YYYY-MM-DD` folder of the path.

    Raises:
        ValueError: a matched file is not inside a day partition.
    """
    found = []
    for path in tf.io.gfile.glob(pattern):
        days = _DAY_PARTITION.findall(path)
        if not days or not _is_iso_day(days[-1]):
            raise ValueError(f"{argument}: file {path!r} is not inside a day partition; "
                             f"expected {layout}, the folder named for the day.")
        found.append((_day(days[-1]), path))
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """The files a run reads (day, path), and how many matched outside what it needs."""

    served: list[tuple[int, str]]
    examples: list[tuple[int, str]]
    subscriptions: list[tuple[int, str]] | None
    outside_window: int


def _inputs(config: OutcomesConfig) -> _Inputs:
    """The files of each input inside the days the rows need.

    Raises:
        ValueError: an input (served lists, examples, or given subscriptions) matches no
            file, a file is outside a day partition, or no served-list partition falls in
            the window.
    """
    served_pattern = config.served_path
    if tf.io.gfile.isdir(served_pattern):
        served_pattern = f"{served_pattern.rstrip('/')}/{day_partition('*')}/*.jsonl"
    served_layout = _LAYOUT.format(argument="<served_path>", suffix=".jsonl")
    served = _partitions(served_pattern, "served_path", served_layout)
    if not served:
        raise ValueError(f"served_path {config.served_path!r} matches no served-list files; "
                         f"expected {served_layout} (a glob of them, or their folder).")
    start, end = config.start, config.end
    in_window = [(day, path) for day, path in served if start <= day <= end]
    if not in_window:
        raise ValueError(
            f"served_path {config.served_path!r} holds no day partition in the window "
            f"[{config.start_day}, {config.end_day}]; it holds {_iso(served[0][0])} to "
            f"{_iso(served[-1][0])}. Check start_day and end_day.")
    outside = len(served) - len(in_window)

    def read(directory: str, argument: str, suffix: str, first: int, last: int
             ) -> list[tuple[int, str]]:
        nonlocal outside
        layout = _LAYOUT.format(argument=f"<{argument}>", suffix=suffix)
        files = _partitions(f"{directory.rstrip('/')}/{day_partition('*')}/*{suffix}", argument,
                            layout)
        if not files:
            raise ValueError(f"{argument} {directory!r} holds no files; expected {layout}.")
        kept = [(day, path) for day, path in files if first <= day <= last]
        outside += len(files) - len(kept)
        return kept

    slack = config.delivery_slack_days
    examples = read(config.examples_dir, "examples_dir", ".tfrecord.gz",
                    start - config.pre_period_days - slack, end + slack)
    subscriptions = (read(config.subscriptions_dir, "subscriptions_dir", ".jsonl", start, end)
                     if config.subscriptions_dir else None)
    return _Inputs(in_window, examples, subscriptions, outside)


def _write_single(lines: beam.PCollection, label: str, path: str) -> None:
    """Writes `lines` to exactly `path` (one file, written even when empty)."""
    _ = lines | label >> beam.io.WriteToText(path, shard_name_template="", num_shards=1)


def build_pipeline(pipeline: beam.Pipeline, config: OutcomesConfig) -> _Inputs:
    """Adds the outcome transforms to `pipeline` (runner-agnostic).

    Returns:
        The files the pipeline reads.

    Raises:
        ValueError: see `_inputs`.
    """
    inputs = _inputs(config)
    served = (pipeline
              | "ServedFiles" >> beam.Create(range(len(inputs.served)))
              | "SpreadServedFiles" >> beam.Reshuffle()
              | "ReadServed" >> beam.ParDo(ReadLines(
                  SERVED, inputs.served,
                  functools.partial(_served_value, experiment=config.experiment))
              ).with_outputs(_DEAD_LETTER, main="values"))
    records = (pipeline
               | "ExampleFiles" >> beam.Create([path for _, path in inputs.examples])
               | "ReadExamples" >> beam.io.ReadAllFromTFRecord(
                   compression_type=CompressionTypes.AUTO, with_filename=True)
               | "ParseRecords" >> beam.ParDo(ParseRecords(
                   config.start - config.pre_period_days, config.end)
               ).with_outputs(_DEAD_LETTER, main="values"))
    grouped = {SERVED: served.values, RECORDS: records.values}
    dead = [served[_DEAD_LETTER], records[_DEAD_LETTER]]
    if inputs.subscriptions is not None:
        decisions = (pipeline
                     | "SubscriptionFiles" >> beam.Create(range(len(inputs.subscriptions)))
                     | "SpreadSubscriptionFiles" >> beam.Reshuffle()
                     | "ReadSubscriptions" >> beam.ParDo(ReadLines(
                         SUBSCRIPTIONS, inputs.subscriptions, _subscription_value)
                     ).with_outputs(_DEAD_LETTER, main="values"))
        grouped[SUBSCRIPTIONS] = decisions.values
        dead.append(decisions[_DEAD_LETTER])
    outcomes = (grouped
                | "ByUser" >> beam.CoGroupByKey()
                | "UserOutcomes" >> beam.ParDo(UserOutcomes(config, inputs.served)
                                               ).with_outputs(_DEAD_LETTER, _DAILY,
                                                              main="rows"))
    dead.append(outcomes[_DEAD_LETTER])
    _write_single(outcomes.rows, "WriteOutcomes", config.output_path)
    if config.daily:
        _write_single(outcomes[_DAILY], "WriteDailyOutcomes", config.daily_path)
    _write_single(tuple(dead) | "MergeDeadLetters" >> beam.Flatten(), "WriteDeadLetters",
                  config.dead_letter_path)
    return inputs


def run_outcomes(config: OutcomesConfig) -> OutcomesReport:
    """Runs the outcome job to completion, writes its report, and returns it.

    Args:
        config: inputs, window, rules, output and Beam options.

    Returns:
        The run's counters and the paths it wrote.

    Raises:
        ValueError: an input matches no file or a file outside a day partition, or no
            served-list partition falls in the window.

    Example:
        report = run_outcomes(OutcomesConfig(
            served_path="logs/served", examples_dir="ingested/examples",
            output_path="outcomes/ranker-v2.jsonl", experiment="ranker-v2",
            start_day="2026-01-08", end_day="2026-01-21"))
        # then: recs abtest --outcomes outcomes/ranker-v2.jsonl --experiment ranker-v2
    """
    pipeline = beam.Pipeline(options=PipelineOptions(list(config.beam_args)))
    inputs = build_pipeline(pipeline, config)
    result = pipeline.run()
    result.wait_until_finish()
    report = _report(result, config, inputs)
    directory = posixpath.dirname(report.report_path)
    if directory:
        tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(report.report_path, "w") as handle:
        handle.write(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _report(result: beam.runners.runner.PipelineResult, config: OutcomesConfig,
            inputs: _Inputs) -> OutcomesReport:
    totals = counters(result, _NAMESPACE)
    prefixed = functools.partial(under, totals)

    by_input: dict[str, dict[str, int]] = {}
    by_reason: dict[str, int] = {}
    for name, count in prefixed("dead_letter.").items():
        source, reason = name.split(".", 1)
        by_input.setdefault(source, {})[reason] = count
        by_reason[reason] = by_reason.get(reason, 0) + count
    counted = prefixed("read.")
    read = {"served_files": len(inputs.served), "served_lines": counted.get("served_lines", 0),
            "example_files": len(inputs.examples), "records": counted.get("records", 0)}
    if inputs.subscriptions is not None:
        read["subscription_files"] = len(inputs.subscriptions)
        read["subscription_lines"] = counted.get("subscriptions_lines", 0)
    skipped_counts = prefixed("skipped.")
    skipped = {name: skipped_counts.get(name, 0) for name in
               ("blank_lines", "records_outside_window", "users_not_exposed")}
    skipped["files_outside_window"] = inputs.outside_window
    return OutcomesReport(users_by_arm=prefixed("arm."), dead_lettered=dict(sorted(
        by_reason.items())), dead_lettered_by_input=by_input, read=read, skipped=skipped,
        output_path=config.output_path, dead_letter_path=config.dead_letter_path,
        report_path=config.report_path, daily_path=config.daily_path if config.daily else "",
        daily_rows=totals.get("daily_rows", 0))
