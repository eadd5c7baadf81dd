"""Does it keep subscribers? A/B tests of models through the real service, in a closed loop.

    world     a generated world (`recs.data.synthetic`) and its models, built without TFX
              (`tfx_pipeline.world`: Beam ingestion, tf.Transform, training, export)
    stack     `recs serve-models` (versions and labels stable/canary) and `recs serve` (the
              experiments) as their own processes; Redis for the event stream and the profile
              store; the profile consumer on the simulated clock
    phase 1   the closed loop (`simulation.loop`) for --days days, two experiments side by
              side on disjoint halves of the users:
                aa                  the same models in both arms
                recs_vs_popularity  the popularity list (control) against the models
    retrain   the models retrained on the generated days plus phase 1's logs, pushed as
              version 2 (label canary; version 1 is stable)
    phase 2   --days more days, one experiment over all users:
                challenger          stable (champion) against canary (the retrained models)
    outcomes  `recs outcomes` (Beam) per experiment over all days' ingested logs, then
              `monitoring.abtest` (z-tests, Welch with and without CUPED, sample-ratio check)
              and the pre-registered rollout rule (7-day return, alpha 0.05)

The A/A false-positive rate is also read over --aa-salts re-randomizations of the A/A users:
both arms served the same models, so any split of them is a valid A/A test.

    python benchmarks/retention_ab.py [--users 3000 --titles 300 --days 14]

Writes benchmarks/results/retention_ab.json.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from common import peak_rss_mb, redis_server, write_result  # noqa: E402

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)

ALPHA = 0.05
PRIMARY = "returned"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up (exit code {process.poll()})")
        time.sleep(0.5)


@contextlib.contextmanager
def _process(args: list[str], ready_url: str, log: pathlib.Path) -> Iterator[None]:
    """A `recs` command as its own process, until the block ends."""
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "recs_cli.main", *args],
                                   stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(
                                       pathlib.Path(__file__).resolve().parents[1])})
        try:
            _wait_http(ready_url, process)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _world_config(args: argparse.Namespace) -> Any:
    from recs.config import RankerConfig, RetrievalConfig, TrainingConfig
    from recs.data.synthetic import GeneratorConfig
    from tfx_pipeline.world import WorldConfig

    training = TrainingConfig(batch_size=256, epochs=args.epochs)
    return WorldConfig(
        generator=GeneratorConfig(num_users=args.users, num_titles=args.titles,
                                  days=args.history_days, seed=args.seed),
        retrieval=RetrievalConfig(training=training),
        ranker=RankerConfig(training=training), eval_share=0.1)


def _experiments(phase: int) -> tuple[Any, ...]:
    from serving.online.experiments import Arm, Experiment

    if phase == 1:
        return (Experiment("aa", arms=(Arm("control"), Arm("treatment")), traffic=0.5),
                Experiment("recs_vs_popularity",
                           arms=(Arm("popularity", policy="popularity"), Arm("recs")),
                           traffic=0.5))
    stable = {"retrieval": "@stable", "ranker": "@stable"}
    canary = {"retrieval": "@canary", "ranker": "@canary"}
    return (Experiment("challenger", arms=(Arm("champion", models=stable),
                                           Arm("challenger", models=canary))),)


def _run_phase(phase: int, loop: Any, args: argparse.Namespace, serving_dir: pathlib.Path,
               redis_url: str, work: pathlib.Path) -> dict[str, Any]:
    """`args.days` more days of the loop against freshly started model server and service
    processes (the phase's experiments)."""
    import redis

    from recs.contract import features as F
    from recs.data.catalogue import read_jsonl
    from serving.config import ServiceConfig
    from serving.consumer import ProfileUpdater
    from serving.online.store import RedisProfileStore
    from simulation import StreamPublisher, wait_until_consumed

    rest_port, grpc_port, service_port = _free_port(), _free_port(), _free_port()
    served_log = work / f"served-phase{phase}.jsonl"
    service = ServiceConfig(
        model_server=f"http://127.0.0.1:{rest_port}", serving_dir=str(serving_dir),
        store=redis_url, profile_changes=redis_url, served_log=str(served_log),
        # Generous: a slow answer under the loop's load must not turn a model arm into the
        # popularity fallback (fallbacks are counted per arm all the same).
        model_timeout_ms=10_000, max_in_flight=None, experiments=_experiments(phase))
    config_path = work / f"service-phase{phase}.json"
    config_path.write_text(service.to_json())
    durations = {row[F.TITLE_ID]: float(row[F.DURATION_SECONDS])
                 for row in read_jsonl(str(serving_dir.parent / "raw" / "titles.jsonl"))}
    labels = ["--label", "retrieval:stable=1", "--label", "ranker:stable=1",
              "--label", "recommender:stable=1"]
    if phase == 2:
        labels += ["--label", "retrieval:canary=2", "--label", "ranker:canary=2",
                   "--label", "recommender:canary=2"]
    started = time.perf_counter()
    with _process(["serve-models", "--base", str(serving_dir), "--rest-port", str(rest_port),
                   "--grpc-port", str(grpc_port), "--num-versions", "2", "--poll-seconds", "0",
                   *labels],
                  f"http://127.0.0.1:{rest_port}/v1/models/ranker", work / "models.log"), \
            _process(["serve", "--config", str(config_path), "--port", str(service_port)],
                     f"http://127.0.0.1:{service_port}/readyz", work / "service.log"):
        send = StreamPublisher(redis_url)
        updater = ProfileUpdater(redis.Redis.from_url(redis_url), RedisProfileStore(redis_url),
                                 durations, clock=loop.now)
        loop.attach(f"http://127.0.0.1:{service_port}", publish=send,
                    served_log=str(served_log),
                    settle=lambda: wait_until_consumed(updater, send))
        stop = threading.Event()
        consumer = threading.Thread(target=updater.run, args=(stop,), daemon=True)
        consumer.start()
        reports = loop.run(args.days)
        stop.set()
        consumer.join(timeout=60)
    seconds = time.perf_counter() - started
    sessions = sum(r.sessions for r in reports)
    return {"days": [dataclasses.asdict(r) for r in reports], "seconds": round(seconds, 1),
            "sessions": sessions, "requests_per_second": round(sessions / seconds, 1),
            "consumer": dataclasses.asdict(updater.counts)}


def _merged_raw(target: pathlib.Path, sources: list[pathlib.Path]) -> pathlib.Path:
    """A raw folder whose day partitions link to those of `sources` (later ones win ties),
    with the last source's profile and catalogue tables."""
    (target / "events").mkdir(parents=True)
    for source in sources:
        for day in sorted((source / "events").glob("day=*")):
            link = target / "events" / day.name
            if link.is_symlink():
                link.unlink()
            link.symlink_to(day.resolve(), target_is_directory=True)
    for table in ("users.jsonl", "titles.jsonl"):
        shutil.copy(sources[-1] / table, target / table)
    return target


def _comparisons(analysis: Any) -> dict[str, Any]:
    """Each metric's comparison, with the smallest difference this sample detects with 80%
    power at ALPHA (two-sided): (z_{1-alpha/2} + z_{0.8}) x the standard error that the
    interval's width implies."""
    from scipy import stats

    z = stats.norm.ppf(1 - ALPHA / 2)
    detectable = (z + stats.norm.ppf(0.8)) / (2 * z)
    return {c.metric: {"control": c.control, "treatment": c.treatment,
                       "difference": c.difference, "relative_lift": c.relative_lift,
                       "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value,
                       "significant": c.significant, "n_control": c.n_control,
                       "n_treatment": c.n_treatment,
                       "minimum_detectable_effect_80": detectable * (c.ci_high - c.ci_low)}
            for c in analysis.comparisons}


def _experiment_figures(name: str, arms: tuple[str, str], days: tuple[str, str],
                        served_dir: pathlib.Path, examples_dir: pathlib.Path,
                        subscriptions_dir: pathlib.Path, work: pathlib.Path,
                        phase_seconds: float) -> tuple[dict[str, Any], list[dict]]:
    from monitoring.abtest import DecisionRule, analyze, decide
    from serving.online.experiments import Arm, Experiment
    from transforms.outcomes import OutcomesConfig, run_outcomes

    started = time.perf_counter()
    output = work / f"outcomes-{name}.jsonl"
    report = run_outcomes(OutcomesConfig(
        served_path=str(served_dir), examples_dir=str(examples_dir),
        subscriptions_dir=str(subscriptions_dir), output_path=str(output), experiment=name,
        start_day=days[0], end_day=days[1]))
    rows = [json.loads(line) for line in output.read_text().splitlines() if line]
    analysis = analyze(Experiment(name, arms=(Arm(arms[0]), Arm(arms[1]))), rows, ALPHA)
    try:
        verdict = decide(analysis, DecisionRule(PRIMARY, ALPHA, 0.0)).to_dict()
    except ValueError as error:  # E.g. a window too short for a 7-day return.
        verdict = {"action": None, "reason": str(error)}
    ratio = analysis.sample_ratio
    figures = {
        "arms": list(arms), "window": {"first_day": days[0], "last_day": days[1]},
        "users_per_arm": dict(zip(arms, ratio.observed)),
        "srm": {"observed": list(ratio.observed), "p_value": ratio.p_value,
                "mismatch": ratio.mismatch},
        "metrics": _comparisons(analysis), "verdict": verdict,
        "outcomes_job": {"dead_lettered": report.dead_lettered,
                         "seconds": round(time.perf_counter() - started, 1)},
        "loop_seconds": round(phase_seconds, 1)}
    return figures, rows


def _aa_false_positive_rate(rows: list[dict], salts: int) -> dict[str, Any]:
    """Share of re-randomized splits of the A/A users called significant, per metric."""
    from monitoring.abtest import analyze
    from serving.online.experiments import Arm, Experiment, unit_hash

    experiment = Experiment("aa", arms=(Arm("control"), Arm("treatment")))
    hits: dict[str, int] = {}
    for salt in range(salts):
        split = [{**row, "arm": "control" if unit_hash(f"aa-resplit-{salt}", row["user_id"])
                  < 0.5 else "treatment"} for row in rows]
        for comparison in analyze(experiment, split, ALPHA).comparisons:
            hits[comparison.metric] = hits.get(comparison.metric, 0) + comparison.significant
    return {"splits": salts, "alpha": ALPHA,
            "false_positive_rate": {metric: count / salts for metric, count in hits.items()}}


def _served_fallbacks(served_dir: pathlib.Path) -> dict[str, dict[str, int]]:
    """Served lists and popularity fallbacks per experiment arm, from the served logs."""
    counts: dict[str, dict[str, int]] = {}
    for path in sorted(served_dir.glob("day=*/*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            for experiment, arm in entry.get("experiments", {}).items():
                key = f"{experiment}/{arm}"
                bucket = counts.setdefault(key, {"lists": 0, "fallbacks": 0})
                bucket["lists"] += 1
                bucket["fallbacks"] += entry.get("fallback") is not None
    return counts


def _simulate(args: argparse.Namespace, work: pathlib.Path, world_config: Any,
              loop_dir: pathlib.Path) -> tuple[dict[int, Any], dict[str, float]]:
    """Builds the champion, runs phase 1, retrains, runs phase 2; returns the phases'
    figures and the seconds of each step."""
    from serving.online.store import RedisProfileStore, load_store
    from simulation import ClosedLoop, LoopConfig
    from tfx_pipeline.world import build_world, build_world_from_logs

    seconds: dict[str, float] = {}
    mark = time.perf_counter()
    champion = build_world(work / "world", world_config)
    seconds["build_champion"] = round(time.perf_counter() - mark, 1)
    serving_dir = champion.serving_dir
    loop = ClosedLoop(world_config.generator,
                      LoopConfig(days=args.days, seed=args.seed, workers=args.workers), loop_dir)
    phases = {}
    with redis_server() as redis_url:
        mark = time.perf_counter()
        load_store(RedisProfileStore(redis_url), str(champion.raw / "users.jsonl"),
                   champion.examples_glob)
        seconds["load_store"] = round(time.perf_counter() - mark, 1)
        phases[1] = _run_phase(1, loop, args, serving_dir, redis_url, work)
        print(f"phase 1: {phases[1]['sessions']} sessions in {phases[1]['seconds']} s",
              flush=True)

        mark = time.perf_counter()
        retrained = build_world_from_logs(
            work / "retrained", _merged_raw(work / "raw-phase1", [champion.raw, loop_dir]),
            world_config)
        for model_dir in retrained.serving_dir.iterdir():
            shutil.copytree(model_dir / "1", serving_dir / model_dir.name / "2")
        seconds["retrain_challenger"] = round(time.perf_counter() - mark, 1)
        print(f"retrained in {seconds['retrain_challenger']} s", flush=True)

        phases[2] = _run_phase(2, loop, args, serving_dir, redis_url, work)
        print(f"phase 2: {phases[2]['sessions']} sessions in {phases[2]['seconds']} s",
              flush=True)
    return phases, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--titles", type=int, default=300)
    parser.add_argument("--history-days", type=int, default=7,
                        help="generated days the first models train on")
    parser.add_argument("--days", type=int, default=14, help="simulated days per phase")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--aa-salts", type=int, default=200)
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    parser.add_argument("--name", default="retention_ab")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--reanalyze", action="store_true",
                        help="skip the simulation: ingest and analyse the finished run in "
                             "--workdir again (its run.json)")
    args = parser.parse_args()

    from transforms.ingestion import IngestionConfig, run_ingestion

    work = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="retention-ab-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world_config = _world_config(args)
    loop_dir = work / "loop"
    if args.reanalyze:
        # The simulation's record of a finished (or analysis-failed) run in this workdir.
        run = json.loads((work / "run.json").read_text())
        phases, seconds = {int(p): v for p, v in run["phases"].items()}, run["seconds"]
        shutil.rmtree(work / "ingested-all", ignore_errors=True)
        shutil.rmtree(work / "raw-all", ignore_errors=True)
    else:
        phases, seconds = _simulate(args, work, world_config, loop_dir)
        (work / "run.json").write_text(json.dumps({"phases": phases, "seconds": seconds}))
    champion_raw = work / "world" / "raw"

    mark = time.perf_counter()
    all_raw = _merged_raw(work / "raw-all", [champion_raw, loop_dir])
    ingested = run_ingestion(IngestionConfig(events_glob=str(all_raw / "events" / "*" / "*"),
                                             users_path=str(all_raw / "users.jsonl"),
                                             titles_path=str(all_raw / "titles.jsonl"),
                                             output_dir=str(work / "ingested-all")))
    seconds["ingest_all_days"] = round(time.perf_counter() - mark, 1)

    day_names = [[d["date"] for d in phases[p]["days"]] for p in (1, 2)]
    served, examples = loop_dir / "served", work / "ingested-all" / "examples"
    subscriptions = loop_dir / "subscriptions"
    figures: dict[str, Any] = {}
    rows: dict[str, list[dict]] = {}
    for name, arms, phase in (("aa", ("control", "treatment"), 1),
                              ("recs_vs_popularity", ("popularity", "recs"), 1),
                              ("challenger", ("champion", "challenger"), 2)):
        window = (day_names[phase - 1][0], day_names[phase - 1][-1])
        figures[name], rows[name] = _experiment_figures(
            name, arms, window, served, examples, subscriptions, work,
            phases[phase]["seconds"])
    figures["aa"]["resplits"] = _aa_false_positive_rate(rows["aa"], args.aa_salts)
    figures["served_lists_by_arm"] = _served_fallbacks(served)
    figures["phases"] = {str(p): {key: value for key, value in phases[p].items()
                                  if key in ("seconds", "sessions", "requests_per_second",
                                             "consumer")} for p in (1, 2)}
    figures["loop_days"] = {str(p): phases[p]["days"] for p in (1, 2)}
    figures["ingestion_all_days"] = {"events_read": ingested.events_read,
                                     "records_written": ingested.records_written,
                                     "dead_lettered": ingested.dead_lettered}
    seconds["analysis_total" if args.reanalyze else "total"] = round(
        time.perf_counter() - started, 1)
    figures["seconds"] = seconds
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    parameters = {**{key: (str(value) if isinstance(value, pathlib.Path) else value)
                     for key, value in vars(args).items()},
                  "primary_metric": PRIMARY, "alpha": ALPHA,
                  "world": world_config.to_dict(),
                  "note": args.note or "nothing else ran on the machine"}
    ratios = {name: {"treatment_over_control": {
        metric: (values["treatment"] / values["control"] if values["control"] else None)
        for metric, values in figures[name]["metrics"].items()}}
        for name in ("aa", "recs_vs_popularity", "challenger")}
    path = write_result(args.name, parameters, figures, {}, ratios)
    for name in ("aa", "recs_vs_popularity", "challenger"):
        verdict = figures[name]["verdict"]
        print(f"{name}: {figures[name]['users_per_arm']} -> {verdict['action']}: "
              f"{verdict['reason']}")
    print(f"wrote {path} in {round(time.perf_counter() - started, 1)} s")


if __name__ == "__main__":
    main()
