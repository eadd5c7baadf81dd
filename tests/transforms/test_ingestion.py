"""Beam ingestion on hand-written events: values, dead letters and the accounting invariant."""

import json
import pathlib

import pytest
import tensorflow as tf

from recs import features as F
from recs.data import synthetic
from recs.data.synthetic import GeneratorConfig, generate
from transforms.ingestion import IngestionConfig, Reason, _sessionize, run_ingestion

T0 = 1_767_600_000  # 2026-01-05 08:00:00 UTC -> hour 8.
USERS = [{"user_id": "u1", "age": 30, "country": "us", "subscription_tier": "basic",
          "preferred_genres": "drama"}]
TITLES = [{"title_id": "t1", "genre": "drama", "release_year": 2020, "popularity": 3.0,
           "description": "a story", "duration_seconds": 1000},
          {"title_id": "t2", "genre": "comedy", "release_year": 2021, "popularity": 1.0,
           "description": "a laugh", "duration_seconds": 2000}]


def _event(event_id: str, event_type: str, title: str = "t1", ts: int = T0, **extra) -> str:
    return json.dumps({"event_id": event_id, "user_id": extra.pop("user", "u1"),
                       "title_id": title, "event_type": event_type, "ts": ts,
                       "device_type": "tv", **extra})


EVENTS = [
    # Session 1: t1 watched 600 of 1000 s (ratio 0.6 -> engaged), t2 skipped after 30 s.
    _event("e1", "play_start", ts=T0),
    _event("e2", "play_stop", ts=T0 + 600, watch_seconds=600.0),
    _event("e3", "play_start", "t2", ts=T0 + 700),
    _event("e4", "skip", "t2", ts=T0 + 730),
    _event("e5", "play_stop", "t2", ts=T0 + 730, watch_seconds=30.0),
    # Session 2 (gap > 30 min): t1 again, 100 s but liked -> engaged by the like rule.
    _event("e6", "play_start", ts=T0 + 10_000),
    _event("e7", "play_stop", ts=T0 + 10_100, watch_seconds=100.0),
    _event("e8", "like", ts=T0 + 10_110),
    # Faults, one per reason.
    _event("e2", "play_stop", ts=T0 + 600, watch_seconds=600.0),   # duplicate id
    '{"event_id": "e9", "user_id": ',                                # malformed JSON
    "[1, 2]",                                                        # not an object
    json.dumps({"event_id": "e10", "title_id": "t1", "event_type": "like", "ts": T0,
                "device_type": "tv"}),                               # missing user_id
    _event("e11", "like", ts="noon"),                                # wrong type
    _event("e12", "pause"),                                          # unknown event type
    _event("e13", "play_stop", watch_seconds=-5.0),                  # negative watch time
    _event("e14", "like", user="ghost"),                             # unknown user
    _event("e15", "like", "t404", ts=T0 + 20_000),                   # unknown title
    _event("e16", "like", ts=T0 - 3 * 86_400),                       # clock days off
    _event("e17", "play_stop", "t2", ts=T0 + 30_000, watch_seconds=9000.0),  # > 3x 2000 s
    _event("e18", "play_start", "t2", ts=T0 + 29_000),               # ... and its play
]
BOT = [_event(f"b{i}", "play_start", ts=T0 + 40_000 + i, user="u2") for i in range(12)]
DAY2 = [_event("e19", "play_start", "t2", ts=T0 + 86_400)]           # next day's span


def _write(directory: pathlib.Path) -> IngestionConfig:
    for day, lines in (("2026-01-05", EVENTS + BOT), ("2026-01-06", DAY2)):
        (directory / "events" / f"day={day}").mkdir(parents=True)
        (directory / "events" / f"day={day}" / "part-0.jsonl").write_text("\n".join(lines) + "\n")
    users = USERS + [{**USERS[0], "user_id": "u2"}]
    for name, rows in (("users.jsonl", users), ("titles.jsonl", TITLES)):
        (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    # u1 upgrades at T0 + 5000: the second session (T0 + 10000) sees the new tier.
    (directory / "updates.jsonl").write_text(json.dumps(
        {**USERS[0], "subscription_tier": "premium", "updated_ts": T0 + 5000}) + "\n")
    return IngestionConfig(events_glob=str(directory / "events" / "*" / "*.jsonl"),
                           users_path=str(directory / "users.jsonl"),
                           titles_path=str(directory / "titles.jsonl"),
                           profile_updates_glob=str(directory / "updates.jsonl"),
                           output_dir=str(directory / "out"), bot_events_per_hour=10)


def _records(config: IngestionConfig, span: str = "*") -> list[dict]:
    files = tf.io.gfile.glob(f"{config.examples_dir}/day={span}/*.tfrecord.gz")
    spec = F.raw_feature_spec()
    rows = [{k: v.numpy() for k, v in tf.io.parse_single_example(x, spec).items()}
            for x in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return sorted(rows, key=lambda r: (r[F.TIMESTAMP], r[F.TITLE_ID]))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    config = _write(tmp_path_factory.mktemp("ingestion"))
    return config, run_ingestion(config)


def test_every_event_is_accepted_or_dead_lettered(ingested):
    _, report = ingested
    assert report.events_read == len(EVENTS) + len(BOT) + len(DAY2) == 33
    assert report.events_accepted == 9
    assert report.dead_lettered == {
        Reason.DUPLICATE_EVENT_ID: 1, Reason.MALFORMED_JSON: 1, Reason.NOT_AN_OBJECT: 1,
        Reason.MISSING_FIELD: 1, Reason.WRONG_TYPE: 1, Reason.UNKNOWN_EVENT_TYPE: 1,
        Reason.NEGATIVE_WATCH_TIME: 1, Reason.UNKNOWN_USER: 1, Reason.UNKNOWN_TITLE: 1,
        Reason.TIMESTAMP_OUT_OF_RANGE: 1, Reason.IMPLAUSIBLE_WATCH_TIME: 2,
        Reason.BOT_TRAFFIC: 12}
    assert report.balanced
    assert report.records_per_span == {"2026-01-05": 3, "2026-01-06": 1}
    assert "bot_traffic" in report.summary() and "balanced" in report.summary()


def test_dead_letters_are_readable_with_reasons(ingested):
    config, report = ingested
    lines = [json.loads(line) for path in pathlib.Path(config.dead_letter_dir).glob("*.jsonl")
             for line in path.read_text().splitlines()]
    assert len(lines) == report.events_dead_lettered == 24
    by_reason = {line["reason"]: line for line in lines}
    assert by_reason[Reason.MISSING_FIELD]["detail"] == "user_id"
    assert by_reason[Reason.MALFORMED_JSON]["record"] == '{"event_id": "e9", "user_id": '
    assert by_reason[Reason.IMPLAUSIBLE_WATCH_TIME]["detail"] == "9000.0 s of a 2000 s title"


def test_dead_letters_are_the_contracts_records_counted_as_the_report_counts(ingested):
    from recs.contract.dead_letters import EVENTS, count_by_input, read_dead_letters

    config, report = ingested
    letters = read_dead_letters(config.dead_letter_dir)
    assert count_by_input(letters) == {EVENTS: report.dead_lettered}
    assert all(letter.file and letter.line > 0 for letter in letters)


def test_spans_are_delivery_days_readable_by_example_gen(ingested):
    # ImportExampleGen's span pattern finds the newest day and numbers it in days since 1970.
    from tfx.components.example_gen import utils
    from tfx.proto import example_gen_pb2

    from transforms.ingestion import SPAN_PATTERN

    config, _ = ingested
    split = example_gen_pb2.Input.Split(name="interactions", pattern=SPAN_PATTERN)
    _, span, _ = utils.calculate_splits_fingerprint_span_and_version(config.examples_dir,
                                                                     [split])
    assert span == utils.date_to_span_number(2026, 1, 6) == 20_459
    assert split.pattern == "day=2026-01-06/*.tfrecord.gz"
    [record] = _records(config, "2026-01-06")
    # History counts what the user played, refused plays too (t404, the implausible t2).
    assert record[F.TITLE_ID] == b"t2" and record[F.HISTORY] == b"t2|t404|t1"


def test_refuses_events_outside_a_day_partition(tmp_path):
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "part-0.jsonl").write_text(EVENTS[0] + "\n")
    config = IngestionConfig(events_glob=str(tmp_path / "events" / "*.jsonl"), users_path="u",
                             titles_path="t", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="no events file inside a day partition.*not_a_day.*"
                                         "day=YYYY-MM-DD"):
        run_ingestion(config)


def test_sessions_are_aggregated_labelled_and_joined(ingested):
    config, report = ingested
    records = _records(config, "2026-01-05")
    assert report.records_written - 1 == len(records) == 3
    first, skipped, liked = records
    assert (first[F.TITLE_ID], first[F.WATCH_SECONDS], first[F.LABEL]) == (b"t1", 600.0, 1)
    assert first[F.WATCH_RATIO] == pytest.approx(0.6)
    assert (first[F.HOUR], first[F.GENRE], first[F.AGE]) == (8, b"drama", 30)
    assert (skipped[F.TITLE_ID], skipped[F.SKIPPED], skipped[F.LABEL]) == (b"t2", 1, 0)
    assert skipped[F.WATCH_RATIO] == pytest.approx(30 / 2000)
    assert (liked[F.LIKED], liked[F.LABEL], liked[F.COMPLETED]) == (1, 1, 0)
    assert liked[F.WATCH_RATIO] == pytest.approx(0.1)
    # History holds earlier sessions only, most recent first.
    assert (first[F.HISTORY], skipped[F.HISTORY], liked[F.HISTORY]) == (b"", b"", b"t2|t1")
    # The profile in force when each session started.
    assert (first[F.SUBSCRIPTION_TIER], liked[F.SUBSCRIPTION_TIER]) == (b"basic", b"premium")


def test_a_play_is_activity_from_its_start_to_its_stop():
    events = [json.loads(line) for line in (
        _event("a1", "play_start", "t1", ts=T0),                 # a 2-hour film: one session
        _event("a2", "play_stop", "t1", ts=T0 + 7_000, watch_seconds=6_990.0),
        _event("a3", "play_start", "t2", ts=T0 + 7_100),
        _event("a4", "play_stop", "t2", ts=T0 + 7_200, watch_seconds=100.0),
        _event("a5", "play_start", "t3", ts=T0 + 20_000),        # its stop never came: an
        _event("a6", "like", "t3", ts=T0 + 22_500),              # instant, 2,500 s > the gap
        _event("a7", "play_start", "t1", ts=T0 + 40_000),        # stop 7 h later: over the
        _event("a8", "play_stop", "t1", ts=T0 + 65_200, watch_seconds=100.0),  # 6 h limit
    )]
    sessions = list(_sessionize(("u1", reversed(events)), 1800, 6 * 3600))
    ids = [[event["event_id"] for event in session] for session, _ in sessions]
    assert ids == [["a1", "a2", "a3", "a4"], ["a5"], ["a6"], ["a7"], ["a8"]]
    # The film's own title never shows up in the history of its stop (no label leak).
    assert [history for _, history in sessions] == ["", "t2|t1", "t3|t2|t1", "t3|t2|t1",
                                                    "t1|t3|t2"]


def test_multi_process_runner_gives_the_same_records(ingested, tmp_path):
    config, _ = ingested
    parallel = IngestionConfig(**{**config.to_dict(), "output_dir": str(tmp_path / "mp")})
    report = run_ingestion(parallel, ["--direct_running_mode=multi_processing",
                                      "--direct_num_workers=2"])
    assert report.balanced and report.records_written == 4
    assert _plain(_records(parallel)) == _plain(_records(config))


def test_buckets_and_flushes_change_no_output(ingested, tmp_path, monkeypatch):
    # One bucket holds every user and id; a one-byte flush packs each event alone: the records,
    # dead letters and counters are those of the default 256 buckets and 4 MiB flushes.
    from transforms import ingestion

    config, report = ingested
    monkeypatch.setattr(ingestion, "_FLUSH_BYTES", 1)
    packed = IngestionConfig(**{**config.to_dict(), "output_dir": str(tmp_path / "one"),
                                "shuffle_buckets": 1})
    assert run_ingestion(packed) == report
    assert _plain(_records(packed)) == _plain(_records(config))
    assert sorted(_dead_letter_lines(packed)) == sorted(_dead_letter_lines(config))


def test_shuffle_buckets_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="shuffle_buckets"):
        IngestionConfig(events_glob="e", users_path="u", titles_path="t",
                        output_dir=str(tmp_path), shuffle_buckets=0)


def _dead_letter_lines(config: IngestionConfig) -> list[str]:
    return [line for path in pathlib.Path(config.dead_letter_dir).glob("*.jsonl")
            for line in path.read_text().splitlines()]


def _plain(records: list[dict]) -> list[dict]:
    return [{key: value.item() if hasattr(value, "item") else value
             for key, value in record.items()} for record in records]


def test_generator_is_seeded_and_its_faults_are_all_caught(tmp_path):
    config = GeneratorConfig(num_users=400, num_titles=50, days=3, seed=11,
                             malformed_rate=0.02, duplicate_rate=0.02, late_rate=0.02,
                             clock_skew_rate=0.01, unknown_id_rate=0.02,
                             overlong_watch_rate=0.02, bot_share=0.01, events_per_file=2000)
    first = generate(config, tmp_path / "a")
    second = generate(config, tmp_path / "b")
    for name in ("users.jsonl", "titles.jsonl"):
        assert (first.root / name).read_text() == (second.root / name).read_text()
    day = first.events_dir / "day=2026-01-06"
    assert len(list(day.glob("part-*.jsonl"))) > 1  # Sharded at events_per_file lines.
    for part in day.glob("part-*.jsonl"):
        assert part.read_text() == (second.events_dir / day.name / part.name).read_text()
    assert all(count > 0 for count in first.faults.values()), first.faults

    report = run_ingestion(IngestionConfig(
        events_glob=str(first.events_dir / "*" / "*.jsonl"), users_path=str(first.users_path),
        titles_path=str(first.titles_path), output_dir=str(tmp_path / "out"),
        profile_updates_glob=str(first.profile_updates_dir / "*" / "*.jsonl")),
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert report.balanced
    assert report.events_read == first.lines_written
    dead = report.dead_lettered
    faults = first.faults
    # Each injected fault lands under its reason, exactly; late events are accepted.
    assert dead[Reason.DUPLICATE_EVENT_ID] == faults[synthetic.DUPLICATE]
    assert sum(dead.get(reason, 0) for reason in (
        Reason.MALFORMED_JSON, Reason.MISSING_FIELD, Reason.WRONG_TYPE,
        Reason.NEGATIVE_WATCH_TIME)) == faults[synthetic.MALFORMED]
    assert dead[Reason.TIMESTAMP_OUT_OF_RANGE] == faults[synthetic.CLOCK_SKEW]
    assert dead[Reason.UNKNOWN_USER] == faults[synthetic.UNKNOWN_USER]
    assert dead[Reason.UNKNOWN_TITLE] == faults[synthetic.UNKNOWN_TITLE]
    assert dead[Reason.BOT_TRAFFIC] == faults[synthetic.BOT]
    # A refused play takes its start, skip and like along: at least two events each.
    assert dead[Reason.IMPLAUSIBLE_WATCH_TIME] >= 2 * faults[synthetic.OVERLONG_WATCH]
    assert set(report.records_per_span) == {"2026-01-05", "2026-01-06", "2026-01-07"}


def test_generator_scales_in_blocks_without_holding_events(tmp_path):
    # Titles are drawn by rejection sampling, so a large catalogue costs no [users, titles]
    # matrix; the choice follows popularity and taste: the top tenth of titles by
    # popularity takes most plays.
    data = generate(GeneratorConfig(num_users=9000, num_titles=20_000, days=1, seed=3,
                                    sessions_per_user_day=0.3, malformed_rate=0.0), tmp_path)
    titles = [json.loads(line) for line in data.titles_path.read_text().splitlines()]
    popular = {t["title_id"] for t in sorted(titles, key=lambda t: -t["popularity"])[:2000]}
    plays = [json.loads(line) for path in data.events_dir.glob("*/*.jsonl")
             for line in path.read_text().splitlines()]
    starts = [p["title_id"] for p in plays if p.get("event_type") == "play_start"
              and p.get("user_id", "").startswith("u") and not p["title_id"].startswith("un")]
    assert len(starts) > 3000
    assert sum(t in popular for t in starts) / len(starts) > 0.5


def test_generated_engagement_follows_taste(tmp_path):
    # The hidden truth must be learnable: preferred-genre plays engage more often.
    data = generate(GeneratorConfig(num_users=150, num_titles=60, days=3, seed=5,
                                    malformed_rate=0.0, duplicate_rate=0.0), tmp_path)
    config = IngestionConfig(events_glob=str(data.events_dir / "*" / "*.jsonl"),
                             users_path=str(data.users_path), titles_path=str(data.titles_path),
                             output_dir=str(tmp_path / "out"))
    run_ingestion(config)
    records = _records(config)
    match = [r[F.LABEL] for r in records
             if r[F.GENRE] in r[F.PREFERRED_GENRES].split(b"|")]
    other = [r[F.LABEL] for r in records
             if r[F.GENRE] not in r[F.PREFERRED_GENRES].split(b"|")]
    assert len(match) > 100 and len(other) > 100
    assert sum(match) / len(match) > sum(other) / len(other) + 0.1


def test_refuses_to_mix_runs_in_one_output_dir(ingested):
    config, _ = ingested
    with pytest.raises(ValueError, match=r"already holds \d+ example files"):
        run_ingestion(config)


def test_generator_drift_keeps_earlier_days_and_launches_titles(tmp_path):
    base = GeneratorConfig(num_users=60, num_titles=20, days=3, seed=5)
    plain = generate(base, tmp_path / "plain")
    drift = generate(GeneratorConfig(**{**base.to_dict(), "drift_day": 2,
                                        "drift_new_titles": 5}), tmp_path / "drift")
    days = sorted(p.name for p in plain.events_dir.iterdir())
    for day in days[:2]:  # Identical before the drift day.
        assert ((plain.events_dir / day / "part-00000.jsonl").read_text()
                == (drift.events_dir / day / "part-00000.jsonl").read_text())
    launched = {f"t{i:06d}" for i in range(20, 25)}
    titles = [json.loads(line)["title_id"] for line in drift.titles_path.read_text().splitlines()]
    assert launched <= set(titles) and len(titles) == 25

    def played(data, day):
        lines = (data.events_dir / day / "part-00000.jsonl").read_text().splitlines()
        return {json.loads(line).get("title_id") for line in lines if line.endswith("}")
                and line.startswith("{")}

    assert not played(drift, days[1]) & launched and played(drift, days[2]) & launched
    assert not played(plain, days[2]) & launched
