"""Ingestion throughput and memory: Beam (multi-process DirectRunner) against one pandas process.

    python benchmarks/ingestion.py --events 200000,1000000

For each size, generates seeded streaming logs (with the generator's injected faults) and runs
`transforms.ingestion` on Beam's DirectRunner with two worker processes. The peer, in the same
run and on the same files, is a plain single-process pandas script doing the same work: the
same validation (`transforms.events.parse_event`), deduplication by event id, sessionization at
a 30-minute gap, aggregation per (user, title, session) with watch history, the profile and
catalogue joins, and the same tf.Example output. Its record count must equal Beam's.

Peak memory is each run's whole process tree, sampled every 0.2 s. Writes
benchmarks/results/ingestion.json (events/s, per core, peak RSS, ratios).
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from common import run_in_process, write_result  # noqa: E402


EVENTS_PER_USER_DAY = 3.5  # measured mean of the generator's defaults (177k / 5000 / 10)


def run_beam(raw: str, out: str, workers: int, result_path: str) -> None:
    from transforms.ingestion import IngestionConfig, run_ingestion

    config = IngestionConfig(events_glob=f"{raw}/events/*/*.jsonl",
                             users_path=f"{raw}/users.jsonl", titles_path=f"{raw}/titles.jsonl",
                             output_dir=out)
    report = run_ingestion(config, ["--direct_running_mode=multi_processing",
                                    f"--direct_num_workers={workers}"])
    pathlib.Path(result_path).write_text(json.dumps({
        "events_read": report.events_read, "records_written": report.records_written,
        "dead_lettered": report.events_dead_lettered, "balanced": report.balanced}))


def run_pandas(raw: str, out: str, result_path: str) -> None:
    """The single-process peer: the same cleaning and aggregation with pandas."""
    import pandas as pd
    import tensorflow as tf

    from recs import features as F
    from transforms.events import parse_event
    from transforms.ingestion import to_example

    read = dead = 0
    events: list[dict[str, Any]] = []
    for path in sorted(pathlib.Path(raw, "events").glob("*/*.jsonl")):
        with open(path) as handle:
            for line in handle:
                read += 1
                parsed = parse_event(line)
                if parsed.event is None:
                    dead += 1
                else:
                    events.append(parsed.event)
    frame = pd.DataFrame(events)
    frame["watch_seconds"] = frame.get("watch_seconds", 0.0).fillna(0.0)
    before = len(frame)
    frame = frame.drop_duplicates("event_id", keep="first")
    dead += before - len(frame)
    frame = frame.sort_values([F.USER_ID, "ts", "event_id"], kind="stable")
    new_user = frame[F.USER_ID].ne(frame[F.USER_ID].shift())
    gap = frame["ts"].diff().fillna(0) > 1800
    frame["session"] = (new_user | gap).cumsum()

    users = pd.read_json(f"{raw}/users.jsonl", lines=True).set_index(F.USER_ID)
    titles = pd.read_json(f"{raw}/titles.jsonl", lines=True).set_index(F.TITLE_ID)
    known = frame[F.USER_ID].isin(users.index) & frame[F.TITLE_ID].isin(titles.index)
    dead += int((~known).sum())
    frame = frame[known]
    frame["stop_seconds"] = frame["watch_seconds"].where(frame["event_type"] == "play_stop", 0.0)
    frame["is_like"] = frame["event_type"] == "like"
    frame["is_skip"] = frame["event_type"] == "skip"
    records = frame.groupby(["session", F.TITLE_ID], sort=False).agg(
        user_id=(F.USER_ID, "first"), ts=("ts", "first"),
        device_type=(F.DEVICE_TYPE, "first"), watched=("stop_seconds", "sum"),
        liked=("is_like", "any"), skipped=("is_skip", "any")).reset_index()
    records = records.join(users, on=F.USER_ID).join(titles, on=F.TITLE_ID)
    records["duration"] = records[F.DURATION_SECONDS].clip(lower=1).astype(int)
    records["watched"] = records[["watched", "duration"]].min(axis=1)
    records["ratio"] = records["watched"] / records["duration"]

    # History: titles of the user's earlier sessions, most recent first (as the Beam job).
    histories: dict[int, str] = {}
    for _, sessions in frame.groupby(F.USER_ID, sort=False):
        history: list[str] = []
        for session, titles_played in sessions.groupby("session", sort=True)[F.TITLE_ID]:
            histories[session] = "|".join(history[:F.MAX_HISTORY])
            for title in titles_played:
                if title in history:
                    history.remove(title)
                history.insert(0, title)
    records["history"] = records["session"].map(histories)

    path = pathlib.Path(out, "examples")
    path.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    written = 0
    with tf.io.TFRecordWriter(str(path / "interactions.tfrecord.gz"), options) as writer:
        for row in records.itertuples(index=False):
            row = row._asdict()
            writer.write(to_example({
                F.USER_ID: row[F.USER_ID], F.AGE: row[F.AGE], F.COUNTRY: str(row[F.COUNTRY]),
                F.SUBSCRIPTION_TIER: str(row[F.SUBSCRIPTION_TIER]),
                F.PREFERRED_GENRES: str(row[F.PREFERRED_GENRES]), F.HISTORY: row["history"],
                F.DEVICE_TYPE: row[F.DEVICE_TYPE], F.HOUR: (row["ts"] // 3600) % 24,
                F.TIMESTAMP: row["ts"], F.TITLE_ID: row[F.TITLE_ID], F.GENRE: str(row[F.GENRE]),
                F.RELEASE_YEAR: row[F.RELEASE_YEAR], F.POPULARITY: row[F.POPULARITY],
                F.DESCRIPTION: str(row[F.DESCRIPTION]), F.DURATION_SECONDS: row["duration"],
                F.WATCH_SECONDS: row["watched"], F.WATCH_RATIO: row["ratio"],
                F.LIKED: int(row["liked"]), F.SKIPPED: int(row["skipped"]),
                F.COMPLETED: int(row["ratio"] >= F.COMPLETED_WATCH_RATIO),
                F.LABEL: int(row["ratio"] >= F.ENGAGED_WATCH_RATIO or row["liked"])}))
            written += 1
    pathlib.Path(result_path).write_text(json.dumps({
        "events_read": read, "records_written": written, "dead_lettered": dead}))


def measure(target: Callable[..., None], *args: str) -> dict[str, Any]:
    """Runs `target(*args, result_path)` in a fresh process; wall time and the tree's peak RSS."""
    result_path = tempfile.mktemp(suffix=".json")
    seconds, peak = run_in_process(target, *args, result_path)
    result = json.loads(pathlib.Path(result_path).read_text())
    return {**result, "seconds": seconds, "events_per_second": result["events_read"] / seconds,
            "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="200000,1000000",
                        help="approximate generated events per run")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--titles", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="ingestion")
    args = parser.parse_args()
    from recs.data.synthetic import GeneratorConfig, generate

    root = pathlib.Path(tempfile.mkdtemp(prefix="ingestion-bench-"))
    beam_runs, pandas_runs = [], []
    for target in (int(n) for n in args.events.split(",")):
        users = max(100, round(target / (EVENTS_PER_USER_DAY * args.days)))
        raw = root / f"raw-{target}"
        started = time.perf_counter()
        data = generate(GeneratorConfig(num_users=users, num_titles=args.titles,
                                        days=args.days, seed=11), raw)
        generate_s = time.perf_counter() - started
        beam = measure(run_beam, str(raw), str(root / f"beam-{target}"), str(args.workers))
        beam.update(users=users, generate_seconds=generate_s,
                    records_per_event=beam["records_written"] / beam["events_read"])
        peer = measure(run_pandas, str(raw), str(root / f"pandas-{target}"))
        if peer["records_written"] != beam["records_written"]:
            raise RuntimeError(f"pandas wrote {peer['records_written']} records, Beam "
                               f"{beam['records_written']}: the peer does not do the same work")
        print(f"{data.num_events} events: beam {beam['events_per_second']:.0f}/s "
              f"{beam['peak_rss_mb']:.0f} MB; pandas {peer['events_per_second']:.0f}/s "
              f"{peer['peak_rss_mb']:.0f} MB", flush=True)
        beam_runs.append(beam)
        pandas_runs.append(peer)
    largest, peer = beam_runs[-1], pandas_runs[-1]
    per_core = largest["events_per_second"] / args.workers
    path = write_result(
        args.name,
        parameters={"events": args.events, "days": args.days, "titles": args.titles,
                    "beam": f"DirectRunner multi_processing, {args.workers} workers",
                    "peer": "pandas, one process, same validation/dedupe/sessions/joins/output"},
        figures={"runs": beam_runs, "events_per_second": largest["events_per_second"],
                 "events_per_second_per_core": per_core,
                 "records_per_event": largest["records_per_event"],
                 "peak_rss_mb": largest["peak_rss_mb"]},
        peers={"pandas": pandas_runs},
        ratios={"pandas_events_per_second_over_beam_per_core":
                peer["events_per_second"] / per_core,
                "beam_seconds_over_pandas_seconds": largest["seconds"] / peer["seconds"],
                "beam_peak_rss_over_pandas": largest["peak_rss_mb"] / peer["peak_rss_mb"],
                "beam_time_growth_over_event_growth":
                (largest["seconds"] / beam_runs[0]["seconds"])
                / (largest["events_read"] / beam_runs[0]["events_read"])})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
