"""Rolling training windows over ingestion's day spans."""

import pytest
from apache_beam.io.filesystems import FileSystems

from recs.contract.layout import RunLayout
from tfx_pipeline.windows import day_spans, rolling_window
from tfx_pipeline.workdir import pipeline_config


@pytest.fixture()
def examples(tmp_path):
    root = tmp_path / "examples"
    for day in ("2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"):
        span = root / f"day={day}"
        span.mkdir(parents=True)
        for shard in range(2):
            (span / f"interactions-{shard}.tfrecord.gz").write_bytes(f"{day}/{shard}".encode())
    (root / "snapshot-notes").mkdir()  # Not a day span: ignored.
    return root


def test_window_holds_the_newest_spans_and_beam_finds_their_files(examples, tmp_path):
    window = rolling_window(str(examples), str(tmp_path / "windows"), 2)
    assert window == str(tmp_path / "windows" / "2026-01-07_2026-01-08")
    assert day_spans(window) == ["day=2026-01-07", "day=2026-01-08"]
    # ImportExampleGen reads through Beam: its matcher must see the files.
    matched = FileSystems.match([f"{window}/*/*.tfrecord.gz"])[0].metadata_list
    assert sorted(open(m.path, "rb").read() for m in matched) == [
        b"2026-01-07/0", b"2026-01-07/1", b"2026-01-08/0", b"2026-01-08/1"]


def test_window_ends_at_a_given_day_and_takes_what_exists(examples, tmp_path):
    window = rolling_window(str(examples), str(tmp_path / "w"), 3, last_day="2026-01-06")
    assert day_spans(window) == ["day=2026-01-05", "day=2026-01-06"]
    again = rolling_window(str(examples), str(tmp_path / "w"), 3, last_day="2026-01-06")
    assert again == window  # Rebuilding a window is harmless.


@pytest.mark.parametrize("kwargs, message", [
    ({"num_spans": 0}, "num_spans must be >= 1"),
    ({"num_spans": 2, "last_day": "2026-02-01"},
     "no span for last_day '2026-02-01'.*from day=2026-01-05 to day=2026-01-08"),
])
def test_bad_windows_are_refused(examples, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        rolling_window(str(examples), str(tmp_path / "w"), **kwargs)


def test_no_spans_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no day spans .* run ingestion first"):
        rolling_window(str(tmp_path / "missing"), str(tmp_path / "w"), 3)


def test_pipeline_config_takes_the_window_as_its_examples(examples, tmp_path):
    window = rolling_window(str(examples), str(tmp_path / "w"), 2)
    config = pipeline_config(RunLayout(tmp_path), examples_dir=window)
    assert config.examples_dir == window and config.metadata_path.endswith("metadata.db")


def test_pipeline_command_compiles_a_window(examples, tmp_path):
    from recs_cli.main import main

    workdir = RunLayout(tmp_path / "work")
    workdir.ingested.mkdir(parents=True)
    examples.rename(workdir.ingested / "examples")
    spec = tmp_path / "spec.json"
    assert main(["pipeline", "--workdir", str(workdir.root), "--window-spans", "3",
                 "--kubeflow-out", str(spec)]) in (0, None)
    # ImportExampleGen's input_base is the window of the three newest spans.
    assert "windows/2026-01-06_2026-01-08" in spec.read_text()
