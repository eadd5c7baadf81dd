"""Serving latency at a streaming service's scale: `POST /v1/recommendations` under open-loop
load from its own process, over REST and over gRPC to the model server.

Processes, all on this machine's 2 cores:
    model server   `serving.model_server.serve_models` (REST + gRPC; polls for new versions)
    service        `recs serve --config` (uvicorn, one worker)
    load generator a child of this script (asyncio + aiohttp, open loop: request i is due at
                   i / rate and its latency counts from then, so queueing cannot hide)

World: 100,000 titles (a generated catalogue; the models are trained on a generated log over
it, `tfx_pipeline.world`), 200 candidates retrieved per request (ScaNN, k=200) and ranked, and
a profile store holding 1,000,000 users (the world's users and generated ones with plays), so
requests hit users at random as production traffic does.

Figures (`benchmarks/results/serving.json`): for each protocol and target rate, achieved
throughput, p50/p99 latency, failures and CPU milliseconds per request of each process; the
saturation rate; p99 and failures while a new recommender version is pushed mid-run; the
two-call path (retrieval, then the ranker over raw rows) with server-side batching off and
on. Peers, in the same run: the signatures alone with tensors ready (the floor), and the
project's `Recommender` with the models in-process (`serving.clients.local.LocalClient`).

    python benchmarks/serving_latency.py [--world DIR] [--rates 50,100,200,300,400]
"""

import argparse
import asyncio
import json
import multiprocessing
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from common import write_result  # noqa: E402

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from recs.config import IndexConfig, RankerConfig, RetrievalConfig, TrainingConfig  # noqa: E402
from recs.data.synthetic import GeneratorConfig  # noqa: E402
from tfx_pipeline.world import WorldConfig  # noqa: E402

WORLD = WorldConfig(
    generator=GeneratorConfig(num_users=20_000, num_titles=100_000, days=2, seed=21,
                              sessions_per_user_day=1.0),
    retrieval=RetrievalConfig(training=TrainingConfig(batch_size=512, epochs=2,
                                                      learning_rate=0.05,
                                                      optimizer="adagrad")),
    ranker=RankerConfig(training=TrainingConfig(batch_size=512, epochs=1, learning_rate=0.003,
                                                optimizer="adam")),
    index=IndexConfig(k=200, eval_queries=500))
"""The benchmark's world: a 100k-title catalogue, 200 candidates per request."""
STORE_USERS = 1_000_000
PLAYS_PER_USER = 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_http(url: str, seconds: float = 600.0) -> None:
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


def profile_store(world_root: pathlib.Path, users: int) -> tuple[pathlib.Path, list[str]]:
    """A SQLite profile store holding `users` users: the world's (profiles and plays from its
    examples) and generated ones with `PLAYS_PER_USER` plays drawn by popularity. Built once
    per world; returns its path and every user id."""
    from recs.contract.layout import RunLayout
    from recs.data.catalogue import read_jsonl
    from serving.online.store import SqliteProfileStore, load_store

    path = world_root / f"profiles-{users}.db"
    ids_path = world_root / f"profiles-{users}.ids"
    if path.exists() and ids_path.exists():
        return path, ids_path.read_text().split()
    layout = RunLayout(world_root)
    store = SqliteProfileStore(str(path) + ".partial")
    load_store(store, str(layout.users), layout.examples_glob)
    known = [row["user_id"] for row in read_jsonl(str(layout.users))]
    titles = read_jsonl(str(layout.titles))
    ids = np.array([row["title_id"] for row in titles])
    weights = np.array([row["popularity"] for row in titles], dtype=float)
    weights /= weights.sum()
    genres = sorted({row["genre"] for row in titles})
    rng = np.random.default_rng(5)
    now = int(time.time())
    generated = [f"s{index:07d}" for index in range(users - len(known))]
    for start in range(0, len(generated), 50_000):
        block = generated[start:start + 50_000]
        store.upsert_profiles([{
            "user_id": user, "age": int(rng.integers(16, 80)),
            "country": str(rng.choice(["us", "de", "fr", "br", "in"])),
            "subscription_tier": str(rng.choice(["basic", "standard", "premium"])),
            "preferred_genres": "|".join(rng.choice(genres, size=2, replace=False))}
            for user in block])
        played = rng.choice(ids, size=(len(block), PLAYS_PER_USER), p=weights)
        store.record_plays([(user, str(title), now - int(rng.integers(0, 30 * 86_400)))
                            for user, row in zip(block, played) for title in row])
        store.mark_finished([(user, str(row[0])) for user, row in zip(block, played)])
    store.close()
    pathlib.Path(str(path) + ".partial").rename(path)
    ids_path.write_text("\n".join(known + generated))
    return path, known + generated


def _start_model_server(serving_dir: pathlib.Path, batching: bool, **overrides
                        ) -> tuple[subprocess.Popen, str, str]:
    """The model server in its own process; `overrides` are `ModelServingConfig` fields."""
    rest, grpc = _free_port(), _free_port()
    settings = ", ".join(f"{key}={value!r}" for key, value in overrides.items())
    code = ("import recs, time\nfrom serving.model_server import serve_models\n"
            "from serving.model_server.config import ModelServingConfig\n"
            # Held in a name: a collected grpc.Server stops serving.
            f"server = serve_models(ModelServingConfig.local({str(serving_dir)!r}, "
            f"rest_port={rest}, grpc_port={grpc}, poll_seconds=1.0, "
            f"enable_batching={batching}{', ' + settings if settings else ''}))\n"
            "while True: time.sleep(3600)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_http(f"http://127.0.0.1:{rest}/v1/models/recommender")
    return process, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc}"


def _start_service(config, work: pathlib.Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    config_path = work / f"service-{port}.json"
    config_path.write_text(config.to_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "recs_cli.main", "serve", "--config", str(config_path),
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/readyz")
    return process, url


def _load(url: str, users: list[str], rate: float, seconds: float, seed: int, queue) -> None:
    """Open-loop load from this process; puts (due s, latency ms, status, body timings)."""
    import aiohttp

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(users), size=int(rate * seconds))
    devices = ("tv", "mobile", "tablet", "web")

    async def run() -> list:
        connector = aiohttp.TCPConnector(limit=512, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = time.perf_counter() + 0.5

            async def one(index: int) -> tuple:
                due = start + index / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                body = {"user_id": users[picks[index]], "k": 10,
                        "context": {"device_type": devices[index % 4], "hour": index % 24}}
                try:
                    async with session.post(url, json=body) as response:
                        payload = await response.json(content_type=None)
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    payload, status = {}, 0
                done = time.perf_counter()
                return (due - start, 1000.0 * (done - due), status,
                        payload.get("timings_ms", {}) if isinstance(payload, dict) else {},
                        payload.get("fallback") if isinstance(payload, dict) else None)

            return await asyncio.gather(*(one(i) for i in range(len(picks))))

    started_cpu = time.process_time()
    results = asyncio.run(run())
    queue.put((results, 1000.0 * (time.process_time() - started_cpu)))


def _cpu_ms(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return 1000.0 * (times.user + times.system)


def run_rate(url: str, users: list[str], rate: float, seconds: float, pids: dict[str, int],
             seed: int = 0) -> tuple[dict, list]:
    """One open-loop run; its summary (with CPU ms per request of each process) and results."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    before = {name: _cpu_ms(pid) for name, pid in pids.items()}
    process = context.Process(target=_load, args=(f"{url}/v1/recommendations", users, rate,
                                                  seconds, seed, queue))
    process.start()
    results, load_cpu_ms = queue.get()
    process.join()
    cpu = {name: _cpu_ms(pid) - before[name] for name, pid in pids.items()}
    ok = [r for r in results if r[2] == 200 and not r[4]]
    latencies = np.array([r[1] for r in results])
    wall = max(r[0] + r[1] / 1000.0 for r in results)
    served = max(1, len(ok))
    summary = {
        "target_rps": rate, "requests": len(results), "throughput_rps": len(ok) / wall,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "failed": len(results) - len(ok),
        "cpu_ms_per_request": {**{name: ms / served for name, ms in cpu.items()},
                               "load_generator": load_cpu_ms / served},
        "stage_median_ms": {stage: float(np.median([r[3][stage] for r in ok if stage in r[3]]))
                            for stage in ("profile", "recommend", "retrieval", "ranking",
                                          "total") if any(stage in r[3] for r in ok)}}
    summary["cpu_ms_per_request"]["total"] = sum(summary["cpu_ms_per_request"].values())
    return summary, results


def _saturated(summary: dict) -> bool:
    return (summary["throughput_rps"] < 0.95 * summary["target_rps"]
            or summary["p99_ms"] > 1000.0 or summary["failed"] > 0.01 * summary["requests"])


def _push_copy(base: pathlib.Path, model: str) -> int:
    versions = sorted(int(p.name) for p in (base / model).iterdir() if p.name.isdigit())
    new = versions[-1] + 1
    staging = base / model / f".staging-{new}"
    shutil.copytree(base / model / str(versions[-1]), staging)
    staging.rename(base / model / str(new))
    return new


def bare_signatures(serving_dir: pathlib.Path, users: list[str], repeats: int) -> dict:
    """The floor: each signature called in-process on ready tensors (median ms)."""
    import scann  # noqa: F401
    import tensorflow as tf

    from recs import features as F
    from recs.contract.signatures import RANK_CANDIDATES, RECOMMEND
    from recs.data.catalogue import read_jsonl

    load = lambda name: tf.saved_model.load(str(serving_dir / name / "1"))  # noqa: E731
    recommender, retrieval, ranker = load("recommender"), load("retrieval"), load("ranker")
    query = {F.USER_ID: tf.constant([users[0]]), F.AGE: tf.constant([30], tf.int64),
             F.COUNTRY: tf.constant(["us"]), F.SUBSCRIPTION_TIER: tf.constant(["basic"]),
             F.PREFERRED_GENRES: tf.constant(["drama|comedy"]),
             F.HISTORY: tf.constant(["|".join(f"t{i:06d}" for i in range(30))]),
             F.DEVICE_TYPE: tf.constant(["tv"]), F.HOUR: tf.constant([20], tf.int64)}
    retrieved = retrieval.signatures["serving_default"](**query)
    ids = retrieved["title_ids"][0]
    titles = {row["title_id"]: row for row in read_jsonl(
        str(serving_dir / "retrieval" / "1" / "assets.extra" / "catalogue.jsonl"))}
    rows = {key: tf.repeat(value, len(ids)) for key, value in query.items()}
    for key in F.CANDIDATE_FEATURES:
        rows[key] = tf.constant([titles[t.decode()][key] for t in ids.numpy()],
                                dtype=F.RAW_FEATURE_DTYPES[key])
    calls = {
        "recommend": lambda: recommender.signatures[RECOMMEND](
            **query, excluded_title_ids=tf.constant([""])),
        "retrieval": lambda: retrieval.signatures["serving_default"](**query),
        "rank_candidates_200": lambda: recommender.signatures[RANK_CANDIDATES](
            **query, title_ids=ids),
        "ranker_raw_rows_200": lambda: ranker.signatures["serving_default"](**rows)}
    figures = {}
    for name, call in calls.items():
        call()
        times = []
        cpu_start = time.process_time()
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(1000.0 * (time.perf_counter() - start))
        figures[name] = float(np.median(times))
        # CPU of every thread of the process (TensorFlow's inter- and intra-op pools included):
        # the floor to set against the servers' CPU ms per request.
        figures[f"{name}_cpu_ms"] = 1000.0 * (time.process_time() - cpu_start) / repeats
    figures["candidates"] = int(len(ids))
    return figures


def in_process(serving_dir: pathlib.Path, store_path: pathlib.Path, users: list[str],
               repeats: int) -> dict:
    """The service's work (the project's `Recommender`: profile, one model call, filtering)
    with the models in this process."""
    from recs.contract.models import RANKER, RECOMMENDER, RETRIEVAL
    from serving.clients.local import LocalClient
    from serving.model_server import ModelRegistry
    from serving.online.recommender import Recommender, load_catalogue
    from serving.online.store import SqliteProfileStore

    registry = ModelRegistry(str(serving_dir), (RETRIEVAL, RANKER, RECOMMENDER))
    registry.load()
    store = SqliteProfileStore(str(store_path))
    recommender = Recommender(LocalClient(registry), store,
                              load_catalogue(str(serving_dir), RETRIEVAL))
    rng = np.random.default_rng(9)
    picks = [users[i] for i in rng.integers(0, len(users), size=repeats + 10)]
    for user in picks[:10]:
        recommender.ranked(user)
    times = []
    for user in picks[10:]:
        start = time.perf_counter()
        recommender.ranked(user, device_type="tv", hour=20)
        times.append(1000.0 * (time.perf_counter() - start))
    store.close()
    registry.close()
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "requests": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=pathlib.Path, default=None,
                        help="a built world's folder (default: build or reuse the benchmark's)")
    parser.add_argument("--rates", type=lambda text: [float(r) for r in text.split(",")],
                        default=[50.0, 100.0, 200.0, 300.0, 400.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--swap-rate", type=float, default=100.0)
    parser.add_argument("--batching-rate", type=float, default=100.0)
    parser.add_argument("--users", type=int, default=STORE_USERS)
    args = parser.parse_args()

    from serving.config import ServiceConfig
    from tfx_pipeline.world import World, cached_world

    started = time.perf_counter()
    world = World(args.world) if args.world else cached_world(WORLD)
    store_path, users = profile_store(world.root, args.users)
    catalogue = sum(1 for _ in world.layout.titles.open())
    work = pathlib.Path(tempfile.mkdtemp(prefix="recs-bench-serving-"))
    serving_dir = work / "serving"
    shutil.copytree(world.serving_dir, serving_dir)  # The swap pushes versions into a copy.
    print(f"world {world.root}: {catalogue} titles, {len(users)} users in the store "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    peers = {"bare_signatures_ms": bare_signatures(serving_dir, users, 200),
             "in_process": in_process(serving_dir, store_path, users, 300)}
    print("peers", json.dumps(peers), flush=True)
    figures: dict = {}
    model_server, rest_url, grpc_target = _start_model_server(serving_dir, batching=False)
    services = []
    try:
        for protocol, target in (("rest", rest_url), ("grpc", grpc_target)):
            config = ServiceConfig(model_server=target, protocol=protocol,
                                   serving_dir=str(serving_dir), store=str(store_path),
                                   max_in_flight=64, model_timeout_ms=2000)
            service, url = _start_service(config, work)
            services.append(service)
            pids = {"service": service.pid, "model_server": model_server.pid}
            run_rate(url, users, 50, 5, pids, seed=99)  # Warm up.
            runs = figures[f"service_{protocol}"] = []
            for rate in args.rates:
                summary, _ = run_rate(url, users, rate, args.seconds, pids)
                runs.append(summary)
                print(protocol, json.dumps(summary), flush=True)
                if _saturated(summary):
                    break
                time.sleep(2)
            if protocol == "grpc":
                # A new recommender version mid-run: loading and warming it up compete with
                # the requests; the p99 of the run against a steady run at the same rate.
                steady, _ = run_rate(url, users, args.swap_rate, args.seconds, pids, seed=3)
                context = multiprocessing.get_context("spawn")
                queue = context.Queue()
                loader = context.Process(target=_load, args=(
                    f"{url}/v1/recommendations", users, args.swap_rate, args.seconds * 1.5, 4,
                    queue))
                loader.start()
                time.sleep(args.seconds / 3)
                new_version = _push_copy(serving_dir, "recommender")
                results, _ = queue.get()
                loader.join()
                latencies = np.array([r[1] for r in results])
                figures["swap"] = {
                    "target_rps": args.swap_rate, "new_version": new_version,
                    "p99_ms": float(np.percentile(latencies, 99)),
                    "p50_ms": float(np.percentile(latencies, 50)),
                    "failed": sum(1 for r in results if r[2] != 200 or r[4]),
                    "steady_p99_ms": steady["p99_ms"], "steady_p50_ms": steady["p50_ms"]}
                print("swap", json.dumps(figures["swap"]), flush=True)
            service.terminate()  # The next protocol's service runs alone.
            service.wait()
    finally:
        for service in services:
            service.terminate()
        model_server.terminate()
        model_server.wait()

    # The two-call path (retrieval, then the ranker over 200 raw rows), batching off and on.
    figures["two_calls_batching"] = {}
    for batching in (False, True):
        model_server, rest_url, _ = _start_model_server(serving_dir, batching=batching)
        config = ServiceConfig(model_server=rest_url, protocol="rest",
                               serving_dir=str(serving_dir), store=str(store_path),
                               recommender_model="", max_in_flight=64, model_timeout_ms=2000)
        service, url = _start_service(config, work)
        try:
            pids = {"service": service.pid, "model_server": model_server.pid}
            run_rate(url, users, 20, 5, pids, seed=98)
            summary, _ = run_rate(url, users, args.batching_rate, args.seconds, pids)
            figures["two_calls_batching"]["on" if batching else "off"] = summary
            print("two calls, batching", batching, json.dumps(summary), flush=True)
        finally:
            service.terminate()
            model_server.terminate()
            model_server.wait()
    shutil.rmtree(work, ignore_errors=True)

    def at(protocol: str, rate: float) -> dict | None:
        return next((f for f in figures[f"service_{protocol}"] if f["target_rps"] == rate),
                    None)

    def saturation(protocol: str) -> float | None:
        fine = [f["target_rps"] for f in figures[f"service_{protocol}"] if not _saturated(f)]
        return max(fine) if fine else None

    # The goals' rate when both protocols sustain it, else the highest rate both sustained:
    # a p50 past saturation measures the queue, not the path.
    sustained = [rate for rate in args.rates
                 if all(at(p, rate) and not _saturated(at(p, rate)) for p in ("rest", "grpc"))]
    compared = 200.0 if 200.0 in sustained else max(sustained, default=None)
    rest_at, grpc_at = ((at("rest", compared), at("grpc", compared)) if compared
                        else (None, None))
    ratios = {
        "compared_at_rps": compared,
        "service_grpc_p50_over_in_process_p50":
            grpc_at["p50_ms"] / peers["in_process"]["p50_ms"] if grpc_at else None,
        "service_rest_p50_over_in_process_p50":
            rest_at["p50_ms"] / peers["in_process"]["p50_ms"] if rest_at else None,
        "rest_p50_over_grpc_p50": (rest_at["p50_ms"] / grpc_at["p50_ms"]
                                   if rest_at and grpc_at else None),
        "swap_p99_over_steady_p99": figures["swap"]["p99_ms"] / figures["swap"]["steady_p99_ms"],
        "batching_on_p99_over_off_p99": (figures["two_calls_batching"]["on"]["p99_ms"]
                                         / figures["two_calls_batching"]["off"]["p99_ms"]),
        "saturation_rps_rest": saturation("rest"), "saturation_rps_grpc": saturation("grpc"),
    }
    path = write_result(
        "serving",
        {"catalogue": catalogue, "candidates": WORLD.index.k, "store_users": len(users),
         "rates_rps": args.rates, "seconds_per_rate": args.seconds,
         "swap_rate_rps": args.swap_rate, "batching_rate_rps": args.batching_rate,
         "world": str(world.root), "service_max_in_flight": 64,
         "processes": "model server, service and load generator on one 2-core machine",
         "goals": "p99 <= 25 ms at 200 rps, both protocols, 0 failed; REST p50 <= 1.3x gRPC "
                  "p50; service p50 <= 2x in-process p50; swap p99 <= 1.5x steady"},
        figures, peers, ratios)
    print(json.dumps(ratios, indent=2))
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
