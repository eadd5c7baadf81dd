"""Ingestion against hostile day files: every line is accounted for and no line stops the job."""

import base64
import gzip
import json
import pathlib

import pytest

from tests.transforms.test_ingestion import T0, TITLES, USERS, _event, _records
from transforms import ingestion
from transforms.ingestion import (CONFLICTING_DUPLICATE, INVALID_PROFILE, INVALID_TITLE,
                                  IngestionConfig, Reason, run_ingestion)

DAY = "2026-01-05"
GOOD = [_event("g1", "play_start", ts=T0), _event("g2", "play_stop", ts=T0 + 600,
                                                   watch_seconds=600.0)]


def _world(root: pathlib.Path, files: dict[str, bytes], users: list[bytes] | None = None,
           titles: list[bytes] | None = None) -> IngestionConfig:
    day = root / "events" / f"day={DAY}"
    day.mkdir(parents=True)
    for name, content in files.items():
        (day / name).write_bytes(content)
    (root / "users.jsonl").write_bytes(b"\n".join(users if users is not None else
                                                  [json.dumps(u).encode() for u in USERS]) + b"\n")
    (root / "titles.jsonl").write_bytes(b"\n".join(titles if titles is not None else
                                                   [json.dumps(t).encode() for t in TITLES]) + b"\n")
    return IngestionConfig(events_glob=str(day.parent / "*" / "*"),
                           users_path=str(root / "users.jsonl"),
                           titles_path=str(root / "titles.jsonl"), output_dir=str(root / "out"))


def _lines(*events: str) -> bytes:
    return "\n".join(events).encode() + b"\n"


def _dead_letters(config: IngestionConfig) -> list[dict]:
    return [json.loads(line) for path in pathlib.Path(config.dead_letter_dir).glob("*.jsonl")
            for line in path.read_text().splitlines()]


HOSTILE = [
    b'{"event_id": "h1", "user_id": "u1\xff", "title_id": "t1"}',      # undecodable byte
    b"[" * 10_000 + b"]" * 10_000,                                      # nesting 10k deep
    _event("h3", "play_stop", watch_seconds=1).replace('1}', "9" * 400 + "}").encode(),
    _event("h4", "like").replace('"u1"', '"\\ud800"').encode(),       # lone surrogate
    _event("h5", "play_stop", ts=T0 + 700, watch_seconds=1).replace(" 1}", " NaN}").encode(),
    _event("h6", "play_stop", ts=T0 + 800, watch_seconds=1e308).encode(),
    b"   ",                                                             # blank: not an event
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    good = _lines(*GOOD)
    config = _world(root, {
        # A byte-order mark and CRLF endings: both events are read.
        "a-bom.jsonl": b"\xef\xbb\xbf" + good.replace(b"\n", b"\r\n"),
        "b-hostile.jsonl": b"\n".join(HOSTILE) + b"\n",
        "c-compressed.jsonl.gz": gzip.compress(_lines(
            _event("z1", "play_start", "t2", ts=T0 + 40_000),
            _event("z2", "play_stop", "t2", ts=T0 + 40_100, watch_seconds=1500.0))),
        "d-gzip-named-plain.jsonl": gzip.compress(_lines(_event("z3", "like", ts=T0 + 50_000))),
        "e-truncated.jsonl.gz": gzip.compress(_lines(*[_event(f"tr{i}", "like", ts=T0 + 60_000)
                                                       for i in range(50)]))[:-40],
        "f-notes.csv": b"user,title\nu1,t1\n",
        "g-oversized.jsonl": b'{"event_id": "' + b"x" * 100_000 + b'"}\n' + _lines(
            _event("ov1", "like", ts=T0 + 70_000)),
    })
    return config, run_ingestion(config)


def test_no_hostile_line_stops_the_job_and_every_line_is_counted_per_file(hostile):
    config, report = hostile
    assert report.balanced, report.summary()
    assert report.blank_lines == 1
    files = {pathlib.Path(path).name: counts for path, counts in report.files.items()}
    assert (files["a-bom.jsonl"].read, files["a-bom.jsonl"].accepted) == (2, 2)
    assert (files["b-hostile.jsonl"].read, files["b-hostile.jsonl"].dead_lettered) == (6, 6)
    assert files["c-compressed.jsonl.gz"].accepted == 2
    assert files["d-gzip-named-plain.jsonl"].accepted == 1
    assert files["f-notes.csv"].read == files["f-notes.csv"].dead_lettered == 1
    assert files["g-oversized.jsonl"].read == 2 and files["g-oversized.jsonl"].accepted == 1
    truncated = files["e-truncated.jsonl.gz"]
    assert truncated.balanced and truncated.dead_lettered >= 1
    dead = report.dead_lettered
    assert dead[Reason.UNDECODABLE] == 1 and dead[Reason.OVERSIZED] == 1
    assert dead[Reason.MALFORMED_JSON] == 3  # Deep nesting, lone surrogate, NaN.
    assert dead[Reason.NON_FINITE_NUMBER] == 1 and dead[Reason.IMPLAUSIBLE_WATCH_TIME] == 1
    assert dead[Reason.UNREADABLE_FILE] == 2  # The csv, and the truncated gzip's remainder.


def test_a_nan_watch_time_is_refused_not_taken_as_a_full_watch(hostile):
    config, _ = hostile
    # h5 (NaN) would join the first session's t1 play, 600 of 1000 s; min(1000, 600 + nan)
    # made it a full watch.
    first = next(r for r in _records(config) if r["timestamp"] == T0)
    assert (first["title_id"], first[F_WATCH], first["completed"]) == (b"t1", 600.0, 0)
    [letter] = [l for l in _dead_letters(config) if '"h5"' in l.get("record", "")]
    assert letter["reason"] == Reason.MALFORMED_JSON


F_WATCH = "watch_seconds"


def test_dead_letters_keep_the_bytes_and_where_they_came_from(hostile):
    config, _ = hostile
    letters = _dead_letters(config)
    undecodable = next(l for l in letters if l["reason"] == Reason.UNDECODABLE)
    assert base64.b64decode(undecodable["record_b64"]) == HOSTILE[0]
    assert undecodable["file"].endswith("b-hostile.jsonl") and undecodable["line"] == 1
    unreadable = {pathlib.Path(l["file"]).name: l for l in letters
                  if l["reason"] == Reason.UNREADABLE_FILE}
    assert "unknown file type" in unreadable["f-notes.csv"]["detail"]
    assert "e-truncated.jsonl.gz" in unreadable


def test_identical_copies_of_an_event_id_keep_the_earliest_delivered(tmp_path):
    # The same event three times: spacing and key order differ, the contents do not.
    start = _event("d0", "play_start", ts=T0)
    stop = _event("d1", "play_stop", ts=T0 + 100, watch_seconds=900.0)
    respaced = json.dumps(json.loads(stop), sort_keys=True, separators=(",", ":"))
    config = _world(tmp_path, {"part-0.jsonl": _lines(start, stop),
                               "part-1.jsonl": _lines(respaced, stop)})
    report = run_ingestion(config)
    assert report.balanced and report.dead_lettered == {Reason.DUPLICATE_EVENT_ID: 2}
    [record] = _records(config)
    assert record[F_WATCH] == 900.0
    assert sorted((l["file"].rsplit("/", 1)[1], l["line"]) for l in _dead_letters(config)) == [
        ("part-1.jsonl", 1), ("part-1.jsonl", 2)]


def test_copies_of_an_event_id_that_differ_are_a_conflict_and_none_is_used(tmp_path):
    # Before: the earliest by (day, file, line) won, so a forged copy in a file whose name
    # sorts first displaced the real event (watch 10 s instead of 900 s).
    start = _event("d0", "play_start", ts=T0)
    real = _event("d1", "play_stop", ts=T0 + 100, watch_seconds=900.0)
    forged = _event("d1", "play_stop", ts=T0 + 100, watch_seconds=10.0)
    config = _world(tmp_path, {"a-forged.jsonl": _lines(forged),
                               "b-real.jsonl": _lines(start, real),
                               "c-real-again.jsonl": _lines(real)})
    report = run_ingestion(config)
    assert report.balanced and report.dead_lettered == {CONFLICTING_DUPLICATE: 3}
    # The session keeps its start alone: nothing watched, from neither copy.
    [record] = _records(config)
    assert (record[F_WATCH], record["engaged"]) == (0.0, 0)
    letters = _dead_letters(config)
    assert sorted(pathlib.Path(l["file"]).name for l in letters) == [
        "a-forged.jsonl", "b-real.jsonl", "c-real-again.jsonl"]
    assert {l["detail"] for l in letters} == {
        "d1: 3 copies with 2 different contents; none is used"}
    assert sorted(json.loads(l["record"])[F_WATCH] for l in letters) == [10.0, 900.0, 900.0]


@pytest.mark.parametrize("buckets", [1, 256])
def test_copies_naming_different_users_are_a_conflict_in_any_bucket(tmp_path, buckets):
    # An id is one event: a copy under another user differs, so every copy is refused,
    # even though the copies' users hash to different buckets (with 256) and are
    # sessionized apart. Identical copies (d2) stay duplicates: the earliest is kept.
    first = _event("d1", "like", user="u2", ts=T0 + 50)
    real = _event("d1", "play_stop", ts=T0 + 100, watch_seconds=900.0)
    later = _event("d2", "like", ts=T0 + 200)
    again = _event("d2", "like", ts=T0 + 200)
    users = [json.dumps(u).encode() for u in USERS + [{**USERS[0], "user_id": "u2"}]]
    config = _world(tmp_path, {"part-0.jsonl": _lines(GOOD[0], first, later),
                               "part-1.jsonl": _lines(real, again)}, users)
    config = IngestionConfig(**{**config.to_dict(), "shuffle_buckets": buckets})
    if buckets > 1:
        assert ingestion.bucket("u1", buckets) != ingestion.bucket("u2", buckets)
    report = run_ingestion(config)
    assert report.balanced and report.dead_lettered == {CONFLICTING_DUPLICATE: 2,
                                                        Reason.DUPLICATE_EVENT_ID: 1}
    letters = _dead_letters(config)
    assert {(l["file"].rsplit("/", 1)[1], l["line"], l["reason"]) for l in letters} == {
        ("part-0.jsonl", 2, CONFLICTING_DUPLICATE), ("part-1.jsonl", 1, CONFLICTING_DUPLICATE),
        ("part-1.jsonl", 2, Reason.DUPLICATE_EVENT_ID)}
    # u1 keeps its start and d2's first copy (t1: nothing watched, liked); u2 keeps nothing.
    assert [(r["user_id"], r["liked"], r[F_WATCH]) for r in _records(config)] == [
        (b"u1", 1, 0.0)]


def test_bad_profile_and_catalogue_rows_are_refused_not_fatal(tmp_path):
    users = [json.dumps(USERS[0]).encode(), b'{"user_id": "u2", "age": "old"}', b"\xff\xfe",
             json.dumps({**USERS[0], "user_id": "u3", "age": True}).encode()]
    titles = [json.dumps(TITLES[0]).encode(),
              json.dumps({**TITLES[1], "duration_seconds": None}).encode()]
    config = _world(tmp_path, {"part-0.jsonl": _lines(
        *GOOD, _event("x1", "like", user="u2", ts=T0 + 900),
        _event("x2", "like", "t2", ts=T0 + 20_000))}, users, titles)
    report = run_ingestion(config)
    assert report.balanced
    assert report.reference_dead_lettered == {INVALID_PROFILE: 3, INVALID_TITLE: 1}
    assert report.dead_lettered == {Reason.UNKNOWN_USER: 1, Reason.UNKNOWN_TITLE: 1}
    assert report.events_accepted == 2


def test_a_refused_row_is_a_dead_letter_of_its_table_by_the_contracts_row_rules(tmp_path):
    from recs.contract import dead_letters

    users = [json.dumps(USERS[0]).encode(), json.dumps({**USERS[0], "user_id": "u2",
                                                         "age": 121}).encode()]
    titles = [json.dumps({**TITLES[0], "genre": "g" * 65}).encode()]
    config = _world(tmp_path, {"part-0.jsonl": _lines(*GOOD)}, users, titles)
    report = run_ingestion(config)
    assert report.reference_dead_lettered == {INVALID_PROFILE: 1, INVALID_TITLE: 1}
    letters = {letter.input: letter
               for letter in dead_letters.read_dead_letters(config.dead_letter_dir)
               if letter.reason in (INVALID_PROFILE, INVALID_TITLE)}
    profile, title = letters[dead_letters.USERS], letters[dead_letters.TITLES]
    assert (profile.detail, profile.line) == ("missing or invalid ['age']", 2)
    assert title.detail == "missing or invalid ['genre']"


def test_an_exception_while_processing_is_a_dead_letter_naming_it(tmp_path, monkeypatch):
    def broken(events, *args):
        raise ZeroDivisionError("a bug in sessionization")
        yield  # pragma: no cover

    monkeypatch.setattr(ingestion, "_sessions", broken)
    config = _world(tmp_path, {"part-0.jsonl": _lines(*GOOD)})
    report = run_ingestion(config)
    assert report.balanced and report.dead_lettered == {Reason.PROCESSING_ERROR: 2}
    assert all("ZeroDivisionError" in l["detail"] for l in _dead_letters(config))


def test_a_record_that_does_not_encode_is_a_dead_letter_and_its_batch_is_kept(tmp_path,
                                                                                monkeypatch):
    encode = ingestion.encode_examples

    def refuses_t2(records):
        records = list(records)
        if any(record["title_id"] == "t2" for record in records):
            raise ValueError("a value that does not convert")
        return encode(records)

    monkeypatch.setattr(ingestion, "encode_examples", refuses_t2)
    config = _world(tmp_path, {"part-0.jsonl": _lines(
        *GOOD, _event("b1", "play_start", "t2", ts=T0 + 900),
        _event("b2", "play_stop", "t2", ts=T0 + 1_000, watch_seconds=100.0))})
    report = run_ingestion(config)
    assert report.balanced
    assert report.dead_lettered == {Reason.PROCESSING_ERROR: 2}
    assert sorted(json.loads(l["record"])["event_id"] for l in _dead_letters(config)) == [
        "b1", "b2"]
    assert [r["title_id"] for r in _records(config)] == [b"t1"]
