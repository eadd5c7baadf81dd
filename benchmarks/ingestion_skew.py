"""Ingestion's memory on days that are mostly junk or held by one key, beside a clean day.

    python benchmarks/ingestion_skew.py --lines 1000000

Every day here has the same number of lines, one file, the same users and catalogue tables:

    clean       a generated day (`recs.data.synthetic`, its usual faults included)
    junk        every line refused while reading: bytes that are not UTF-8, cut JSON, wrong
                types, NaN, unknown fields' values, nested arrays, ids out of the contract
    replayed    one valid event line delivered N times (a replayed log: N - 1 duplicates)
    conflicts   one event id, N copies each with another watch time (all refused, as the
                job cannot tell the real copy)
    bot         one user, N distinct valid events spread over the day (all in hours above
                the bot rate)

Each runs `transforms.ingestion` in a fresh process on Beam's DirectRunner (two worker
processes, as `benchmarks/ingestion.py`); its peak is the process tree's resident memory
sampled every 0.2 s. The goal: no shape above the clean day's peak. The report of every run
must balance (read = accepted + dead-lettered).

Writes benchmarks/results/ingestion_skew.json.
"""

import argparse
import datetime as dt
import json
import pathlib
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from common import (MemoryCapExceeded, cpu_flags, matmul_gflops,  # noqa: E402
                    run_in_process, write_result)
from ingestion import EVENTS_PER_USER_DAY, run_generate  # noqa: E402

SHAPES = ("clean", "junk", "replayed", "conflicts", "bot")


def run_ingest(raw: str, out: str, result_path: str) -> None:
    from transforms.ingestion import IngestionConfig, run_ingestion

    report = run_ingestion(IngestionConfig.for_raw(raw, out),
                           ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    pathlib.Path(result_path).write_text(json.dumps({
        "events_read": report.events_read, "records_written": report.records_written,
        "events_accepted": report.events_accepted,
        "dead_lettered": report.events_dead_lettered, "by_reason": report.dead_lettered,
        "balanced": report.balanced}))


def _junk_line(n: int, filler: str) -> bytes:
    """One refused line of the junk day's classes, in turn (about a clean line's length)."""
    kind = n % 8
    if kind == 0:
        return bytes((n * 7 + i) % 256 for i in range(180)).replace(b"\n", b" ")
    if kind == 1:
        return ('{"event_id": "e%d", "user_id": "u000001", "title_id": "t000001", "devi'
                % n).encode()
    if kind == 2:
        return json.dumps({"event_id": f"e{n}", "user_id": 17, "title_id": ["t"],
                           "device_type": {"x": 1}, "event_type": "play_stop", "ts": "soon",
                           "note": filler}).encode()
    if kind == 3:
        return (b'{"event_id": "e%d", "user_id": "u000001", "title_id": "t000001", '
                b'"device_type": "tv", "event_type": "play_stop", "ts": 1767650962, '
                b'"watch_seconds": NaN}' % n)
    if kind == 4:
        return json.dumps({"event_id": f"e{n}", "user_id": "u000001", "title_id": "t000001",
                           "device_type": "toaster", "event_type": "teleport",
                           "ts": 10 ** 30, "position_seconds": -1e308}).encode()
    if kind == 5:
        return (b"[" * 60 + b"1" + b"]" * 60) + filler.encode()[:60]
    if kind == 6:
        return json.dumps({"event_id": "\u0000" * 3 + str(n), "user_id": "../../etc",
                           "title_id": "t" * 300, "device_type": "tv",
                           "event_type": "play_start", "ts": 1767650962}).encode()
    return b"\xef\xbb\xbf\xff\xfe" + filler.encode()[:170]


def _event(n: int, user: str, title: str, ts: int, kind: str, watch: float = 0.0) -> bytes:
    event = {"event_id": f"e20260105-{n:010d}", "user_id": user, "title_id": title,
             "device_type": "tv", "event_type": kind, "ts": ts, "position_seconds": watch}
    if kind == "play_stop":
        event["watch_seconds"] = watch
    return json.dumps(event).encode()


def write_day(shape: str, clean: pathlib.Path, target: pathlib.Path, lines: int) -> int:
    """A raw folder of one day of `shape`, with the clean day's tables; returns its lines."""
    clean_events = sorted((clean / "events").glob("day=*/*.jsonl"))
    day_folder = clean_events[0].parent.name
    day = dt.date.fromisoformat(day_folder.split("=")[1])
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())
    (target / "events" / day_folder).mkdir(parents=True)
    for table in ("users.jsonl", "titles.jsonl"):
        shutil.copy(clean / table, target / table)
    titles = [json.loads(row)["title_id"]
              for row in (clean / "titles.jsonl").read_text().splitlines()[:500]]
    filler = "x" * 200
    written = 0
    with (target / "events" / day_folder / "part-00000.jsonl").open("wb") as out:
        if shape == "clean":
            for path in clean_events:
                with path.open("rb") as handle:
                    for line in handle:
                        if written == lines:
                            break
                        out.write(line if line.endswith(b"\n") else line + b"\n")
                        written += 1
            return written
        first = _event(0, "u000000", titles[0], start + 3600, "play_stop", 1200.0)
        for n in range(lines):
            if shape == "junk":
                line = _junk_line(n, filler)
            elif shape == "replayed":
                line = first
            elif shape == "conflicts":
                line = _event(0, "u000000", titles[0], start + 3600, "play_stop",
                              float(n % 5000) + 0.5)
            else:  # bot
                kind = "play_start" if n % 2 == 0 else "play_stop"
                line = _event(n, "u000000", titles[(n // 2) % len(titles)],
                              start + (n * 86_399) // lines, kind, 30.0 * (n % 2))
            out.write(line + b"\n")
            written += 1
    return written


def measure(shape: str, raw: pathlib.Path, work: pathlib.Path, max_rss_mb: float
            ) -> dict[str, Any]:
    result_path = work / f"{shape}.result.json"
    out = work / f"{shape}-out"
    try:
        seconds, peak = run_in_process(run_ingest, str(raw), str(out), str(result_path),
                                       max_rss_mb=max_rss_mb)
    except MemoryCapExceeded as error:
        return {"error": str(error), "peak_rss_mb": max_rss_mb}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {**json.loads(result_path.read_text()), "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--titles", type=int, default=2000)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--max-rss-gb", type=float, default=12.0,
                        help="a run over this is stopped and reported as such")
    parser.add_argument("--name", default="ingestion_skew")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args()
    shapes = [shape for shape in args.shapes.split(",") if shape]
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        raise SystemExit(f"--shapes: unknown {unknown}; expected some of {list(SHAPES)}")
    calibration = {"cpu_flags": cpu_flags(), "matmul_gflops_float32_1_thread":
                   matmul_gflops(1.0)}
    work = pathlib.Path(tempfile.mkdtemp(prefix="ingestion-skew-"))
    try:
        clean = work / "generated"
        # A few more users than the lines need: the clean day is cut at exactly --lines.
        run_in_process(run_generate, str(clean), int(args.lines / EVENTS_PER_USER_DAY * 1.2),
                       args.titles, 1, str(work / "generated.json"))
        figures: dict[str, Any] = {}
        for shape in shapes:
            raw = work / shape
            lines = write_day(shape, clean, raw, args.lines)
            figures[shape] = {"lines": lines, **measure(shape, raw, work,
                                                        args.max_rss_gb * 1024)}
            shutil.rmtree(raw)
            print(shape, json.dumps(figures[shape]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    clean_peak = figures.get("clean", {}).get("peak_rss_mb")
    ratios = {f"{shape}_peak_over_clean": (figures[shape]["peak_rss_mb"] / clean_peak
                                          if clean_peak else None)
              for shape in shapes if shape != "clean"}
    figures["within_clean_day_memory"] = bool(clean_peak) and all(
        ratio is not None and ratio <= 1.0 for ratio in ratios.values())
    parameters = {"lines": args.lines, "titles": args.titles, "shapes": shapes,
                  "runner": "DirectRunner multi_processing, 2 workers",
                  "max_rss_gb": args.max_rss_gb,
                  "note": args.note or "nothing else ran on the machine"}
    path = write_result(args.name, parameters, figures, {"clean": figures.get("clean")},
                        ratios, calibration)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
