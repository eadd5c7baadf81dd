"""Beam ingestion against a seeded hostile day: hostile lines in plain, gzip and misnamed files,
forged duplicates of valid events, unreadable files, with valid events among them.

Figures: `inputs` (hostile records and files tried), `crashes` (the job raised), `server_errors`
(`processing_error` dead letters: the machinery failing, not the input), `lost` (valid events
with no record and not held as a conflict, or lines unaccounted for), `held_as_conflicts`
(valid events a forged copy with other contents made a counted conflict: every copy dead-
lettered, none used, by design), `duplicated` (records beyond one per valid event).
"""

import datetime as dt
import gzip
import json
import pathlib
import tempfile

from benchmarks.hostile import events as H

DAY = "2026-01-05"


def _day_start() -> int:
    date = dt.date.fromisoformat(DAY)
    return int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc).timestamp())


def run(seed: int = 0, count: int = 300, workdir: str = "") -> dict:
    """Writes the hostile day, ingests it (two worker processes) and counts what came out."""
    from recs.contract.events import Reason
    from transforms.ingestion import IngestionConfig, run_ingestion

    root = pathlib.Path(workdir or tempfile.mkdtemp(prefix="hostile-ingestion-"))
    corpus = H.corpus(seed, count, _day_start(), 86_400)
    day = root / "events" / f"day={DAY}"
    day.mkdir(parents=True)
    hostile = [record for _, record in corpus.hostile]
    valid = [json.dumps(event).encode() for event in corpus.valid]
    third = len(valid) // 3
    # Valid events spread over a BOM + CRLF file, a gzip file and a gzip file named .jsonl;
    # hostile lines between them; forged copies of valid ids in a later file.
    (day / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(
        [line for pair in zip(valid[:third], hostile) for line in pair]) + b"\r\n")
    (day / "b.jsonl.gz").write_bytes(gzip.compress(b"\n".join(valid[third:2 * third]) + b"\n"))
    (day / "c.jsonl").write_bytes(gzip.compress(b"\n".join(valid[2 * third:]) + b"\n"))
    (day / "d.jsonl").write_bytes(b"\n".join(hostile[third:]) + b"\n")
    forged = [json.dumps({**event, "event_type": "skip", "device_type": "tv"}).encode()
              for event in corpus.valid[:20]]
    (day / "e-forged.jsonl").write_bytes(b"\n".join(forged) + b"\n")
    (day / "f-truncated.jsonl.gz").write_bytes(gzip.compress(b"\n".join(valid[:5]))[:-30])
    (day / "g-notes.csv").write_bytes(b"user,title\n")
    (root / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in H.profiles()))
    (root / "titles.jsonl").write_text("".join(json.dumps(t) + "\n" for t in H.catalogue()))
    config = IngestionConfig(events_glob=str(day.parent / "*" / "*"),
                             users_path=str(root / "users.jsonl"),
                             titles_path=str(root / "titles.jsonl"),
                             output_dir=str(root / "out"))
    inputs = len(hostile) + len(forged) + 2  # + the truncated gzip and the csv.
    try:
        report = run_ingestion(config, ["--direct_running_mode=multi_processing",
                                        "--direct_num_workers=2"])
    except Exception as error:  # noqa: BLE001  (the benchmark counts it)
        return {"inputs": inputs, "crashes": 1, "server_errors": 0, "lost": len(valid),
                "duplicated": 0, "valid": len(valid), "error": repr(error)}
    records = _records(config.examples_dir)
    expected = {(event["user_id"], event["title_id"]) for event in corpus.valid}
    kept = [(r["user_id"], r["title_id"]) for r in records
            if r["liked"] == 1 and r["skipped"] == 0]  # A forged copy would be a skip.
    # A valid event whose id a forged copy with other contents shares is a conflict by
    # design: every copy is a counted `conflicting_duplicate` dead letter and none is used
    # (the job cannot tell the real one from the forgery). Held, not lost.
    held = _conflicting(config.dead_letter_dir, corpus.valid)
    # The truncated gzip repeats five valid ids: their copies are duplicates or unreadable.
    unaccounted = abs(report.events_read - report.events_accepted - report.events_dead_lettered)
    return {
        "inputs": inputs, "crashes": 0,
        "server_errors": report.dead_lettered.get(Reason.PROCESSING_ERROR, 0),
        "lost": len(expected - set(kept) - held) + unaccounted,
        "held_as_conflicts": len(held & expected),
        "duplicated": len(records) - len(set((r["user_id"], r["title_id"]) for r in records)),
        "valid": len(valid), "accepted_hostile": len(set(kept) - expected),
        "balanced_per_file": report.balanced, "dead_lettered": report.dead_lettered,
        "by_class": {**corpus.by_class, "forged_duplicate": len(forged),
                     "truncated_gzip_file": 1, "unknown_file_type": 1},
    }


def _conflicting(dead_letter_dir: str, valid: list[dict]) -> set[tuple[str, str]]:
    """(user, title) of the valid events whose every copy went to the dead letters as a
    conflict (their event id and their own bytes among the `conflicting_duplicate` ones)."""
    from recs.contract.dead_letters import read_dead_letters
    from transforms.ingestion import CONFLICTING_DUPLICATE

    held = []
    for letter in read_dead_letters(dead_letter_dir):
        if letter.reason == CONFLICTING_DUPLICATE and letter.record is not None:
            try:
                held.append(json.loads(letter.record))
            except ValueError:
                continue
    return {(event["user_id"], event["title_id"]) for event in valid if event in held}


def _records(examples_dir: str) -> list[dict]:
    import tensorflow as tf

    from recs import features as F

    files = tf.io.gfile.glob(f"{examples_dir}/*/*.tfrecord.gz")
    spec = F.raw_feature_spec()
    rows = []
    for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(serialized, spec)
        rows.append({key: (value.numpy().decode() if value.dtype == tf.string
                           else value.numpy().item()) for key, value in parsed.items()})
    return rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
