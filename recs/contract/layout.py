"""Where a run's files are: the folders every part of a run reads and writes, named once.

A run's directory (`recs demo`, `recs pipeline`, `recs serve --workdir`, the benchmarks):

    raw/                      the logs, as a daily delivery lays them out (`RawLayout`)
    ingested/                 ingestion's output (`IngestionConfig.output_dir`)
      examples/day=D/*.tfrecord.gz    one span per delivery day
      dead_letter/*.jsonl             refused input (`recs.contract.dead_letters`)
      ingestion_report.json           the counters
    transform/                tf.Transform's output (a world built without TFX)
    windows/                  rolling training windows of the example spans
    pipeline/                 the TFX pipeline root
    metadata.db               ML-Metadata (SQLite)
    serving/<model>/<version>/        the pushed models, TF Serving's layout
    profiles.db               the online profile store (SQLite)
    served.jsonl              the service's served-list log (`recs.contract.served`)
    monitoring/decisions.jsonl, monitoring/reports/    `recs monitor`
    report.html               `recs report`

A raw folder (the generator's, the closed loop's, and a daily log delivery's):

    users.jsonl, titles.jsonl                    profiles and the catalogue
    events/day=D/part-NNNNN.jsonl                raw playback events delivered on day D
    profile_updates/day=D/part-00000.jsonl       profiles that changed on day D
    subscriptions/day=D/part-00000.jsonl         renewal decisions (the closed loop)
    served/day=D/part-00000.jsonl                the served lists of day D (the closed loop)

A day partition is a folder named exactly `day=YYYY-MM-DD` of a real date (`parse_day_partition`);
`day=2026-13-45` and `day=2026-01-05.bak` are not days. What a reader of the day-partitioned
logs leaves unread is counted under a `SkipReason` (ingestion's report and dead letters).

Paths only, nothing is created here (but `RunLayout.clean` removes a run's outputs); no
TensorFlow.
"""

import dataclasses
import datetime as dt
import pathlib
import re
import shutil

RAW, INGESTED, TRANSFORM, WINDOWS, PIPELINE, SERVING, MONITORING = (
    "raw", "ingested", "transform", "windows", "pipeline", "serving", "monitoring")
EXAMPLES, DEAD_LETTERS = "examples", "dead_letter"
"""Ingestion's output folders."""
INGESTION_REPORT = "ingestion_report.json"
METADATA_FILE, STORE_FILE, SERVED_LOG, REPORT_FILE = (
    "metadata.db", "profiles.db", "served.jsonl", "report.html")
DECISIONS_FILE, REPORTS_DIR = "decisions.jsonl", "reports"
"""What `recs monitor` writes in its output folder."""
USERS_FILE, TITLES_FILE = "users.jsonl", "titles.jsonl"
EVENTS, PROFILE_UPDATES, SUBSCRIPTIONS, SERVED = (
    "events", "profile_updates", "subscriptions", "served")
"""A raw folder's day-partitioned logs."""
PART_FILE = "part-{number:05d}.jsonl"
EXAMPLE_FILES = "*/*.tfrecord.gz"
"""Ingestion's example files under `examples/`: every span's."""
DEMO_ROOT = "demo_output"
"""The run directory the commands default to (`recs demo` writes it)."""
RAW_FOLDER_LAYOUT = (
    f"{USERS_FILE} (user profiles) and {TITLES_FILE} (the catalogue), one JSON object per "
    f"line; {EVENTS}/day=YYYY-MM-DD/<files> (playback events, JSON lines or gzip, in a folder "
    f"per delivery day); optional {PROFILE_UPDATES}/day=YYYY-MM-DD/*.jsonl (changed profiles)")
"""A raw folder's layout in one line, for the errors that say what was expected."""
_DAY_PARTITION = re.compile(r"day=([0-9]{4}-[0-9]{2}-[0-9]{2})")


class SkipReason:
    """Why a file or folder under the day-partitioned logs is not read: the keys of
    ingestion's `skipped` counts and the reasons of their dead letters."""

    NOT_A_DAY = "not_a_day"
    """A folder named `day=...` that is not `day=YYYY-MM-DD` of a real date (`day=2026-13-45`,
    `day=2026-01-05.bak`), another folder where day folders are expected, or an events file
    whose folder is not a day."""
    NESTED_FOLDER = "nested_folder"
    """A folder inside a day folder, where files are expected: its content is not read."""
    MISPLACED_FILE = "misplaced_file"
    """A file where folders are expected (an events file beside the day folders)."""
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    """A FIFO, socket or device: never opened (a FIFO would block its reader for ever)."""
    HIDDEN = "hidden"
    """A name starting with a dot, which a glob's `*` does not name (an upload in progress,
    an editor's or a copy tool's temporary file)."""
    DANGLING_LINK = "dangling_link"
    """A symbolic link whose target does not exist or cannot be reached."""
    LINK_LOOP = "link_loop"
    """A symbolic link that leads back to itself."""
    LINK_OUTSIDE_RAW = "link_outside_raw"
    """A symbolic link that leads outside the raw folder: not followed, nothing of it read."""
    UNREADABLE_FOLDER = "unreadable_folder"
    """A folder that cannot be listed (permissions)."""


def day_partition(day: str) -> str:
    """The folder of one day's files: `day=YYYY-MM-DD` (the delivery day)."""
    return f"day={day}"


def parse_day_partition(name: str) -> str | None:
    """The day (`YYYY-MM-DD`) a folder named `day=YYYY-MM-DD` stands for; None for any other
    name: an impossible date (`day=2026-13-45`), a suffix (`day=2026-01-05.bak`), no prefix."""
    match = _DAY_PARTITION.fullmatch(name)
    if match is None:
        return None
    try:
        dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None
    return match.group(1)


def part_file(number: int = 0) -> str:
    """The name of a day partition's `number`-th file: `part-00000.jsonl`."""
    return PART_FILE.format(number=number)


def _path(root: str | pathlib.Path) -> pathlib.Path:
    return root if isinstance(root, pathlib.Path) else pathlib.Path(root)


@dataclasses.dataclass(frozen=True)
class RawLayout:
    """A folder of raw logs (see the module docstring); `root` may be given as a string."""

    root: pathlib.Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", _path(self.root))

    @property
    def users(self) -> pathlib.Path:
        return self.root / USERS_FILE

    @property
    def titles(self) -> pathlib.Path:
        return self.root / TITLES_FILE

    @property
    def events(self) -> pathlib.Path:
        return self.root / EVENTS

    @property
    def profile_updates(self) -> pathlib.Path:
        return self.root / PROFILE_UPDATES

    @property
    def subscriptions(self) -> pathlib.Path:
        return self.root / SUBSCRIPTIONS

    @property
    def served(self) -> pathlib.Path:
        return self.root / SERVED

    @property
    def events_glob(self) -> str:
        """Every events file of every day (plain or gzip, any name)."""
        return str(self.events / "*" / "*")

    @property
    def profile_updates_glob(self) -> str:
        return str(self.profile_updates / "*" / "*.jsonl")

    def events_day(self, day: str) -> pathlib.Path:
        return self.events / day_partition(day)

    def profile_updates_day(self, day: str) -> pathlib.Path:
        return self.profile_updates / day_partition(day)

    def subscriptions_day(self, day: str) -> pathlib.Path:
        return self.subscriptions / day_partition(day)

    def served_day(self, day: str) -> pathlib.Path:
        return self.served / day_partition(day)


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """A run's directory (see the module docstring); `root` may be given as a string."""

    root: pathlib.Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", _path(self.root))

    @property
    def raw(self) -> pathlib.Path:
        return self.root / RAW

    @property
    def raw_logs(self) -> RawLayout:
        """`raw/` as a raw folder: its tables and day partitions."""
        return RawLayout(self.raw)

    @property
    def users(self) -> pathlib.Path:
        return self.raw_logs.users

    @property
    def titles(self) -> pathlib.Path:
        return self.raw_logs.titles

    @property
    def ingested(self) -> pathlib.Path:
        return self.root / INGESTED

    @property
    def examples_dir(self) -> pathlib.Path:
        return self.ingested / EXAMPLES

    @property
    def examples_glob(self) -> str:
        return str(self.examples_dir / EXAMPLE_FILES)

    @property
    def dead_letter_dir(self) -> pathlib.Path:
        return self.ingested / DEAD_LETTERS

    @property
    def ingestion_report(self) -> pathlib.Path:
        return self.ingested / INGESTION_REPORT

    @property
    def transform_dir(self) -> pathlib.Path:
        return self.root / TRANSFORM

    @property
    def windows(self) -> pathlib.Path:
        return self.root / WINDOWS

    @property
    def pipeline_root(self) -> pathlib.Path:
        return self.root / PIPELINE

    @property
    def metadata(self) -> pathlib.Path:
        return self.root / METADATA_FILE

    @property
    def serving(self) -> pathlib.Path:
        return self.root / SERVING

    @property
    def store(self) -> pathlib.Path:
        return self.root / STORE_FILE

    @property
    def served_log(self) -> pathlib.Path:
        return self.root / SERVED_LOG

    @property
    def monitoring(self) -> pathlib.Path:
        return self.root / MONITORING

    @property
    def decisions_log(self) -> pathlib.Path:
        return self.monitoring / DECISIONS_FILE

    @property
    def monitoring_reports(self) -> pathlib.Path:
        return self.monitoring / REPORTS_DIR

    @property
    def report(self) -> pathlib.Path:
        return self.root / REPORT_FILE

    def clean(self) -> None:
        """Removes the outputs of an earlier run, so that runs never mix."""
        for directory in (self.raw, self.ingested, self.pipeline_root, self.serving):
            shutil.rmtree(directory, ignore_errors=True)
        for path in (self.metadata, self.store, self.served_log):
            path.unlink(missing_ok=True)


__all__ = ["DEAD_LETTERS", "DECISIONS_FILE", "EVENTS", "EXAMPLES", "EXAMPLE_FILES",
           "INGESTION_REPORT", "PROFILE_UPDATES", "RAW_FOLDER_LAYOUT", "REPORTS_DIR", "SERVED",
           "SUBSCRIPTIONS", "RawLayout", "RunLayout", "SkipReason", "day_partition",
           "parse_day_partition", "part_file"]
