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

Paths only, nothing is created here (but `RunLayout.clean` removes a run's outputs); no
TensorFlow.
"""

import dataclasses
import pathlib
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


def day_partition(day: str) -> str:
    """The folder of one day's files: `day=YYYY-MM-DD` (the delivery day)."""
    return f"day={day}"


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
           "INGESTION_REPORT", "PROFILE_UPDATES", "REPORTS_DIR", "RawLayout", "RunLayout",
           "SERVED", "SUBSCRIPTIONS", "day_partition", "part_file"]
