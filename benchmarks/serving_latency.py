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

Figures (`benchmarks/results/serving.json`), every rate relative to the measured saturation so
that two machines' runs read alike: a ramp per protocol until the service saturates
(throughput, p50/p99, failures, CPU milliseconds per request of each process); runs at 50% and
75% of saturation on both protocols; a new recommender version pushed at 50%; the closed loop
(`simulation`) driving the service. Ratios: CPU per request of service + model server over the
`recommend` signature's own CPU (at 50%), the share of the machine's CPU turned into requests
at saturation, REST over gRPC p99 and p99 over p50 (at 75%), swap over steady p99, loop
sessions per second over the saturation rate. Peers, in the same run: the signatures alone
with tensors ready (the floor), and the project's `Recommender` with the models in-process
(`serving.clients.local.LocalClient`).

    python benchmarks/serving_latency.py [--world DIR] [--seconds 20] [--note TEXT]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
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


RAMP_RPS = (25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 175.0, 200.0, 250.0, 300.0, 400.0, 500.0)
"""Rates tried, in order, until the service saturates (`_saturated`)."""


def ramp(url: str, users: list[str], seconds: float, pids: dict[str, int], label: str
         ) -> tuple[list[dict], float | None]:
    """Runs `RAMP_RPS` until a rate saturates; the runs and the last sane rate."""
    runs, sane = [], None
    for rate in RAMP_RPS:
        summary, _ = run_rate(url, users, rate, seconds, pids)
        runs.append(summary)
        print(label, "ramp", json.dumps(summary), flush=True)
        if _saturated(summary):
            break
        sane = rate
        time.sleep(2)
    return runs, sane


def utilization(summary: dict, cores: int) -> float:
    """Share of the machine's core-milliseconds per second turned into answered requests:
    throughput x CPU per request of every process (load generator included)."""
    return summary["throughput_rps"] * summary["cpu_ms_per_request"]["total"] / (1000.0 * cores)


def swap_run(url: str, users: list[str], rate: float, seconds: float, pids: dict[str, int],
             serving_dir: pathlib.Path) -> dict:
    """A new recommender version pushed mid-run at `rate`: its p99 against a steady run at
    the same rate just before."""
    steady, _ = run_rate(url, users, rate, seconds, pids, seed=3)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    loader = context.Process(target=_load, args=(f"{url}/v1/recommendations", users, rate,
                                                 seconds * 1.5, 4, queue))
    loader.start()
    time.sleep(seconds / 3)
    new_version = _push_copy(serving_dir, "recommender")
    results, _ = queue.get()
    loader.join()
    latencies = np.array([r[1] for r in results])
    return {"target_rps": rate, "new_version": new_version,
            "p99_ms": float(np.percentile(latencies, 99)),
            "p50_ms": float(np.percentile(latencies, 50)),
            "failed": sum(1 for r in results if r[2] != 200 or r[4]),
            "steady_p99_ms": steady["p99_ms"], "steady_p50_ms": steady["p50_ms"],
            "steady_failed": steady["failed"]}


def loop_run(url: str, pids: dict[str, int], work: pathlib.Path) -> dict:
    """The closed loop (`simulation`) driving the service: a quarter of the benchmark world's
    subscribers (whose profiles the store holds) ask for slates through the real HTTP API for
    one simulated day; sessions per second, and CPU per session of each process."""
    from simulation import ClosedLoop, LoopConfig

    loop = ClosedLoop(WORLD.generator, LoopConfig(days=1, seed=5, workers=16,
                                                  sample=0.25), work / "loop")
    loop.attach(url)
    before = {name: _cpu_ms(pid) for name, pid in pids.items()}
    cpu_start = time.process_time()
    started = time.perf_counter()
    report = loop.run()[0]
    elapsed = time.perf_counter() - started
    cpu = {name: (_cpu_ms(pid) - before[name]) / max(1, report.sessions)
           for name, pid in pids.items()}
    cpu["loop"] = 1000.0 * (time.process_time() - cpu_start) / max(1, report.sessions)
    return {"sessions": report.sessions, "seconds": round(elapsed, 2),
            "sessions_per_second": round(report.sessions / elapsed, 1),
            "cpu_ms_per_session": {name: round(ms, 3) for name, ms in cpu.items()},
            "workers": 16, "request_errors": report.request_errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=pathlib.Path, default=None,
                        help="a built world's folder (default: build or reuse the benchmark's)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=STORE_USERS)
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="the model server's TensorFlow intra-op pool (0: TF's default)")
    parser.add_argument("--inter-op-threads", type=int, default=0)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args()

    from serving.config import ServiceConfig
    from serving.model_server.server import set_thread_pools
    from tfx_pipeline.world import World, cached_world

    from common import cpu_flags, matmul_gflops

    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    calibration = matmul_gflops()
    # The floor is measured with the model server's pools, so that the ratio compares like
    # with like.
    pools = {"intra_op_threads": args.intra_op_threads,
             "inter_op_threads": args.inter_op_threads}
    set_thread_pools(args.intra_op_threads, args.inter_op_threads)
    world = World(args.world) if args.world else cached_world(WORLD)
    store_path, users = profile_store(world.root, args.users)
    catalogue = sum(1 for _ in world.layout.titles.open())
    work = pathlib.Path(tempfile.mkdtemp(prefix="recs-bench-serving-"))
    serving_dir = work / "serving"
    shutil.copytree(world.serving_dir, serving_dir)  # The swap pushes versions into a copy.
    print(f"world {world.root}: {catalogue} titles, {len(users)} users in the store "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    peers = {"bare_signatures_ms": bare_signatures(serving_dir, users, 300),
             "in_process": in_process(serving_dir, store_path, users, 300)}
    print("peers", json.dumps(peers), flush=True)
    figures: dict = {"ramp": {}, "at_50": {}, "at_75": {}}
    saturation: dict[str, float | None] = {}
    model_server, rest_url, grpc_target = _start_model_server(serving_dir, batching=False,
                                                              **pools)
    services = {}
    try:
        for protocol, target in (("rest", rest_url), ("grpc", grpc_target)):
            config = ServiceConfig(model_server=target, protocol=protocol,
                                   serving_dir=str(serving_dir), store=str(store_path),
                                   max_in_flight=64, model_timeout_ms=2000)
            services[protocol] = _start_service(config, work)
            service, url = services[protocol]
            pids = {"service": service.pid, "model_server": model_server.pid}
            run_rate(url, users, 50, 5, pids, seed=99)  # Warm up.
            figures["ramp"][protocol], saturation[protocol] = ramp(url, users, args.seconds,
                                                                   pids, protocol)
            if protocol == "rest":
                # One service at a time on the cores: the next protocol's runs alone.
                service.terminate()
                service.wait()
        # The rates the goals name, relative to the service's saturation (the lower of the
        # two protocols', so that both are compared at the same rate).
        sane = [rate for rate in saturation.values() if rate]
        rate_sat = min(sane) if sane else RAMP_RPS[0]
        for share, key in ((0.5, "at_50"), (0.75, "at_75")):
            for protocol in ("grpc", "rest"):
                if protocol == "rest":
                    config = ServiceConfig(model_server=rest_url, protocol="rest",
                                           serving_dir=str(serving_dir), store=str(store_path),
                                           max_in_flight=64, model_timeout_ms=2000)
                    services["rest"] = _start_service(config, work)
                service, url = services[protocol]
                pids = {"service": service.pid, "model_server": model_server.pid}
                summary, _ = run_rate(url, users, share * rate_sat, args.seconds, pids)
                figures[key][protocol] = summary
                print(key, protocol, json.dumps(summary), flush=True)
                if protocol == "rest":
                    service.terminate()
                    service.wait()
        service, url = services["grpc"]
        pids = {"service": service.pid, "model_server": model_server.pid}
        figures["swap"] = swap_run(url, users, 0.5 * rate_sat, args.seconds, pids, serving_dir)
        print("swap", json.dumps(figures["swap"]), flush=True)
        figures["loop"] = loop_run(url, pids, work)
        print("loop", json.dumps(figures["loop"]), flush=True)
    finally:
        for service, _ in services.values():
            service.terminate()
        model_server.terminate()
        model_server.wait()
    # The floor again, after the runs: the machine's speed drifts (other tenants of the
    # host), and the ratio should not hang on one moment's figure.
    peers["bare_signatures_ms_after"] = bare_signatures(serving_dir, users, 300)
    model_cpu = float(np.mean([peers["bare_signatures_ms"]["recommend_cpu_ms"],
                               peers["bare_signatures_ms_after"]["recommend_cpu_ms"]]))
    shutil.rmtree(work, ignore_errors=True)

    def overhead(summary: dict) -> float:
        cpu = summary["cpu_ms_per_request"]
        return (cpu["service"] + cpu["model_server"]) / model_cpu

    def at_saturation(protocol: str) -> dict | None:
        return next((run for run in figures["ramp"][protocol]
                     if run["target_rps"] == saturation[protocol]), None)

    ratios = {
        "saturation_rps": rate_sat,
        "saturation_rps_rest": saturation["rest"], "saturation_rps_grpc": saturation["grpc"],
        # The service's default protocol (REST) first; gRPC beside it.
        "cpu_per_request_over_model_cpu": overhead(figures["at_50"]["rest"]),
        "cpu_per_request_over_model_cpu_grpc": overhead(figures["at_50"]["grpc"]),
        "cpu_utilization_at_saturation": max(
            utilization(run, cores) for run in (at_saturation("grpc"), at_saturation("rest"))
            if run),
        "cpu_utilization_at_saturation_by_protocol": {
            protocol: utilization(at_saturation(protocol), cores)
            if at_saturation(protocol) else None for protocol in ("grpc", "rest")},
        "rest_p99_over_grpc_p99_at_75": (figures["at_75"]["rest"]["p99_ms"]
                                         / figures["at_75"]["grpc"]["p99_ms"]),
        "p99_over_p50_at_75": {protocol: figures["at_75"][protocol]["p99_ms"]
                               / figures["at_75"][protocol]["p50_ms"]
                               for protocol in ("grpc", "rest")},
        "swap_p99_over_steady_p99": figures["swap"]["p99_ms"] / figures["swap"]["steady_p99_ms"],
        "loop_sessions_per_second_over_saturation":
            figures["loop"]["sessions_per_second"] / rate_sat,
    }
    path = write_result(
        "serving",
        {"catalogue": catalogue, "candidates": WORLD.index.k, "store_users": len(users),
         "ramp_rps": list(RAMP_RPS), "seconds_per_rate": args.seconds,
         "world": str(world.root), "service_max_in_flight": 64, "model_timeout_ms": 2000,
         "model_server_thread_pools": pools, "model_cpu_ms": model_cpu,
         "processes": "model server, service and load generator on one 2-core machine",
         "saturated_when": "throughput < 95% of the target, p99 > 1 s or > 1% failed "
                           "(a fallback counts as failed)",
         "goals": "cpu_per_request_over_model_cpu <= 1.5 at 50% of saturation; "
                  "cpu_utilization_at_saturation >= 0.8; REST p99 <= 1.5x gRPC p99 and "
                  "p99 <= 3x p50 at 75%; swap p99 <= 1.5x steady with 0 failed at 50%; "
                  "loop sessions/s >= 0.5x saturation",
         "note": args.note,
         "elapsed_s": round(time.perf_counter() - started)},
        figures, peers, ratios,
        machine_facts={"cpu_flags": cpu_flags(), "matmul_gflops_float32_1_thread": calibration})
    print(json.dumps(ratios, indent=2))
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
