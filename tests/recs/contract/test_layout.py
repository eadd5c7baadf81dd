"""A run's directory and a raw folder: every path spelt out, the generator writing where the
layout says, and `clean` removing a run's outputs only."""

import pathlib

import pytest

from recs.contract import layout
from recs.contract.layout import RawLayout, RunLayout, day_partition, part_file


def test_a_runs_paths():
    run = RunLayout("/w")  # A string root is taken as a path.
    assert run.root == pathlib.Path("/w")
    paths = {name: str(getattr(run, name)) for name in (
        "raw", "users", "titles", "ingested", "examples_dir", "examples_glob",
        "dead_letter_dir", "ingestion_report", "transform_dir", "windows", "pipeline_root",
        "metadata", "serving", "store", "served_log", "monitoring", "decisions_log",
        "monitoring_reports", "report")}
    assert paths == {
        "raw": "/w/raw", "users": "/w/raw/users.jsonl", "titles": "/w/raw/titles.jsonl",
        "ingested": "/w/ingested", "examples_dir": "/w/ingested/examples",
        "examples_glob": "/w/ingested/examples/*/*.tfrecord.gz",
        "dead_letter_dir": "/w/ingested/dead_letter",
        "ingestion_report": "/w/ingested/ingestion_report.json",
        "transform_dir": "/w/transform", "windows": "/w/windows",
        "pipeline_root": "/w/pipeline", "metadata": "/w/metadata.db", "serving": "/w/serving",
        "store": "/w/profiles.db", "served_log": "/w/served.jsonl",
        "monitoring": "/w/monitoring", "decisions_log": "/w/monitoring/decisions.jsonl",
        "monitoring_reports": "/w/monitoring/reports", "report": "/w/report.html"}
    assert run.raw_logs == RawLayout(pathlib.Path("/w/raw"))


def test_a_raw_folders_paths():
    raw = RawLayout(pathlib.Path("/r"))
    assert (str(raw.users), str(raw.titles)) == ("/r/users.jsonl", "/r/titles.jsonl")
    assert (raw.events_glob, raw.profile_updates_glob) == ("/r/events/*/*",
                                                            "/r/profile_updates/*/*.jsonl")
    day = "2026-01-05"
    assert [str(path) for path in (raw.events_day(day), raw.profile_updates_day(day),
                                   raw.subscriptions_day(day), raw.served_day(day))] == [
        "/r/events/day=2026-01-05", "/r/profile_updates/day=2026-01-05",
        "/r/subscriptions/day=2026-01-05", "/r/served/day=2026-01-05"]
    assert (day_partition(day), part_file(), part_file(12)) == (
        "day=2026-01-05", "part-00000.jsonl", "part-00012.jsonl")


@pytest.mark.parametrize("name", [
    "day=2026-13-45", "day=2026-02-30", "day=2026-01-05.bak", "day=2026-1-5", "2026-01-05",
    "day=2026-01-05 ", "Day=2026-01-05", "day=\u0662026-01-05", "day=0000-01-01", ""])
def test_only_a_real_date_is_a_day_partition(name):
    assert layout.parse_day_partition(name) is None


def test_a_day_partition_reads_back_its_day():
    for day in ("2026-01-05", "2024-02-29", "1999-12-31"):
        assert layout.parse_day_partition(day_partition(day)) == day


def test_the_generator_writes_where_the_layout_says(tmp_path):
    from recs.data.synthetic import GeneratorConfig, generate

    data = generate(GeneratorConfig(num_users=20, num_titles=10, days=2, seed=1), tmp_path)
    raw = RawLayout(tmp_path)
    assert (data.users_path, data.titles_path, data.events_dir, data.profile_updates_dir) == (
        raw.users, raw.titles, raw.events, raw.profile_updates)
    assert (raw.events_day("2026-01-05") / part_file()).is_file()
    assert (raw.profile_updates_day("2026-01-06") / part_file()).is_file()


def test_clean_removes_a_runs_outputs_and_keeps_the_rest(tmp_path):
    run = RunLayout(tmp_path)
    for directory in (run.raw, run.examples_dir, run.pipeline_root, run.serving,
                      run.monitoring):
        directory.mkdir(parents=True)
    for path in (run.metadata, run.store, run.served_log, run.report):
        path.write_text("")
    run.clean()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["monitoring", "report.html"]
    run.clean()  # Nothing left to remove: no error.
