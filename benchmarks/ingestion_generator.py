"""The log generator at the issue's scale: one 10M-event day for 1M users and 100k titles.

    python benchmarks/ingestion_generator.py                # 100k users, then 1M users
    python benchmarks/ingestion_generator.py --users 100000,1000000 --sessions 1.8

Each size runs in a fresh process; the figures are wall time, lines/s, the process's peak
resident memory and the bytes written. Memory should follow the user and title tables (about
100 bytes a user), not the number of events: the ratio of memory growth to event growth says so.
Writes benchmarks/results/ingestion_generator.json.
"""

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import run_in_process, write_result  # noqa: E402


def run_generate(out: str, users: int, titles: int, sessions: float, result_path: str) -> None:
    import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from recs.data.synthetic import GeneratorConfig, generate

    data = generate(GeneratorConfig(num_users=users, num_titles=titles, days=1, seed=5,
                                    sessions_per_user_day=sessions), out)
    pathlib.Path(result_path).write_text(json.dumps({
        "lines": data.lines_written, "events": data.num_events, "faults": data.faults}))


def measure(users: int, titles: int, sessions: float, root: pathlib.Path) -> dict[str, Any]:
    out = root / f"users-{users}"
    result_path = root / f"users-{users}.json"
    seconds, peak = run_in_process(run_generate, str(out), users, titles, sessions,
                                   str(result_path))
    result = json.loads(result_path.read_text())
    written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out)
    return {**result, "users": users, "titles": titles, "seconds": seconds,
            "lines_per_second": result["lines"] / seconds, "peak_rss_mb": peak,
            "bytes_written": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="100000,1000000")
    parser.add_argument("--titles", type=int, default=100_000)
    parser.add_argument("--sessions", type=float, default=1.8,
                        help="sessions per user and day (1.8 gives ~10M events at 1M users)")
    parser.add_argument("--name", default="ingestion_generator")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="generator-bench-"))
    runs = []
    for users in (int(n) for n in args.users.split(",")):
        runs.append(measure(users, args.titles, args.sessions, root))
        print(f"{runs[-1]['users']} users: {runs[-1]['lines']} lines in "
              f"{runs[-1]['seconds']:.0f} s ({runs[-1]['lines_per_second']:.0f}/s), "
              f"peak {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    small, large = runs[0], runs[-1]
    path = write_result(
        args.name,
        parameters={"users": args.users, "titles": args.titles, "days": 1,
                    "sessions_per_user_day": args.sessions},
        figures={"runs": runs, "lines_per_second": large["lines_per_second"],
                 "peak_rss_mb": large["peak_rss_mb"]},
        peers={},
        ratios={"event_growth": large["lines"] / small["lines"],
                "time_growth": large["seconds"] / small["seconds"],
                "peak_rss_growth": large["peak_rss_mb"] / small["peak_rss_mb"]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
