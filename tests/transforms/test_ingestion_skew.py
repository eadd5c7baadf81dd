"""Ingestion on skewed days: one key holding many events is refused or kept by the same rules
as ever, and what a worker holds follows distinct keys, not copies."""

import json
import pathlib
import tracemalloc

import orjson

from recs.contract.events import parse_event
from tests.transforms.test_ingestion import T0, _event
from tests.transforms.test_ingestion_hardening import GOOD, _dead_letters, _lines, _world
from transforms import ingestion
from transforms.ingestion import CONFLICTING_DUPLICATE, Reason, run_ingestion

USER_BUCKET = 7


def test_a_replayed_event_keeps_its_earliest_copy_and_refuses_every_other(tmp_path):
    replayed = _event("r1", "like", ts=T0 + 3_000)
    config = _world(tmp_path, {"a.jsonl": _lines(*GOOD, *[replayed] * 1_500),
                               "b.jsonl": _lines(*[replayed] * 1_500)})
    report = run_ingestion(config)
    assert report.balanced, report.summary()
    # 2 good events + the first copy of r1 are used; the 2,999 others are duplicates.
    assert report.events_accepted == 3
    assert report.dead_lettered == {Reason.DUPLICATE_EVENT_ID: 2_999}
    letters = _dead_letters(config)
    assert not any(letter["file"].endswith("a.jsonl") and letter["line"] == 3
                   for letter in letters)   # a.jsonl line 3: the earliest copy, kept


def test_a_forgery_flood_on_one_id_is_one_conflict_whose_contents_are_capped(tmp_path):
    copies = [_event("f1", "play_stop", ts=T0 + 900, watch_seconds=float(n))
              for n in range(ingestion._MAX_CONTENTS + 200)]
    config = _world(tmp_path, {"a.jsonl": _lines(*GOOD, *copies)})
    report = run_ingestion(config)
    assert report.balanced, report.summary()
    assert report.events_accepted == 2
    assert report.dead_lettered == {CONFLICTING_DUPLICATE: len(copies)}
    details = {letter["detail"] for letter in _dead_letters(config)}
    assert details == {f"f1: {len(copies)} copies with more than {ingestion._MAX_CONTENTS} "
                       "different contents; none is used"}


def test_a_bot_hour_is_refused_as_it_is_met_and_the_users_other_hours_are_used(tmp_path):
    bot = [_event(f"b{n}", "play_start", ts=T0 + 7_200 + n) for n in range(400)]
    config = _world(tmp_path, {"a.jsonl": _lines(*GOOD, *bot)})
    report = run_ingestion(config)
    assert report.balanced, report.summary()
    assert report.events_accepted == 2     # GOOD, an hour earlier than the bot's
    assert report.dead_lettered == {Reason.BOT_TRAFFIC: 400}


def test_dead_letters_are_written_by_the_stage_that_refuses_them(tmp_path):
    config = _world(tmp_path, {"a.jsonl": _lines(*GOOD, GOOD[0], "{not json")},
                    titles=[b'{"title_id": "t1"}', *[json.dumps(t).encode() for t in [
                        {"title_id": "t2", "genre": "comedy", "release_year": 2021,
                         "popularity": 1.0, "description": "a laugh",
                         "duration_seconds": 2000}]]])
    run_ingestion(config)
    writers = {path.name.split("-")[1]: [json.loads(line)["reason"]
                                         for line in path.read_text().splitlines()]
               for path in pathlib.Path(config.dead_letter_dir).glob("*.jsonl")
               if path.read_text()}
    assert sorted(writers["read"]) == [Reason.MALFORMED_JSON]
    # t1's row is refused, so u1's events on t1 are unknown titles: refused in sessions.
    assert Reason.DUPLICATE_EVENT_ID in writers["sessions"]
    assert writers["tables"] == [Reason.INVALID_TITLE]


# What a worker holds, measured in-process with tracemalloc: a key with 10x the copies must
# not cost 10x the memory (the code before this rule held one object per copy).

def _packed(kind: str, items: list[bytes], per_blob: int = 500) -> list[tuple[str, bytes]]:
    """Items packed as a reader packs them: one compressed array per flush."""
    blobs = []
    for start in range(0, len(items), per_blob):
        packer = ingestion._Packer(kind)
        for item in items[start:start + per_blob]:
            packer.add(0, item)
        blobs += [value for _, value in packer.emit()]
    return blobs


def _peak_bytes(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _ids(copies: int) -> list[tuple[str, bytes]]:
    return _packed(ingestion._IDS, [orjson.dumps(("e1", 0, n + 1, USER_BUCKET, "digest"))
                                    for n in range(copies)])


def test_finding_copies_holds_one_entry_per_distinct_id_not_per_copy():
    small, large = _ids(2_000), _ids(20_000)

    def consume(blobs):
        return lambda: [None for _ in ingestion._later_copies((0, blobs))]

    emitted = [ingestion._unpack(blob) for _, (_, blob) in ingestion._later_copies((0, small))]
    assert sum(map(len, emitted)) == 1_999          # every copy but the earliest
    assert _peak_bytes(consume(large)) < 3 * _peak_bytes(consume(small))


def _bot_bucket(events: int) -> list[tuple[str, bytes]]:
    parsed = []
    for n in range(events):
        event = parse_event(_event(f"b{n}", "play_start", ts=T0 + n % 3_600)).event
        event[ingestion._POSITION] = (0, n + 1)
        parsed.append(orjson.dumps(event))
    return _packed(ingestion._EVENTS, parsed)


def test_a_bots_events_are_refused_as_they_are_met_not_held():
    config = ingestion.IngestionConfig(events_glob="", users_path="", titles_path="",
                                       output_dir="", bot_events_per_hour=10)
    sessionize = ingestion.Sessionize(config, ["/raw/events/day=2026-01-05/a.jsonl"],
                                      ["2026-01-05"])
    small, large = _bot_bucket(1_000), _bot_bucket(10_000)

    def consume(blobs):
        return lambda: [None for _ in sessionize.process((USER_BUCKET, blobs), {})]

    outputs = list(sessionize.process((USER_BUCKET, small), {}))
    assert len(outputs) == 1_000                    # every event a bot_traffic dead letter
    assert all(json.loads(out.value)["reason"] == Reason.BOT_TRAFFIC for out in outputs)
    assert _peak_bytes(consume(large)) < 3 * _peak_bytes(consume(small))
