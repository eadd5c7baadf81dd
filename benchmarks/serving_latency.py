"""Serving latency: `POST /v1/recommendations` under load from a separate process.

Processes (all on this machine's 2 cores, as a single-node deployment would share them):
    model server   `recs serve-models`  (REST + gRPC, polls for new versions every second)
    service        `recs serve`          (uvicorn, one worker)
    load generator this script's child   (open loop: requests start on a fixed schedule, and
                                          latency counts from the scheduled start, so a slow
                                          server cannot hide queueing)
    consumer       `recs consume`        (Redis Streams -> the service's SQLite store)

Figures: p50/p99 latency and achieved throughput at the target rate for the service over REST
and over gRPC to the model server; the per-stage breakdown the service reports; p99 and
failures while a new ranker version is pushed mid-run; seconds from a play event entering
the stream to the next recommendation excluding the finished title. Peer: the same work
in-process (query tower + ScaNN search + ranking the candidates, no HTTP, no JSON).

Needs a workdir with pushed models and a profile store: `make demo` (or `recs demo`) first.

    python benchmarks/serving_latency.py --workdir demo_output --rates 25,50,100 --seconds 30
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402

import recs  # noqa: E402,F401


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_http(url: str, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not become ready in {seconds} s")


_POOL = None


def _post(url: str, body: dict, timeout: float = 30.0) -> tuple[int, dict]:
    """POST on a keep-alive connection (one pool per process)."""
    global _POOL
    import urllib3

    if _POOL is None:
        _POOL = urllib3.PoolManager(maxsize=128, retries=False)
    try:
        response = _POOL.request("POST", url, body=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"},
                                 timeout=urllib3.Timeout(total=timeout))
    except urllib3.exceptions.HTTPError:
        return 0, {}
    return response.status, json.loads(response.data) if response.status == 200 else {}


def _load(url: str, users: list[str], rate: float, seconds: float, queue) -> None:
    """Open-loop load: request i is due at i / rate; latency counts from when it was due."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.5
    results = []

    def one(i: int) -> tuple[float, float, int, dict, float]:
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        status, body = _post(url, {"user_id": users[i % len(users)], "k": 10,
                                   "context": {"device_type": "tv", "hour": 20}})
        done = time.perf_counter()
        return due - start, 1000.0 * (done - due), status, body.get("timings_ms", {}), \
            done - start

    with concurrent.futures.ThreadPoolExecutor(max_workers=128) as pool:
        for item in pool.map(one, range(total)):
            results.append(item)
    queue.put(results)


def run_load(url: str, users: list[str], rate: float, seconds: float) -> list[tuple]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_load, args=(url, users, rate, seconds, queue))
    process.start()
    results = queue.get()
    process.join()
    return results


def summarize(results: list[tuple], rate: float) -> dict:
    latencies = sorted(r[1] for r in results)
    ok = [r for r in results if r[2] == 200]
    stages = {}
    for stage in ("profile", "retrieval", "ranking", "total"):
        values = [r[3][stage] for r in ok if stage in r[3]]
        if values:
            stages[stage] = statistics.median(values)
    wall = max(r[4] for r in results)
    return {"target_rps": rate, "requests": len(results), "failed": len(results) - len(ok),
            "throughput_rps": len(ok) / wall,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "max_ms": latencies[-1], "stage_median_ms": stages}


class InProcessClient:
    """The model server's predict minus the server: its registry and `run_signature`,
    called directly (no HTTP, no JSON, no gRPC)."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def predict_versioned(self, model: str, inputs: dict, signature: str = "",
                          version: int | None = None, timeout: float | None = None
                          ) -> tuple[dict, int]:
        from serving.model_server import run_signature

        loaded = self.registry.get(model, version)
        return run_signature(loaded, signature, {k: np.asarray(v) for k, v in inputs.items()}), \
            loaded.version


def in_process(workdir: pathlib.Path, users: list[str], repeats: int) -> dict:
    """The same work the service does (the project's `Recommender`: profile, retrieval,
    filtering, ranking 100 candidates) with the models called in-process."""
    from serving.model_server import ModelRegistry
    from serving.recommender import Recommender, load_catalogue
    from serving.store import SqliteProfileStore

    base = str(workdir / "serving")
    registry = ModelRegistry(base, ("retrieval", "ranker"))
    registry.load()
    store = SqliteProfileStore(str(workdir / "profiles.db"))
    recommender = Recommender(InProcessClient(registry), store,
                              load_catalogue(base, "retrieval"))

    def recommend(user: str) -> tuple[float, float, int]:
        start = time.perf_counter()
        served = recommender.recommend_detailed(user, k=10, device_type="tv", hour=20)
        return 1000.0 * (time.perf_counter() - start), served.stage_ms["retrieval"], \
            served.candidates

    for user in users[:5]:
        recommend(user)  # Warm up.
    runs = [recommend(users[i % len(users)]) for i in range(repeats)]
    totals = sorted(r[0] for r in runs)
    store.close()
    return {"p50_ms": float(np.percentile(totals, 50)), "p99_ms": float(np.percentile(totals, 99)),
            "retrieval_p50_ms": float(np.median([r[1] for r in runs])),
            "candidates_ranked": int(np.median([r[2] for r in runs]))}


def _push_copy(base: pathlib.Path, model: str) -> int:
    versions = sorted(int(p.name) for p in (base / model).iterdir() if p.name.isdigit())
    new = versions[-1] + 1
    staging = base / model / f".staging-{new}"
    shutil.copytree(base / model / str(versions[-1]), staging)
    staging.rename(base / model / str(new))
    return new


def freshness(service_url: str, workdir: pathlib.Path, users: list[str], trials: int) -> dict:
    """Seconds from a finishing play event entering the stream to the next list without it."""
    import redis

    from serving.consumer import publish

    redis_dir = tempfile.mkdtemp(prefix="recs-bench-redis-")
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", redis_dir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    consumer = subprocess.Popen(
        [sys.executable, "-m", "recs_cli.main", "consume", "--redis", url,
         "--store", str(workdir / "profiles.db"), "--catalogue",
         str(workdir / "raw" / "titles.jsonl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    durations = {json.loads(line)["title_id"]: json.loads(line)["duration_seconds"]
                 for line in (workdir / "raw" / "titles.jsonl").read_text().splitlines()}
    seconds = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # The consumer imports TensorFlow, then joins.
            try:
                if any(group["consumers"] for group in client.xinfo_groups("recs:events")):
                    break
            except redis.ResponseError:
                pass  # No stream yet.
            time.sleep(0.2)
        for trial in range(trials):
            user = users[-(trial + 1)]
            status, body = _post(f"{service_url}/v1/recommendations", {"user_id": user, "k": 10})
            title = body["items"][0]["title_id"]
            sent = time.perf_counter()
            publish(client, [{"event_id": f"bench-{time.time_ns()}", "user_id": user,
                              "title_id": title, "device_type": "tv",
                              "event_type": "play_stop", "ts": int(time.time()),
                              "watch_seconds": float(durations[title])}])
            while True:
                _, body = _post(f"{service_url}/v1/recommendations", {"user_id": user, "k": 10})
                if title not in [item["title_id"] for item in body["items"]]:
                    break
                if time.perf_counter() - sent > 30:
                    raise RuntimeError("the finished title never left the list")
            seconds.append(time.perf_counter() - sent)
    finally:
        consumer.terminate()
        server.terminate()
        shutil.rmtree(redis_dir, ignore_errors=True)
    return {"trials": trials, "median_s": statistics.median(seconds), "max_s": max(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    parser.add_argument("--rates", type=lambda text: [float(r) for r in text.split(",")],
                        default=[25.0, 50.0, 100.0])
    parser.add_argument("--swap-rate", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--freshness-trials", type=int, default=10)
    args = parser.parse_args()

    source = args.workdir.resolve()
    work = pathlib.Path(tempfile.mkdtemp(prefix="recs-bench-serving-"))
    # A copy: the swap pushes versions, and the freshness run writes to the store.
    shutil.copytree(source / "serving", work / "serving")
    shutil.copy(source / "profiles.db", work / "profiles.db")
    shutil.copytree(source / "raw", work / "raw", ignore=shutil.ignore_patterns("events"))
    users = [json.loads(line)["user_id"]
             for line in (work / "raw" / "users.jsonl").read_text().splitlines()][:500]

    started = time.perf_counter()
    peer = in_process(work, users, repeats=300)
    rest_port, grpc_port = _free_port(), _free_port()
    model_server = subprocess.Popen(
        [sys.executable, "-m", "recs_cli.main", "serve-models", "--base", str(work / "serving"),
         "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), "--poll-seconds", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    services = []
    figures = {}
    try:
        _wait_http(f"http://127.0.0.1:{rest_port}/v1/models/ranker")
        for protocol, target in (("rest", f"http://127.0.0.1:{rest_port}"),
                                 ("grpc", f"127.0.0.1:{grpc_port}")):
            port = _free_port()
            service = subprocess.Popen(
                [sys.executable, "-m", "recs_cli.main", "serve", "--workdir", str(work),
                 "--model-server", target, "--protocol", protocol, "--port", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            services.append(service)
            url = f"http://127.0.0.1:{port}"
            _wait_http(f"{url}/readyz")
            run_load(f"{url}/v1/recommendations", users, 20, 5)  # Warm up.
            figures[f"service_{protocol}"] = []
            for rate in args.rates:
                results = run_load(f"{url}/v1/recommendations", users, rate, args.seconds)
                figures[f"service_{protocol}"].append(summarize(results, rate))
                print(protocol, json.dumps(figures[f"service_{protocol}"][-1]), flush=True)
                time.sleep(2)  # Let queues drain between rates.

        # Swap: push a new ranker version mid-run on the gRPC service.
        url = f"http://127.0.0.1:{port}/v1/recommendations"
        holder: dict = {}
        loader = threading.Thread(target=lambda: holder.update(
            results=run_load(url, users, args.swap_rate, args.seconds)))
        loader.start()
        time.sleep(args.seconds / 3)
        swap_at = time.perf_counter()
        new_version = _push_copy(work / "serving", "ranker")
        loader.join()
        results = holder["results"]
        figures["swap"] = {**summarize(results, args.swap_rate), "new_version": new_version,
                           "pushed_after_s": round(swap_at - started, 1)}
        # Requests scheduled in the 5 s after the push (loading and warming take place then).
        push_offset = args.seconds / 3 + 0.5
        during = sorted(r[1] for r in results if push_offset <= r[0] < push_offset + 5)
        figures["swap"]["p99_ms_in_5s_after_push"] = float(np.percentile(during, 99))
        print("swap", json.dumps(figures["swap"]), flush=True)
        figures["freshness"] = freshness(f"http://127.0.0.1:{port}", work, users,
                                         args.freshness_trials)
        print("freshness", json.dumps(figures["freshness"]), flush=True)
    finally:
        for service in services:
            service.terminate()
        model_server.terminate()
    shutil.rmtree(work, ignore_errors=True)

    def at(protocol: str, rate: float) -> dict:
        return next(f for f in figures[f"service_{protocol}"] if f["target_rps"] == rate)

    steady = at("grpc", args.swap_rate)
    ratios = {
        **{f"{protocol}_p50_at_{rate:g}rps_over_in_process_p50":
           at(protocol, rate)["p50_ms"] / peer["p50_ms"]
           for protocol in ("rest", "grpc") for rate in args.rates},
        "swap_p99_over_steady_grpc_p99": figures["swap"]["p99_ms"] / steady["p99_ms"],
    }
    path = write_result(
        "serving",
        {"rates_rps": args.rates, "swap_rate_rps": args.swap_rate, "seconds": args.seconds,
         "users": len(users),
         "catalogue": sum(1 for _ in (source / "raw" / "titles.jsonl").open()),
         "processes": "model server, service, load generator, consumer on one 2-core machine",
         "goal": "p99 <= 25 ms at 100 rps; service p50 <= 2x in-process; swap p99 <= 2x"},
        figures, {"in_process": peer}, ratios)
    print(json.dumps(ratios, indent=2))
    print(f"wrote {path}; machine {machine()['cpu']}")


if __name__ == "__main__":
    main()
