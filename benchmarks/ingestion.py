"""Ingestion throughput and memory: Beam (multi-process DirectRunner) against one pandas process.

    python benchmarks/ingestion.py --events 200000,1000000

For each size, generates seeded streaming logs (with the generator's injected faults) and runs
`transforms.ingestion` on Beam's DirectRunner with two worker processes. The peer, in the same
run and on the same files, is a plain single-process pandas script doing the same work: the
same validation (`recs.contract.events.parse_event`), deduplication by event id, sessionization at
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
from typing import Any, Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from common import MemoryCapExceeded, run_in_process, write_result  # noqa: E402


EVENTS_PER_USER_DAY = 3.5  # measured mean of the generator's defaults (177k / 5000 / 10)


def run_beam(raw: str, out: str, workers: int, result_path: str) -> None:
    from transforms.ingestion import IngestionConfig, run_ingestion

    config = IngestionConfig.for_raw(raw, out)
    report = run_ingestion(config, ["--direct_running_mode=multi_processing",
                                    f"--direct_num_workers={workers}"])
    pathlib.Path(result_path).write_text(json.dumps({
        "events_read": report.events_read, "records_written": report.records_written,
        "dead_lettered": report.events_dead_lettered, "by_reason": report.dead_lettered,
        "balanced": report.balanced}))


def run_pandas(raw: str, out: str, result_path: str) -> None:
    """The single-process peer: the same cleaning rules and aggregation with pandas."""
    import pandas as pd
    import tensorflow as tf

    from recs import features as F
    from recs.contract.events import Reason, parse_event
    from recs.contract.layout import EXAMPLES, RawLayout, day_partition
    from transforms.examples import encode_examples
    from transforms.ingestion import IngestionConfig, delivery_day

    rules = IngestionConfig(events_glob="", users_path="", titles_path="", output_dir="")
    logs = RawLayout(raw)
    read = 0
    dead: dict[str, int] = {}

    def refuse(reason: str, count: int) -> None:
        if count:
            dead[reason] = dead.get(reason, 0) + count

    events: list[dict[str, Any]] = []
    for path in sorted(logs.events.glob("*/*.jsonl")):
        day = delivery_day(str(path))
        start = int(pd.Timestamp(day, tz="UTC").timestamp())
        low, high = start - rules.max_lateness_seconds, start + 86_400 + rules.max_early_seconds
        with open(path) as handle:
            for line in handle:
                read += 1
                parsed = parse_event(line)
                if parsed.event is None:
                    refuse(parsed.reason, 1)
                elif not low <= parsed.event["ts"] < high:
                    refuse(Reason.TIMESTAMP_OUT_OF_RANGE, 1)
                else:
                    events.append({**parsed.event, "arrival_day": day})
    frame = pd.DataFrame(events)
    frame["watch_seconds"] = frame.get("watch_seconds", 0.0).fillna(0.0)
    before = len(frame)
    frame = frame.drop_duplicates("event_id", keep="first")
    refuse(Reason.DUPLICATE_EVENT_ID, before - len(frame))
    per_hour = frame.groupby([F.USER_ID, frame["ts"] // 3600])["ts"].transform("size")
    bot = per_hour > rules.bot_events_per_hour
    refuse(Reason.BOT_TRAFFIC, int(bot.sum()))
    frame = frame[~bot].sort_values([F.USER_ID, "ts", "event_id"], kind="stable")
    new_user = frame[F.USER_ID].ne(frame[F.USER_ID].shift())
    # A play is activity from its start to the same title's next stop (within
    # max_play_seconds); a session ends after a gap past every earlier activity.
    stops = frame["ts"].where(frame["event_type"] == "play_stop")
    next_stop = stops.groupby([frame[F.USER_ID], frame[F.TITLE_ID]]).bfill()
    holds = (frame["event_type"] == "play_start") & (
        next_stop - frame["ts"] <= rules.max_play_seconds)
    end = frame["ts"].where(~holds, next_stop)
    active_until = end.groupby(frame[F.USER_ID]).cummax().groupby(frame[F.USER_ID]).shift()
    gap = (frame["ts"] - active_until).fillna(0) > rules.session_gap_seconds
    frame["session"] = (new_user | gap).cumsum()
    frame["span"] = frame.groupby("session")["arrival_day"].transform("first")

    # History: titles of the user's earlier sessions, most recent first (as the Beam job,
    # which builds it before the joins).
    histories: dict[int, str] = {}
    for _, sessions in frame.groupby(F.USER_ID, sort=False):
        history: list[str] = []
        for session, titles_played in sessions.groupby("session", sort=True)[F.TITLE_ID]:
            histories[session] = "|".join(history[:F.MAX_WATCHED])
            for title in titles_played:
                if title in history:
                    history.remove(title)
                history.insert(0, title)

    base = pd.read_json(logs.users, lines=True, dtype={F.USER_ID: str})
    updates = [pd.read_json(p, lines=True, dtype={F.USER_ID: str})
               for p in sorted(logs.profile_updates.glob("*/*.jsonl"))
               if p.stat().st_size]
    profiles = pd.concat([base.assign(updated_ts=0), *updates]).sort_values("updated_ts")
    titles = pd.read_json(logs.titles, lines=True).set_index(F.TITLE_ID)
    unknown_user = ~frame[F.USER_ID].isin(base[F.USER_ID])
    refuse(Reason.UNKNOWN_USER, int(unknown_user.sum()))
    frame = frame[~unknown_user]
    unknown_title = ~frame[F.TITLE_ID].isin(titles.index)
    refuse(Reason.UNKNOWN_TITLE, int(unknown_title.sum()))
    frame = frame[~unknown_title].copy()
    frame["stop_seconds"] = frame["watch_seconds"].where(frame["event_type"] == "play_stop", 0.0)
    duration = titles[F.DURATION_SECONDS].clip(lower=1).astype(int)
    frame["duration"] = frame[F.TITLE_ID].map(duration)
    implausible = (frame["stop_seconds"] > rules.max_watch_ratio * frame["duration"]).groupby(
        [frame["session"], frame[F.TITLE_ID]]).transform("any")
    refuse(Reason.IMPLAUSIBLE_WATCH_TIME, int(implausible.sum()))
    frame = frame[~implausible]
    frame["is_like"] = frame["event_type"] == "like"
    frame["is_skip"] = frame["event_type"] == "skip"
    records = frame.groupby(["session", F.TITLE_ID], sort=False).agg(
        user_id=(F.USER_ID, "first"), ts=("ts", "first"), span=("span", "first"),
        device_type=(F.DEVICE_TYPE, "first"),
        watched=("stop_seconds", "sum"), liked=("is_like", "any"),
        skipped=("is_skip", "any")).reset_index()
    starts = frame.groupby("session")["ts"].min()
    records["session_ts"] = records["session"].map(starts)
    # The profile in force when the session started.
    records = pd.merge_asof(records.sort_values("session_ts"), profiles.drop(
        columns=[c for c in profiles if c not in (F.USER_ID, "updated_ts", F.AGE, F.COUNTRY,
                                                  F.SUBSCRIPTION_TIER, F.PREFERRED_GENRES)]),
        left_on="session_ts", right_on="updated_ts", by=F.USER_ID)
    records = records.join(titles, on=F.TITLE_ID)
    records["duration"] = records[F.DURATION_SECONDS].clip(lower=1).astype(int)
    records["watched"] = records[["watched", "duration"]].min(axis=1)
    records["ratio"] = records["watched"] / records["duration"]
    records["history"] = records["session"].map(histories)

    records = records.assign(**{
        F.HOUR: (records["ts"] // 3600) % 24, F.TIMESTAMP: records["ts"],
        F.DURATION_SECONDS: records["duration"], F.WATCH_SECONDS: records["watched"],
        F.WATCH_RATIO: records["ratio"], F.LIKED: records["liked"].astype(int),
        F.SKIPPED: records["skipped"].astype(int),
        F.COMPLETED: (records["ratio"] >= F.COMPLETED_WATCH_RATIO).astype(int),
        F.LABEL: ((records["ratio"] >= F.ENGAGED_WATCH_RATIO) | records["liked"]).astype(int)})
    for key in (F.COUNTRY, F.SUBSCRIPTION_TIER, F.PREFERRED_GENRES, F.GENRE, F.DESCRIPTION):
        records[key] = records[key].astype(str)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    written = 0
    for span, rows in records.groupby("span"):
        path = pathlib.Path(out, EXAMPLES, day_partition(span))
        path.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(path / "interactions.tfrecord.gz"), options) as writer:
            for start in range(0, len(rows), 8192):
                chunk = rows.iloc[start:start + 8192][list(F.RAW_FEATURE_TYPES)]
                for example in encode_examples(chunk.to_dict("records")):
                    writer.write(example)
                    written += 1
    pathlib.Path(result_path).write_text(json.dumps({
        "events_read": read, "records_written": written, "dead_lettered": sum(dead.values()),
        "by_reason": dict(sorted(dead.items()))}))


def run_generate(raw: str, users: int, titles: int, days: int, result_path: str) -> None:
    from recs.data.synthetic import GeneratorConfig, generate

    data = generate(GeneratorConfig(num_users=users, num_titles=titles, days=days, seed=11), raw)
    pathlib.Path(result_path).write_text(json.dumps({
        "events_read": data.lines_written, "events": data.num_events, "faults": data.faults}))


def measure(target: Callable[..., None], *args: Any, max_rss_mb: float = 0.0
            ) -> dict[str, Any]:
    """Runs `target(*args, result_path)` in a fresh process; wall time and the tree's peak RSS."""
    result_path = tempfile.mktemp(suffix=".json")
    seconds, peak = run_in_process(target, *args, result_path, max_rss_mb=max_rss_mb)
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
    parser.add_argument("--peer-max-events", type=int, default=1_500_000,
                        help="run the pandas peer only up to this size (it holds everything)")
    parser.add_argument("--max-rss-gb", type=float, default=18.0,
                        help="stop a run whose process tree holds more than this")
    parser.add_argument("--name", default="ingestion")
    parser.add_argument("--note", default="",
                        help="recorded in the parameters, e.g. that other work shared the machine")
    args = parser.parse_args()

    root = pathlib.Path(tempfile.mkdtemp(prefix="ingestion-bench-"))
    cap = args.max_rss_gb * 1024
    generator_runs: list[dict[str, Any]] = []
    beam_runs: list[dict[str, Any]] = []
    pandas_runs: list[dict[str, Any]] = []
    for target in (int(n) for n in args.events.split(",")):
        users = max(100, round(target / (EVENTS_PER_USER_DAY * args.days)))
        raw = root / f"raw-{target}"
        generated = measure(run_generate, str(raw), users, args.titles, args.days)
        generated.update(users=users, titles=args.titles, days=args.days)
        generator_runs.append(generated)
        print(f"generated {generated['events_read']} lines: "
              f"{generated['events_per_second']:.0f}/s, {generated['peak_rss_mb']:.0f} MB",
              flush=True)
        try:
            beam = measure(run_beam, str(raw), str(root / f"beam-{target}"), args.workers,
                           max_rss_mb=cap)
        except MemoryCapExceeded as error:
            beam_runs.append({"events_read": generated["events_read"], "aborted": str(error)})
            print(f"Beam: {error}", flush=True)
            continue
        beam.update(users=users, records_per_event=beam["records_written"] / beam["events_read"])
        beam_runs.append(beam)
        print(f"{beam['events_read']} events: beam {beam['events_per_second']:.0f}/s "
              f"{beam['peak_rss_mb']:.0f} MB", flush=True)
        if beam["events_read"] > args.peer_max_events:
            continue
        peer = measure(run_pandas, str(raw), str(root / f"pandas-{target}"), max_rss_mb=cap)
        if (peer["records_written"], peer["by_reason"]) != (beam["records_written"],
                                                            beam["by_reason"]):
            raise RuntimeError(f"pandas wrote {peer['records_written']} records and refused "
                               f"{peer['by_reason']}; Beam {beam['records_written']} and "
                               f"{beam['by_reason']}: the peer does not do the same work")
        peer["events_read_by_beam"] = beam["events_read"]
        pandas_runs.append(peer)
        print(f"    pandas {peer['events_per_second']:.0f}/s {peer['peak_rss_mb']:.0f} MB",
              flush=True)

    finished = [run for run in beam_runs if "aborted" not in run]
    compared = finished[-1] if not pandas_runs else next(
        run for run in finished if run["events_read"] == pandas_runs[-1]["events_read"])
    largest = finished[-1]
    per_core = compared["events_per_second"] / args.workers
    ratios: dict[str, float] = {}
    if pandas_runs:
        peer = pandas_runs[-1]
        ratios.update({
            "pandas_events_per_second_over_beam_per_core": peer["events_per_second"] / per_core,
            "beam_seconds_over_pandas_seconds": compared["seconds"] / peer["seconds"],
            "beam_peak_rss_over_pandas": compared["peak_rss_mb"] / peer["peak_rss_mb"]})
    if len(finished) > 1:
        first = finished[0]
        growth = largest["events_read"] / first["events_read"]
        ratios.update({
            "beam_time_growth_over_event_growth": largest["seconds"] / first["seconds"] / growth,
            "beam_peak_rss_growth": largest["peak_rss_mb"] / first["peak_rss_mb"],
            # Where Beam's time goes: a fixed start-up and a marginal cost per event.
            "beam_marginal_events_per_second": (largest["events_read"] - first["events_read"])
            / (largest["seconds"] - first["seconds"]),
            "beam_fixed_seconds": first["seconds"] - first["events_read"] * (
                largest["seconds"] - first["seconds"]) / (largest["events_read"]
                                                         - first["events_read"])})
    path = write_result(
        args.name,
        parameters={"events": args.events, "days": args.days, "titles": args.titles,
                    "beam": f"DirectRunner multi_processing, {args.workers} workers",
                    "peer": "pandas, one process, same rules/dedupe/sessions/joins/spans",
                    "max_rss_gb": args.max_rss_gb, "note": args.note},
        figures={"generator": generator_runs, "runs": beam_runs,
                 "events_per_second": largest["events_per_second"],
                 "events_per_second_per_core": largest["events_per_second"] / args.workers,
                 "records_per_event": largest["records_per_event"],
                 "peak_rss_mb": largest["peak_rss_mb"]},
        peers={"pandas": pandas_runs},
        ratios=ratios)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
