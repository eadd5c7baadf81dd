"""Beam ingestion on hand-written events: values, dead letters and the accounting invariant."""

import json
import pathlib

import pytest
import tensorflow as tf

from recs import features as F
from recs.data.synthetic import GeneratorConfig, generate
from transforms.ingestion import IngestionConfig, Reason, run_ingestion

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
]


def _write(directory: pathlib.Path) -> IngestionConfig:
    (directory / "events").mkdir(parents=True)
    (directory / "events" / "part-0.jsonl").write_text("\n".join(EVENTS) + "\n")
    for name, rows in (("users.jsonl", USERS), ("titles.jsonl", TITLES)):
        (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return IngestionConfig(events_glob=str(directory / "events" / "*.jsonl"),
                           users_path=str(directory / "users.jsonl"),
                           titles_path=str(directory / "titles.jsonl"),
                           output_dir=str(directory / "out"))


def _records(config: IngestionConfig) -> list[dict]:
    files = tf.io.gfile.glob(f"{config.examples_dir}/*.tfrecord.gz")
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
    assert report.events_read == len(EVENTS) == 17
    assert report.events_accepted == 8
    assert report.dead_lettered == {
        Reason.DUPLICATE_EVENT_ID: 1, Reason.MALFORMED_JSON: 1, Reason.NOT_AN_OBJECT: 1,
        Reason.MISSING_FIELD: 1, Reason.WRONG_TYPE: 1, Reason.UNKNOWN_EVENT_TYPE: 1,
        Reason.NEGATIVE_WATCH_TIME: 1, Reason.UNKNOWN_USER: 1, Reason.UNKNOWN_TITLE: 1}
    assert report.balanced


def test_dead_letters_are_readable_with_reasons(ingested):
    config, report = ingested
    lines = [json.loads(line) for path in pathlib.Path(config.dead_letter_dir).glob("*.jsonl")
             for line in path.read_text().splitlines()]
    assert len(lines) == report.events_dead_lettered == 9
    by_reason = {line["reason"]: line for line in lines}
    assert by_reason[Reason.MISSING_FIELD]["detail"] == "user_id"
    assert by_reason[Reason.MALFORMED_JSON]["record"] == '{"event_id": "e9", "user_id": '


def test_sessions_are_aggregated_labelled_and_joined(ingested):
    config, report = ingested
    records = _records(config)
    assert report.records_written == len(records) == 3
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


def test_multi_process_runner_gives_the_same_records(ingested, tmp_path):
    config, _ = ingested
    parallel = IngestionConfig(**{**config.to_dict(), "output_dir": str(tmp_path / "mp")})
    report = run_ingestion(parallel, ["--direct_running_mode=multi_processing",
                                      "--direct_num_workers=2"])
    assert report.balanced and report.records_written == 3
    assert _plain(_records(parallel)) == _plain(_records(config))


def _plain(records: list[dict]) -> list[dict]:
    return [{key: value.item() if hasattr(value, "item") else value
             for key, value in record.items()} for record in records]


def test_generator_is_seeded_and_its_faults_are_all_caught(tmp_path):
    config = GeneratorConfig(num_users=40, num_titles=15, days=2, seed=11,
                             malformed_rate=0.02, duplicate_rate=0.02)
    first = generate(config, tmp_path / "a")
    second = generate(config, tmp_path / "b")
    for name in ("users.jsonl", "titles.jsonl"):
        assert (first.root / name).read_text() == (second.root / name).read_text()
    day = "day=2026-01-05/part-00000.jsonl"
    assert (first.events_dir / day).read_text() == (second.events_dir / day).read_text()

    report = run_ingestion(IngestionConfig(
        events_glob=str(first.events_dir / "*" / "*.jsonl"), users_path=str(first.users_path),
        titles_path=str(first.titles_path), output_dir=str(tmp_path / "out")))
    assert report.balanced
    assert report.events_read == first.num_events + first.num_duplicates
    assert report.dead_lettered[Reason.DUPLICATE_EVENT_ID] == first.num_duplicates
    assert report.events_dead_lettered - first.num_duplicates == first.num_malformed


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
