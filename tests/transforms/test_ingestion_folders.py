"""Ingestion against odd raw folders: what it does not read is counted under a reason, written
as a dead letter naming its path, and the report never says balanced when something was not
read; a missing profile or catalogue file stops it before the pipeline starts."""

import json
import os
import pathlib

import pytest

from recs.contract.dead_letters import EVENTS, read_dead_letters
from recs.contract.layout import RAW_FOLDER_LAYOUT, RawLayout, SkipReason
from tests.transforms.test_ingestion import T0, TITLES, USERS, _event, _records
from transforms.ingestion import IngestionConfig, run_ingestion
from transforms.ingestion_files import list_files

# A FIFO would block its reader for ever: a hang fails here instead of stopping the suite.
pytestmark = pytest.mark.timeout(300)

DAY = "2026-01-05"
SECRET = "SECRET-OUTSIDE-RAW"


def _lines(*events: str) -> str:
    return "".join(event + "\n" for event in events)


def _raw(root: pathlib.Path) -> RawLayout:
    """A raw folder with one good day file: a play of t1 (600 of 1000 s)."""
    raw = RawLayout(root / "raw")
    raw.events_day(DAY).mkdir(parents=True)
    raw.users.write_text(_lines(*map(json.dumps, USERS)))
    raw.titles.write_text(_lines(*map(json.dumps, TITLES)))
    (raw.events_day(DAY) / "part-0.jsonl").write_text(_lines(
        _event("g1", "play_start", ts=T0),
        _event("g2", "play_stop", ts=T0 + 600, watch_seconds=600.0)))
    return raw


def _odd(root: pathlib.Path) -> RawLayout:
    """The good day, one odd entry of each kind, and one link inside raw/ that is read."""
    raw = _raw(root)
    day = raw.events_day(DAY)
    impossible = raw.events / "day=2026-13-45"          # not_a_day: crashed the job
    backup = raw.events / "day=2026-01-05.bak"          # not_a_day: was read as 2026-01-05
    for folder in (impossible, backup):
        folder.mkdir()
        (folder / "part-0.jsonl").write_text(_lines(_event(f"x-{folder.name}", "like",
                                                           ts=T0 + 900)))
    (raw.events / "stray.jsonl").write_text(_lines(_event("s1", "like")))   # misplaced_file
    os.mkfifo(day / "pipe.jsonl")                       # not_a_regular_file: hung the job
    (day / "sub").mkdir()                               # nested_folder: 10 events were lost
    (day / "sub" / "part-0.jsonl").write_text(_lines(*[
        _event(f"n{i}", "like", ts=T0 + 2_000 + i) for i in range(10)]))
    (day / "loop.jsonl").symlink_to("loop.jsonl")       # link_loop
    (day / "dangling.jsonl").symlink_to("missing.jsonl")  # dangling_link
    secret = root / "elsewhere" / "secret.jsonl"        # link_outside_raw: was copied into
    secret.parent.mkdir()                               # the dead letters
    secret.write_text(f"{SECRET} not an event\n")
    (day / "outside.jsonl").symlink_to(secret)
    (raw.events / "day=2026-01-06").symlink_to(secret.parent, target_is_directory=True)
    (day / ".part-1.jsonl.tmp").write_text(_lines(_event("h1", "like")))   # hidden
    shared = raw.root / "shared" / "part-0.jsonl"       # inside raw/: followed and read
    shared.parent.mkdir()
    shared.write_text(_lines(_event("l1", "like", "t2", ts=T0 + 20_000)))
    (day / "shared.jsonl").symlink_to(os.path.relpath(shared, day))
    return raw


UNREAD = {SkipReason.NOT_A_DAY: 2, SkipReason.MISPLACED_FILE: 1,
          SkipReason.NOT_A_REGULAR_FILE: 1, SkipReason.NESTED_FOLDER: 1,
          SkipReason.LINK_LOOP: 1, SkipReason.DANGLING_LINK: 1,
          SkipReason.LINK_OUTSIDE_RAW: 2, SkipReason.HIDDEN: 1}


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    raw = _odd(root)
    config = IngestionConfig.for_raw(raw.root, root / "out")
    return raw, config, run_ingestion(config)


def _letters(config: IngestionConfig) -> dict[str, list]:
    letters: dict[str, list] = {}
    for letter in read_dead_letters(config.dead_letter_dir):
        letters.setdefault(letter.reason, []).append(letter)
    return letters


def test_every_entry_not_read_is_counted_under_its_reason(odd):
    _, _, report = odd
    assert report.skipped == UNREAD
    # What was read balances: the good file's 2 events and the linked file's 1.
    assert (report.events_read, report.events_accepted, report.dead_lettered) == (3, 3, {})
    assert report.lines_balanced and not report.balanced
    assert "NOT BALANCED: 10 files or folders were not read" in report.summary()


def test_each_entry_not_read_is_a_dead_letter_naming_its_path_without_its_bytes(odd):
    raw, config, _ = odd
    letters = _letters(config)
    where = {reason: sorted(os.path.relpath(letter.file, raw.events)
                            for letter in letters[reason]) for reason in UNREAD}
    assert where == {
        SkipReason.NOT_A_DAY: ["day=2026-01-05.bak", "day=2026-13-45"],
        SkipReason.MISPLACED_FILE: ["stray.jsonl"],
        SkipReason.NOT_A_REGULAR_FILE: [f"day={DAY}/pipe.jsonl"],
        SkipReason.NESTED_FOLDER: [f"day={DAY}/sub"],
        SkipReason.LINK_LOOP: [f"day={DAY}/loop.jsonl"],
        SkipReason.DANGLING_LINK: [f"day={DAY}/dangling.jsonl"],
        SkipReason.LINK_OUTSIDE_RAW: [f"day={DAY}/outside.jsonl", "day=2026-01-06"],
        SkipReason.HIDDEN: [f"day={DAY}/.part-1.jsonl.tmp"]}
    unread = [letter for reason in UNREAD for letter in letters[reason]]
    assert all(letter.input == EVENTS and letter.record is None and letter.line == 0
               for letter in unread)
    assert "1 entry inside" in letters[SkipReason.NESTED_FOLDER][0].detail
    assert "FIFO" in letters[SkipReason.NOT_A_REGULAR_FILE][0].detail


def test_an_impossible_day_and_a_backup_folder_are_not_days(odd):
    _, config, report = odd
    # Their events (x-day=...) were neither read nor made a span of their own.
    assert report.records_per_span == {DAY: 2}
    assert {record["user_id"] for record in _records(config)} == {b"u1"}


def test_a_link_outside_raw_is_not_followed_and_nothing_of_it_is_copied(odd):
    _, config, report = odd
    written = "".join(path.read_text() for path in
                      pathlib.Path(config.dead_letter_dir).glob("*.jsonl"))
    assert SECRET not in written
    assert not any("secret" in path for path in report.files)


def test_a_link_inside_raw_is_read(odd):
    _, config, report = odd
    assert any(path.endswith("shared.jsonl") for path in report.files)
    liked = [record for record in _records(config) if record["title_id"] == b"t2"]
    assert [record["liked"] for record in liked] == [1]


def test_a_nested_folder_alone_makes_the_report_unbalanced(tmp_path):
    # Before: its 10 events were never read and the report said balanced.
    raw = _raw(tmp_path)
    nested = raw.events_day(DAY) / "late"
    nested.mkdir()
    (nested / "part-0.jsonl").write_text(_lines(*[_event(f"n{i}", "like", ts=T0 + 2_000 + i)
                                                  for i in range(10)]))
    report = run_ingestion(IngestionConfig.for_raw(raw.root, tmp_path / "out"))
    assert report.skipped == {SkipReason.NESTED_FOLDER: 1} and report.events_read == 2
    assert not report.balanced and report.lines_balanced


def test_no_readable_day_stops_before_the_pipeline_with_what_was_skipped(tmp_path):
    raw = _raw(tmp_path)
    raw.events_day(DAY).rename(raw.events / "day=2026-13-45")
    with pytest.raises(ValueError, match=r"names no events file inside a day partition.*"
                                         r"'not_a_day': 1.*day=YYYY-MM-DD"):
        run_ingestion(IngestionConfig.for_raw(raw.root, tmp_path / "out"))


@pytest.mark.parametrize("table", ["users", "titles"])
@pytest.mark.parametrize("fault", ["missing", "fifo"])
def test_a_missing_profile_or_catalogue_file_is_named_before_the_pipeline_starts(
        tmp_path, table, fault):
    raw = _raw(tmp_path)
    path = getattr(raw, table)
    path.unlink()
    if fault == "fifo":
        os.mkfifo(path)
    config = IngestionConfig.for_raw(raw.root, tmp_path / "out")
    problem = "does not exist" if fault == "missing" else "is not a regular file"
    with pytest.raises(ValueError) as error:
        run_ingestion(config)
    message = str(error.value)
    assert message.startswith(f"{table}_path {str(path)!r} {problem}")
    assert RAW_FOLDER_LAYOUT in message and "ALLOW_IF_WILDCARD" not in message
    assert not (tmp_path / "out").exists()  # Nothing ran.


def test_the_listing_never_opens_and_sorts_what_it_skips(tmp_path):
    # The listing alone, without Beam: the same rules, and the profile updates' glob (no
    # day required, but a day=... folder must be a day).
    raw = _odd(tmp_path)
    events = list_files(raw.events_glob, str(raw.root), days=True)
    assert [os.path.relpath(path, raw.events) for path in events.files] == [
        f"day={DAY}/part-0.jsonl", f"day={DAY}/shared.jsonl"]
    assert [skipped.path for skipped in events.skipped] == sorted(
        skipped.path for skipped in events.skipped)
    # Without raw_dir, only the glob's own folder (events/) is inside: shared/ is outside.
    alone = list_files(raw.events_glob, days=True)
    assert [os.path.relpath(path, raw.events) for path in alone.files] == [
        f"day={DAY}/part-0.jsonl"]
    updates = raw.profile_updates
    (updates / "day=2026-01-05.bak").mkdir(parents=True)
    (updates / "day=2026-01-05.bak" / "part-0.jsonl").write_text("{}\n")
    (updates / DAY).mkdir()
    (updates / DAY / "part-0.jsonl").write_text("{}\n")
    listing = list_files(raw.profile_updates_glob, str(raw.root))
    assert [os.path.relpath(path, updates) for path in listing.files] == [f"{DAY}/part-0.jsonl"]
    assert [(os.path.relpath(s.path, updates), s.reason) for s in listing.skipped] == [
        ("day=2026-01-05.bak", SkipReason.NOT_A_DAY)]
