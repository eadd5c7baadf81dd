"""Does it keep subscribers? A/B tests of models through the real service, in a closed loop,
checked against the world's own truth.

    world      a generated world (`recs.data.synthetic`) and its models, built without TFX
               (`tfx_pipeline.world`: Beam ingestion, tf.Transform, training, export)
    stack      `recs serve-models` (versions and labels stable/canary) and `recs serve` (the
               experiments) as their own processes; Redis for the event stream and the
               profile store, saved to disk at each day's end; three profile consumers on the
               simulated clock; the closed loop (`simulation.loop`), --workers users at once
    main       --days days, three experiments on disjoint slices of the users (one layer),
               and --joiners-per-day new subscribers a day (sign-up profile only):
                 aa                  the same models in both arms
                 recs_vs_popularity  the popularity list (control) against the models
                 planted             the models (control) against the models with
                                     --tail-share of each list's slots drawn from the
                                     catalogue's 200 least popular titles: worse by
                                     construction, a known answer the test must find
    retrain    the models retrained on the generated days plus main's, pushed as version 2
               (label canary; version 1 is stable)
    challenger --challenger-days more days of the same users, one experiment over all:
                 challenger          stable (champion) against canary (the retrained models)
    twins      the truth: a --twin-sample share of the same users, from the same start, with
               the same random streams, once per policy with everyone on it (popularity,
               recs, tail; `simulation.twin`); paired per user, the differences are each
               policy's true effect, beside the A/B estimate (whose interval should cover
               it). recs runs again on a --twin-repeat-sample share: its users' outcomes must
               be identical (an A/A twin is exactly null).
    A/A reps   --aa-replicates independent A/A tests in one smaller run (--aa-sample of the
               users, --aa-days days, its own loop seed): disjoint users, each test its own
               salt; the false-positive rate over replicates
    outcomes   `transforms.outcomes` (Beam) per experiment over the ingested logs, then
               `monitoring.abtest` (z-tests, Welch with and without CUPED, sample-ratio
               check), `monitoring.survival` (Kaplan-Meier retention at D7/D14/D28 and
               renewal, for everyone, established users and new subscribers apart),
               `monitoring.sequential` (a look a day at the primary metric, O'Brien-Fleming;
               the A/A stopping rate) and the pre-registered rule on the primary metric
               (PRIMARY, alpha 0.05, stated before the run). The daily looks' rows come from
               `transforms.outcomes.user_outcome` on the same logs read in this process; on
               the last day they must equal the Beam job's.

Each loop run writes its state after every finished day (the loop's users, the Redis dump);
--resume continues the runs in --workdir from there, in this session or a later one, and
redoes the analysis.

    python benchmarks/retention_ab.py --users 20000 --titles 2000 --days 30 \\
        --workdir /data/retention_ab [--resume]

Writes benchmarks/results/<--name>.json.
"""

import argparse
import contextlib
import dataclasses
import datetime as dt
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
from typing import Any, Callable, Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from common import (cpu_flags, matmul_gflops, peak_rss_mb, redis_server,  # noqa: E402
                    write_result)

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from recs.contract.layout import RawLayout, RunLayout, day_partition  # noqa: E402

ALPHA = 0.05
PRIMARY = "returned"
"""The pre-registered primary metric (7-day return), stated before any run: it has a
sequential test, and its rule is the rollout decision. Retention (Kaplan-Meier D28) is the
key secondary."""
RETENTION_DAYS = (7, 14, 28)
SHARE = "served_engaged_share"
"""Engagement with served titles: per user, the distinct served titles engaged with over the
distinct titles served."""
TWIN_METRICS = ("engaged", "served_engaged", SHARE, "returned", "renewed", "watch_seconds")
ESTABLISHED, NEW = "established", "new"
COHORTS = ("all", ESTABLISHED, NEW)
MAIN, CHALLENGER, REPLICATES = "main", "challenger", "aa_replicates"
_CONSUMERS = 3
"""Profile consumers (one group): their Redis round trips overlap."""


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
    with log.open("a") as output:
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


# The experiments, by name: (control arm, treatment arm) and how they are built.

def _experiment(name: str, args: argparse.Namespace, traffic: float = 1.0) -> Any:
    from serving.online.experiments import Arm, Experiment

    stable = {"retrieval": "@stable", "ranker": "@stable"}
    canary = {"retrieval": "@canary", "ranker": "@canary"}
    arms = {"aa": (Arm("control"), Arm("treatment")),
            "recs_vs_popularity": (Arm("popularity", policy="popularity"), Arm("recs")),
            "planted": (Arm("control"), Arm("tail", settings={"tail_share": args.tail_share})),
            CHALLENGER: (Arm("champion", models=stable), Arm("challenger", models=canary))}
    return Experiment(name, arms=arms[name], traffic=traffic)


def _arms(experiment: Any) -> tuple[str, str]:
    return experiment.arms[0].name, experiment.arms[1].name


def _main_experiments(args: argparse.Namespace) -> tuple[Any, ...]:
    shares = {"aa": args.aa_traffic, "planted": args.planted_traffic}
    shares["recs_vs_popularity"] = 1.0 - sum(shares.values())
    return tuple(_experiment(name, args, share) for name, share in shares.items())


@dataclasses.dataclass(frozen=True)
class _Run:
    """One closed-loop run: its folder, users (a sample), seed, and its segments, each some
    days against a service running some experiments and model labels.

    Attributes:
        segments: (days until, experiments, labels) in order: the first runs days
            [0, days until), each next one continues the same users from there.
    """

    name: str
    folder: pathlib.Path
    sample: float
    seed: int
    joiners_per_day: int
    segments: tuple[tuple[int, tuple[Any, ...], tuple[str, ...]], ...]

    @property
    def loop_dir(self) -> pathlib.Path:
        return self.folder / "loop"

    @property
    def days(self) -> int:
        return self.segments[-1][0]


_STABLE = ("retrieval:stable=1", "ranker:stable=1", "recommender:stable=1")
_CANARY = ("retrieval:canary=2", "ranker:canary=2", "recommender:canary=2")


def _runs(args: argparse.Namespace, work: pathlib.Path) -> dict[str, _Run]:
    """Every loop run of the benchmark, by name: main (with the challenger segment), the
    twins, the A/A replicates."""
    from simulation import twin_experiment

    main_segments = [(args.days, _main_experiments(args), _STABLE)]
    if args.challenger_days:
        main_segments.append((args.days + args.challenger_days,
                              (_experiment(CHALLENGER, args),), _STABLE + _CANARY))
    runs = {MAIN: _Run(MAIN, work / "runs" / MAIN, 1.0, args.seed, args.joiners_per_day,
                       tuple(main_segments))}
    main = {experiment.name: experiment for experiment in _main_experiments(args)}
    twins: dict[str, tuple[tuple[str, str], ...]] = {
        # Policy -> (experiment, arm) whose name its lists carry (one layer each).
        "popularity": (("recs_vs_popularity", "popularity"),),
        "recs": (("recs_vs_popularity", "recs"), ("planted", "control"), ("aa", "control")),
        "tail": (("planted", "tail"),)}
    if args.twin_sample:
        for policy, names in twins.items():
            experiments = tuple(twin_experiment(main[name], arm, layer=f"twin-{n}")
                                for n, (name, arm) in enumerate(names))
            runs[f"twin_{policy}"] = _Run(f"twin_{policy}", work / "runs" / f"twin_{policy}",
                                          args.twin_sample, args.seed, args.joiners_per_day,
                                          ((args.days, experiments, _STABLE),))
    if args.twin_repeat_sample:
        for name in ("twin_recs_repeat_a", "twin_recs_repeat_b"):
            experiments = (twin_experiment(main["aa"], "control"),)
            runs[name] = _Run(name, work / "runs" / name, args.twin_repeat_sample, args.seed,
                              args.joiners_per_day, ((args.days, experiments, _STABLE),))
    if args.aa_replicates:
        runs[REPLICATES] = _Run(REPLICATES, work / "runs" / REPLICATES, args.aa_sample,
                                args.seed + 1, args.joiners_per_day,
                                ((args.aa_days, (_replicates_experiment(args.aa_replicates),),
                                  _STABLE),))
    return runs


# Simulating: a run's segments against the stack, resumable day by day.

class _ModelServer:
    """`recs serve-models` over the champion's serving folder, started when first needed
    (a finished run needs none) and restarted when the labels change."""

    def __init__(self, serving_dir: pathlib.Path, work: pathlib.Path) -> None:
        self.serving_dir, self.work = serving_dir, work
        self.labels: tuple[str, ...] | None = None
        self.url = ""
        self._stack = contextlib.ExitStack()

    def serving(self, labels: tuple[str, ...]) -> str:
        if labels != self.labels:
            self.close()
            rest, grpc = _free_port(), _free_port()
            flags = [flag for label in labels for flag in ("--label", label)]
            self._stack.enter_context(_process(
                ["serve-models", "--base", str(self.serving_dir), "--rest-port", str(rest),
                 "--grpc-port", str(grpc), "--num-versions", "2", "--poll-seconds", "0",
                 *flags], f"http://127.0.0.1:{rest}/v1/models/ranker",
                self.work / "models.log"))
            self.labels, self.url = labels, f"http://127.0.0.1:{rest}"
        return self.url

    def close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.labels = None


def _loop(run: _Run, world_config: Any, args: argparse.Namespace) -> Any:
    from simulation import ClosedLoop, LoopConfig

    return ClosedLoop(world_config.generator, LoopConfig(
        days=run.segments[0][0], seed=run.seed, workers=args.workers,
        joiners_per_day=run.joiners_per_day, sample=run.sample), run.loop_dir)


def _checkpoint(redis_url: str, consumers: list[Any]) -> Callable[[], None]:
    """At a day's end: once every event is acknowledged, empties the event stream (its
    entries are in the day's log) and saves the Redis dump beside the loop's state."""
    import redis

    from recs.contract.events import EVENT_STREAM

    client = redis.Redis.from_url(redis_url)

    def checkpoint() -> None:
        deadline = time.monotonic() + 300
        group = consumers[0].group
        while client.xpending(EVENT_STREAM, group)["pending"]:
            if time.monotonic() > deadline:
                raise TimeoutError("events stayed pending at the day's end")
            time.sleep(0.05)
        client.xtrim(EVENT_STREAM, maxlen=0, approximate=False)
        client.save()

    return checkpoint


def _simulate(run: _Run, world_config: Any, champion: Any, models: _ModelServer,
              args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs what is left of `run` (resuming from its last finished day); returns the
    per-segment timings of this session."""
    import redis

    from recs.contract import features as F
    from recs.data.catalogue import read_jsonl
    from serving.config import ServiceConfig
    from serving.consumer import ProfileUpdater
    from serving.online.store import RedisProfileStore, load_store
    from simulation import StreamPublisher, wait_until_consumed

    loop = _loop(run, world_config, args)
    done = loop.resume()
    timings = []
    if done >= run.days:
        return timings
    durations = {row[F.TITLE_ID]: float(row[F.DURATION_SECONDS])
                 for row in read_jsonl(str(champion.layout.titles))}
    redis_dir = run.folder / "redis"
    fresh = not (redis_dir / "dump.rdb").exists()
    with redis_server(redis_dir) as redis_url:
        client = redis.Redis.from_url(redis_url)
        if fresh:
            load_store(RedisProfileStore(redis_url), str(champion.layout.users),
                       champion.examples_glob)
            client.save()
        for until, experiments, labels in run.segments:
            if loop.days_done >= until:
                continue
            model_url = models.serving(labels)
            port = _free_port()
            served_log = run.folder / "served.jsonl"
            service = ServiceConfig(
                model_server=model_url, serving_dir=str(champion.serving_dir), store=redis_url,
                profile_changes=redis_url, served_log=str(served_log),
                # The store read on every request and no exploration: the service draws
                # nothing at random, so twins under one policy are identical. Generous: a
                # slow answer under the loop's load must not turn a model arm into the
                # popularity fallback (fallbacks are counted per arm all the same).
                profile_cache_s=0.0, exploration=0.0, model_timeout_ms=10_000,
                max_in_flight=None, experiments=experiments)
            config_path = run.folder / f"service-{until}.json"
            config_path.write_text(service.to_json())
            started, first = time.perf_counter(), loop.days_done
            with _process(["serve", "--config", str(config_path), "--port", str(port)],
                          f"http://127.0.0.1:{port}/readyz", run.folder / "service.log"):
                send = StreamPublisher(redis_url, batch=args.publish_batch)
                consumers = [ProfileUpdater(redis.Redis.from_url(redis_url),
                                            RedisProfileStore(redis_url), durations,
                                            consumer=f"updater-{n + 1}", clock=loop.now)
                             for n in range(_CONSUMERS)]
                loop.attach(f"http://127.0.0.1:{port}", publish=send,
                            served_log=str(served_log),
                            settle=lambda: wait_until_consumed(consumers, send),
                            sign_up=RedisProfileStore(redis_url).upsert_profiles,
                            checkpoint=_checkpoint(redis_url, consumers))
                stop = threading.Event()
                threads = [threading.Thread(target=c.run, args=(stop,), daemon=True)
                           for c in consumers]
                for thread in threads:
                    thread.start()
                try:
                    for report in loop.run(until - loop.days_done):
                        print(f"{run.name} {report.date}: {report.sessions} sessions in "
                              f"{report.seconds} s", flush=True)
                finally:
                    stop.set()
                    for thread in threads:
                        thread.join(timeout=60)
            seconds = time.perf_counter() - started
            days = loop.reports[first:]
            sessions = sum(r.sessions for r in days)
            timings.append({"run": run.name, "days": [first, loop.days_done],
                            "seconds": round(seconds, 1), "sessions": sessions,
                            "sessions_per_second": round(sessions / seconds, 1)})
    return timings


def _link_partitions(sources: list[pathlib.Path], target: pathlib.Path,
                     last_day: str = "9999-12-31") -> None:
    """Day partitions (up to `last_day`) of the `sources` folders under `target` (later
    sources win a day both have), as real folders of hard links: Beam's file matching does
    not follow symbolic links to folders, and links cost no space."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    days: dict[str, pathlib.Path] = {}
    for source in sources:
        for day in sorted(source.glob(day_partition("*"))):
            if day.name <= day_partition(last_day):
                days[day.name] = day
    for name, day in sorted(days.items()):
        (target / name).mkdir()
        for path in sorted(day.iterdir()):
            try:
                os.link(path, target / name / path.name)
            except OSError:  # Another file system: copy.
                shutil.copy(path, target / name / path.name)


def _merged_raw(target: pathlib.Path, sources: list[pathlib.Path],
                last_day: str = "9999-12-31") -> pathlib.Path:
    """A raw folder with the event day partitions of `sources` (up to `last_day`, later
    sources winning ties) and the last source's profile and catalogue tables."""
    merged, last = RawLayout(target), RawLayout(sources[-1])
    _link_partitions([RawLayout(source).events for source in sources], merged.events,
                     last_day)
    shutil.copy(last.users, merged.users)
    shutil.copy(last.titles, merged.titles)
    return target


def _retrain(work: pathlib.Path, champion: Any, runs: dict[str, _Run], world_config: Any,
             args: argparse.Namespace) -> float:
    """The challenger: trained on the generated days and main's first --days days, copied
    in as version 2 of every model. Done once (a marker file says so)."""
    from tfx_pipeline.world import build_world_from_logs

    marker = work / "retrained.done"
    if marker.exists():
        return 0.0
    started = time.perf_counter()
    last_day = _first_date(world_config) + dt.timedelta(days=args.days - 1)
    raw = _merged_raw(work / "raw-retrain", [champion.raw, runs[MAIN].loop_dir],
                      last_day.isoformat())
    shutil.rmtree(work / "retrained", ignore_errors=True)
    retrained = build_world_from_logs(work / "retrained", raw, world_config)
    for model_dir in retrained.serving_dir.iterdir():
        target = champion.serving_dir / model_dir.name / "2"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(model_dir / "1", target)
    marker.write_text("")
    return round(time.perf_counter() - started, 1)


# Analysis.

def _ingest(run: _Run, champion: Any) -> tuple[pathlib.Path, dict[str, Any]]:
    """Ingests the run's days (once), and returns an examples folder with the generated
    days' partitions (the champion's, for the pre-period) and the run's."""
    from transforms.ingestion import IngestionConfig, run_ingestion

    loop_raw = RawLayout(run.loop_dir)
    output = run.folder / "ingested"
    marker = run.folder / "ingested.json"
    if not marker.exists():
        shutil.rmtree(output, ignore_errors=True)
        config = IngestionConfig(events_glob=loop_raw.events_glob,
                                 users_path=str(loop_raw.users),
                                 titles_path=str(loop_raw.titles), output_dir=str(output))
        started = time.perf_counter()
        report = run_ingestion(config)
        marker.write_text(json.dumps({"events_read": report.events_read,
                                      "records_written": report.records_written,
                                      "dead_lettered": report.dead_lettered,
                                      "seconds": round(time.perf_counter() - started, 1)}))
    examples = run.folder / "examples"
    _link_partitions([RunLayout(champion.root).examples_dir, output / "examples"], examples)
    return examples, json.loads(marker.read_text())


def _first_date(world_config: Any) -> dt.date:
    """The loop's first day: the day after the generated days (`ClosedLoop.first_date`)."""
    generator = world_config.generator
    return dt.date.fromisoformat(generator.start_date) + dt.timedelta(days=generator.days)


def _window(run: _Run, world_config: Any, segment: int) -> tuple[str, str]:
    """The first and last ISO day of a run's segment."""
    start = 0 if segment == 0 else run.segments[segment - 1][0]
    end = run.segments[segment][0] - 1
    first = _first_date(world_config)
    return ((first + dt.timedelta(days=start)).isoformat(),
            (first + dt.timedelta(days=end)).isoformat())


def _beam_rows(name: str, run: _Run, window: tuple[str, str], examples: pathlib.Path,
               daily: bool = False) -> tuple[list[dict], list[list[dict]], dict[str, Any]]:
    """The experiment's per-user outcome rows by the Beam job (`transforms.outcomes`), and
    with `daily` the rows as they stood at each day of the window (the sequential looks'),
    `[days]`."""
    from recs.contract import outcomes as O
    from transforms.outcomes import OutcomesConfig, run_outcomes

    started = time.perf_counter()
    output = run.folder / "outcomes" / f"{name}.jsonl"
    output.parent.mkdir(parents=True, exist_ok=True)
    loop_raw = RawLayout(run.loop_dir)
    config = OutcomesConfig(
        served_path=str(loop_raw.served), examples_dir=str(examples),
        subscriptions_dir=str(loop_raw.subscriptions), output_path=str(output),
        experiment=name, start_day=window[0], end_day=window[1], daily=daily)
    report = run_outcomes(config)
    rows = _read_jsonl(output)
    by_day = O.rows_by_day(_read_jsonl(pathlib.Path(config.daily_path))) if daily else []
    return rows, by_day, {"dead_lettered": report.dead_lettered,
                          "seconds": round(time.perf_counter() - started, 1)}


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _comparisons(comparisons: list[Any]) -> dict[str, Any]:
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
            for c in comparisons}


def _survival_inputs(rows: list[dict], cohorts: dict[str, str]
                     ) -> dict[str, tuple[list[str], list[float], list[int], list[str]]]:
    """Per cohort: (arm, days observed, churned, user) of each row's user: the rows'
    survival fields, from the first exposure to the first cancellation or to the window's
    end."""
    from recs.contract import outcomes as O

    inputs: dict[str, tuple[list, list, list, list]] = {c: ([], [], [], []) for c in COHORTS}
    for row in rows:
        if not O.has_survival(row):
            continue
        for cohort in ("all", cohorts.get(row[O.USER_ID], ESTABLISHED)):
            arms, durations, flags, users = inputs[cohort]
            arms.append(row[O.ARM])
            durations.append(float(row[O.DAYS_OBSERVED]))
            flags.append(int(row[O.CHURNED]))
            users.append(row[O.USER_ID])
    return inputs


def _survival(inputs: dict[str, tuple], arms: tuple[str, str]) -> dict[str, Any]:
    """Kaplan-Meier retention per cohort (`monitoring.survival`), where both arms have
    users (None elsewhere)."""
    from monitoring.survival import retention_survival

    result = {}
    for cohort, (labels, durations, flags, _) in inputs.items():
        result[cohort] = (retention_survival(labels, durations, flags, arms=arms,
                                             days=RETENTION_DAYS, alpha=ALPHA)
                          if all(arm in labels for arm in arms) else None)
    return result


def _retained_rows(inputs: dict[str, tuple]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per cohort, user -> {"retention_dD": 1, 0 or None}: each user's retention at the day
    marks, for the twins' paired differences."""
    from monitoring.survival import retention_metric
    from simulation import retained_at

    return {cohort: {user: {retention_metric(day): retained_at(duration, bool(flag), day)
                            for day in RETENTION_DAYS}
                     for user, duration, flag in zip(users, durations, flags)}
            for cohort, (_, durations, flags, users) in inputs.items()}


def _experiment_figures(experiment: Any, run: _Run, window: tuple[str, str],
                        examples: pathlib.Path, cohorts: dict[str, str], rule: Any,
                        seconds: float) -> tuple[dict[str, Any], list[dict], dict[str, Any]]:
    """The A/B test: rows (Beam), fixed-horizon comparisons, survival by cohort, the daily
    sequential looks and the verdict of the pre-registered rule."""
    from monitoring.abtest import Analysis, analyze, decide
    from monitoring.sequential import sequential_verdict

    arms = _arms(experiment)
    rows, daily, job = _beam_rows(experiment.name, run, window, examples, daily=True)
    analysis = analyze(experiment, rows, ALPHA)
    survival = _survival(_survival_inputs(rows, cohorts), arms)
    joined = Analysis(analysis.experiment, analysis.arms, analysis.sample_ratio,
                      analysis.comparisons + (survival["all"].comparisons()
                                              if survival["all"] else []))
    try:
        verdict = decide(joined, rule).to_dict()
    except ValueError as error:  # E.g. a window too short for a 7-day return.
        verdict = {"action": None, "reason": str(error)}
    looks = (dt.date.fromisoformat(window[1]) - dt.date.fromisoformat(window[0])).days + 1
    try:
        sequential = sequential_verdict(daily, rule, looks=looks, arms=arms).to_dict()
    except ValueError as error:  # E.g. no day with a 7-day return yet in either arm.
        sequential = {"error": str(error)}
    ratio = analysis.sample_ratio
    figures = {
        "arms": list(arms), "window": {"first_day": window[0], "last_day": window[1]},
        "users_per_arm": dict(zip(arms, ratio.observed)),
        "srm": {"observed": list(ratio.observed), "p_value": ratio.p_value,
                "mismatch": ratio.mismatch},
        "metrics": _comparisons(joined.comparisons), "verdict": verdict,
        "served_engagement": _served_engagement(rows, arms),
        "survival": {cohort: (value.to_dict() if value else None)
                     for cohort, value in survival.items()},
        "outcomes_job": job, "loop_seconds": round(seconds, 1)}
    return figures, rows, {"daily": daily, "looks": looks, "sequential": sequential}


def _share(row: dict) -> float | None:
    return row["served_engaged"] / row["titles_served"] if row["titles_served"] else None


def _served_engagement(rows: list[dict], arms: tuple[str, str]) -> dict[str, Any]:
    """Engagement with served titles (`SHARE`) compared by Welch's test: the planted arm
    must come out lower."""
    from monitoring.abtest import compare_means

    shares = {arm: [_share(row) for row in rows if row["arm"] == arm
                    and _share(row) is not None] for arm in arms}
    comparison = compare_means(SHARE, shares[arms[0]], shares[arms[1]], ALPHA)
    return {**dataclasses.asdict(comparison), "significant": comparison.significant}


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


def _replicates_experiment(replicates: int) -> Any:
    """The A/A replicates as one experiment of 2 x `replicates` equal arms (r00_a, r00_b,
    r01_a, ...): replicate i compares r{i}_a with r{i}_b, on users no other replicate has."""
    from serving.online.experiments import Arm, Experiment

    return Experiment(REPLICATES, arms=tuple(Arm(f"r{n:02d}_{side}")
                                             for n in range(replicates) for side in "ab"))


def _aa_replicates(run: _Run, window: tuple[str, str], examples: pathlib.Path,
                   replicates: int) -> dict[str, Any]:
    """Each replicate an independent A/A test; the share called significant, per metric."""
    from monitoring.abtest import analyze
    from serving.online.experiments import Arm, Experiment

    rows, _, job = _beam_rows(REPLICATES, run, window, examples)
    hits: dict[str, int] = {}
    tested: dict[str, int] = {}
    users = []
    for n in range(replicates):
        arms = (f"r{n:02d}_a", f"r{n:02d}_b")
        mine = [row for row in rows if row["arm"] in arms]
        users.append(len(mine))
        try:
            comparisons = analyze(Experiment(REPLICATES, arms=(Arm(arms[0]), Arm(arms[1]))),
                                  mine, ALPHA).comparisons
        except ValueError:  # An arm without users: too small a replicate.
            continue
        for comparison in comparisons:
            tested[comparison.metric] = tested.get(comparison.metric, 0) + 1
            hits[comparison.metric] = hits.get(comparison.metric, 0) + comparison.significant
    return {"replicates": replicates, "users_per_replicate": users, "alpha": ALPHA,
            "window": list(window), "tested": tested, "outcomes_job": job,
            "false_positive_rate": {metric: hits[metric] / tested[metric] for metric in tested}}


def _served_fallbacks(served_dir: pathlib.Path) -> dict[str, dict[str, int]]:
    """Served lists and popularity fallbacks per experiment arm, from the served logs."""
    from recs.contract.served import parse

    counts: dict[str, dict[str, int]] = {}
    for path in sorted(served_dir.glob(f"{day_partition('*')}/*.jsonl")):
        for line in path.read_text().splitlines():
            served = parse(line)
            for experiment, arm in served.experiments.items():
                key = f"{experiment}/{arm}"
                bucket = counts.setdefault(key, {"lists": 0, "fallbacks": 0})
                bucket["lists"] += 1
                bucket["fallbacks"] += served.fallback is not None
    return counts


def _cohorts(run: _Run) -> dict[str, str]:
    """user_id -> cohort (established, or new: joined in the loop), from the loop's per-user
    outcomes."""
    return {row["user_id"]: row["cohort"]
            for row in _read_jsonl(run.loop_dir / "user_outcomes.jsonl")}


def _twin_rows(run: _Run, experiment: str, window: tuple[str, str], examples: pathlib.Path,
               cohorts: dict[str, str]) -> dict[str, dict[str, dict]]:
    """A twin run's rows for `experiment` (whose two arms are one policy), by cohort and
    user, with each user's retention at the day marks."""
    rows, _, _ = _beam_rows(experiment, run, window, examples)
    retained = _retained_rows(_survival_inputs(rows, cohorts))
    by_user = {row["user_id"]: {**row, SHARE: _share(row)} for row in rows}
    return {cohort: {user: {**by_user[user], **marks} for user, marks in users.items()}
            for cohort, users in retained.items()}


def _truth(control: dict, treatment: dict, ab: dict[str, Any], ab_survival: dict[str, Any],
           ab_share: dict[str, Any]) -> dict[str, Any]:
    """The twins' paired differences per cohort and metric, each beside the A/B estimate
    and whether its interval covers the truth."""
    from monitoring.survival import retention_metric
    from simulation import paired_differences

    metrics = (*TWIN_METRICS, *(retention_metric(day) for day in RETENTION_DAYS))
    result: dict[str, Any] = {}
    for cohort in COHORTS:
        if not control[cohort] or not set(control[cohort]) & set(treatment[cohort]):
            continue
        marks = {mark["metric"]: mark for mark in (ab_survival.get(cohort) or {}).get(
            "retention", []) if mark["identified"]}
        rows = {}
        for d in paired_differences(control[cohort], treatment[cohort], metrics, ALPHA):
            estimate = (ab.get(d.metric) if cohort == "all" and d.metric in ab
                        else ab_share if cohort == "all" and d.metric == SHARE
                        else marks.get(d.metric))
            rows[d.metric] = {**dataclasses.asdict(d), "ab": None if estimate is None else {
                "difference": estimate["difference"], "ci_low": estimate["ci_low"],
                "ci_high": estimate["ci_high"],
                "covers_truth": d.covered_by(estimate["ci_low"], estimate["ci_high"])}}
        result[cohort] = rows
    return result


def _loop_alone(world_config: Any, args: argparse.Namespace, work: pathlib.Path
                ) -> dict[str, Any]:
    """The loop process's own speed: a day of a sample of the users against a stub service
    that answers at once (the same slate for everyone), so the loop's cost is all there is."""
    from recs.contract import features as F
    from simulation import ClosedLoop, LoopConfig

    class _Stub:
        def __init__(self, titles: list[str]) -> None:
            self.titles = titles

        def slate(self, user_id: str, k: int, device_type: str, hour: int,
                  profile: dict | None = None) -> tuple[list[str], str]:
            return self.titles[:k], ""

    class _Sink:
        def __call__(self, events: list[dict]) -> None:
            pass

        def flush(self) -> None:
            pass

    folder = work / "loop_alone"
    shutil.rmtree(folder, ignore_errors=True)
    loop = ClosedLoop(world_config.generator, LoopConfig(
        days=1, seed=args.seed, workers=args.workers, sample=min(1.0, 2000 / args.users)),
        folder)
    rows = sorted(loop.world.titles.rows, key=lambda row: -float(row[F.POPULARITY]))
    loop.client = _Stub([row[F.TITLE_ID] for row in rows[:100]])
    loop.publish = _Sink()
    started = time.perf_counter()
    sessions = sum(report.sessions for report in loop.run())
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return {"sessions": sessions, "seconds": round(seconds, 2),
            "sessions_per_second": round(sessions / seconds, 1)}


def _loop_figures(runs: dict[str, _Run], sessions: list[dict], alone: dict[str, Any]
                  ) -> dict[str, Any]:
    """Sessions per second of each run (over every day run, this session or an earlier
    one: from the loop's own day reports)."""
    figures: dict[str, Any] = {"runs": {}}
    for name, run in runs.items():
        path = run.loop_dir / "loop.json"
        if not path.exists():
            continue
        days = json.loads(path.read_text())["days"]
        sessions = sum(day["sessions"] for day in days)
        seconds = sum(day["seconds"] for day in days)
        figures["runs"][name] = {
            "days": len(days), "sessions": sessions, "seconds": round(seconds, 1),
            "sessions_per_second": round(sessions / seconds, 1) if seconds else None,
            "request_seconds": round(sum(d.get("request_seconds", 0.0) for d in days), 1),
            "settle_seconds": round(sum(d.get("settle_seconds", 0.0) for d in days), 1),
            "request_errors": sum(sum(d["request_errors"].values()) for d in days)}
    main = figures["runs"].get(MAIN, {})
    figures["sessions_per_second"] = main.get("sessions_per_second")
    figures["loop_alone"] = alone
    figures["sessions_of_work"] = sessions
    return figures


_PANELS = (("recs_vs_popularity", "all", "recs vs popularity"),
           ("recs_vs_popularity", "new", "new subscribers: recs vs popularity"),
           ("planted", "all", "planted: tail slots vs recs"),
           ("aa", "all", "A/A"))


def plot_results(path: pathlib.Path) -> list[pathlib.Path]:
    """The results file's Kaplan-Meier curves (with their bands) and sequential looks as PNGs
    beside it: `<name>_retention.png` and `<name>_sequential.png`."""
    from monitoring.sequential import draw_sequential
    from monitoring.survival import draw_retention
    from recs.plots import pyplot, save_figure

    figures = json.loads(path.read_text())["figures"]
    panels = {
        "retention": ([((figures.get(experiment) or {}).get("survival", {}).get(cohort),
                        title) for experiment, cohort, title in _PANELS], (2, 2), (11, 7)),
        "sequential": ([(figures.get("sequential", {}).get(name), name)
                        for name in ("recs_vs_popularity", "planted", "aa")], (1, 3), (13, 3.5))}
    written = []
    for kind, (contents, grid, size) in panels.items():
        figure, axes = pyplot().subplots(*grid, figsize=size)
        for axis, (content, title) in zip(axes.flat, contents):
            if not content:
                axis.set_title(f"{title}: nothing to draw")
            elif kind == "retention":
                draw_retention(axis, content, title)
            else:
                draw_sequential(axis, content)
        figure.tight_layout()
        written.append(path.with_name(f"{path.stem}_{kind}.png"))
        save_figure(figure, str(written[-1]))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--titles", type=int, default=2000)
    parser.add_argument("--history-days", type=int, default=7,
                        help="generated days the first models train on")
    parser.add_argument("--days", type=int, default=30, help="simulated days of main")
    parser.add_argument("--challenger-days", type=int, default=14,
                        help="days of the challenger experiment after main (0: none)")
    parser.add_argument("--joiners-per-day", type=int, default=50)
    parser.add_argument("--aa-traffic", type=float, default=0.25)
    parser.add_argument("--planted-traffic", type=float, default=0.25)
    parser.add_argument("--tail-share", type=float, default=0.5)
    parser.add_argument("--twin-sample", type=float, default=0.25,
                        help="share of the users in each twin run (0: no twins)")
    parser.add_argument("--twin-repeat-sample", type=float, default=0.05,
                        help="share of the users in the repeated recs twin (0: none)")
    parser.add_argument("--aa-replicates", type=int, default=20)
    parser.add_argument("--aa-sample", type=float, default=0.25)
    parser.add_argument("--aa-days", type=int, default=14)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--publish-batch", type=int, default=100,
                        help="events per XADD pipeline")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--aa-salts", type=int, default=200)
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue the runs in --workdir from their last finished day "
                             "(and redo the analysis)")
    parser.add_argument("--name", default="retention_ab")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--plots-only", type=pathlib.Path, default=None,
                        help="only draw the PNGs of this results file")
    args = parser.parse_args()
    if args.plots_only:
        print("wrote", *plot_results(args.plots_only))
        return
    plot_results(run_benchmark(args))


def run_benchmark(args: argparse.Namespace) -> pathlib.Path:
    """Builds (or finds) the world, runs (or resumes) every loop run, analyses, writes the
    results file."""
    from monitoring.abtest import DecisionRule
    from monitoring.sequential import aa_stopping_rate
    from simulation import BehaviourConfig
    from tfx_pipeline.world import World, build_world

    work = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="retention-ab-"))
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()) and not args.resume:
        raise ValueError(f"--workdir {work} holds an earlier run: pass --resume to continue "
                         "it, or give a new folder")
    started = time.perf_counter()
    world_config = _world_config(args)
    rule = DecisionRule(PRIMARY, ALPHA, 0.0)
    calibration = {"cpu_flags": cpu_flags(), "matmul_gflops_float32_1_thread":
                   matmul_gflops(1.0)}
    progress_path = work / "progress.json"
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {
        "seconds": {}, "sessions": []}
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": []}
    progress["sessions"].append(session)
    seconds = progress["seconds"]

    mark = time.perf_counter()
    if (work / "world" / "world.json").exists():
        # Built earlier (by this code or an earlier version of it: a resumed run keeps its
        # models).
        champion = World(work / "world")
    else:
        champion = build_world(work / "world", world_config)
        seconds["build_champion"] = round(time.perf_counter() - mark, 1)
    runs = _runs(args, work)
    models = _ModelServer(champion.serving_dir, work)
    try:
        order = [MAIN] + [name for name in runs if name != MAIN]
        main_run = runs[MAIN]
        # Main's first segment, the twins and the replicates share the champion's models;
        # the challenger segment needs the retrained ones.
        first = dataclasses.replace(main_run, segments=main_run.segments[:1])
        for name in order:
            session["runs"] += _simulate(first if name == MAIN else runs[name], world_config,
                                         champion, models, args)
            progress_path.write_text(json.dumps(progress))
        if args.challenger_days:
            models.close()
            retrain = _retrain(work, champion, runs, world_config, args)
            if retrain:
                seconds["retrain_challenger"] = retrain
                print(f"retrained in {retrain} s", flush=True)
            session["runs"] += _simulate(main_run, world_config, champion, models, args)
    finally:
        models.close()
    progress_path.write_text(json.dumps(progress))

    mark = time.perf_counter()
    figures: dict[str, Any] = {}
    examples = {}
    ingestion = {}
    for name, run in runs.items():
        examples[name], ingestion[name] = _ingest(run, champion)
    seconds["ingest"] = round(time.perf_counter() - mark, 1)
    mark = time.perf_counter()
    cohorts = {name: _cohorts(run) for name, run in runs.items()}
    loop_seconds = {name: sum(day["seconds"] for day in json.loads(
        (run.loop_dir / "loop.json").read_text())["days"]) for name, run in runs.items()}
    rows: dict[str, list[dict]] = {}
    extra: dict[str, Any] = {}
    segment_of = {experiment.name: (index, experiment)
                  for index, (_, experiments, _) in enumerate(runs[MAIN].segments)
                  for experiment in experiments}
    for name, (segment, experiment) in segment_of.items():
        window = _window(runs[MAIN], world_config, segment)
        figures[name], rows[name], extra[name] = _experiment_figures(
            experiment, runs[MAIN], window, examples[MAIN], cohorts[MAIN], rule,
            loop_seconds[MAIN])
    figures["aa"]["resplits"] = _aa_false_positive_rate(rows["aa"], args.aa_salts)
    if REPLICATES in runs:
        figures["aa"]["replicates"] = _aa_replicates(
            runs[REPLICATES], _window(runs[REPLICATES], world_config, 0),
            examples[REPLICATES], args.aa_replicates)
    figures["sequential"] = {name: extra[name]["sequential"] for name in segment_of}
    try:
        figures["sequential"]["aa_stopping_rate"] = aa_stopping_rate(
            extra["aa"]["daily"], rule, looks=extra["aa"]["looks"],
            splits=args.aa_salts).to_dict()
    except ValueError as error:
        figures["sequential"]["aa_stopping_rate"] = {"error": str(error)}

    window = _window(runs[MAIN], world_config, 0)
    truth: dict[str, Any] = {}
    if args.twin_sample:
        pairs = (("recs_vs_popularity", "popularity", "recs"), ("planted", "recs", "tail"))
        for experiment, control, treatment in pairs:
            twin = {policy: _twin_rows(runs[f"twin_{policy}"], experiment, window,
                                       examples[f"twin_{policy}"], cohorts[f"twin_{policy}"])
                    for policy in (control, treatment)}
            truth[experiment] = {
                "twins": [f"twin_{control}", f"twin_{treatment}"], "sample": args.twin_sample,
                "cohorts": _truth(twin[control], twin[treatment],
                                  figures[experiment]["metrics"],
                                  figures[experiment]["survival"],
                                  figures[experiment]["served_engagement"])}
    if args.twin_repeat_sample:
        truth["aa"] = _identical_twins(runs["twin_recs_repeat_a"], runs["twin_recs_repeat_b"],
                                       args.twin_repeat_sample)
    figures["truth"] = truth
    figures["planted"]["detected"] = bool(figures["planted"]["served_engagement"]["significant"]
                                          and figures["planted"]["served_engagement"][
                                              "difference"] < 0)
    figures["new_subscribers"] = {
        experiment: {"survival": figures[experiment]["survival"]["new"],
                     "users": sum(1 for row in rows[experiment]
                                  if cohorts[MAIN].get(row["user_id"]) == "new"),
                     "truth": truth.get(experiment, {}).get("cohorts", {}).get("new")}
        for experiment in ("recs_vs_popularity", "planted")}
    figures["served_lists_by_arm"] = _served_fallbacks(RawLayout(runs[MAIN].loop_dir).served)
    main_days = json.loads((runs[MAIN].loop_dir / "loop.json").read_text())["days"]
    phases = {"1": main_days[:args.days], "2": main_days[args.days:]}
    figures["phases"] = {p: {"days": len(d), "sessions": sum(x["sessions"] for x in d),
                             "seconds": round(sum(x["seconds"] for x in d), 1),
                             "requests_per_second": round(
                                 sum(x["sessions"] for x in d)
                                 / max(1e-9, sum(x["seconds"] for x in d)), 1)}
                         for p, d in phases.items() if d}
    figures["loop_days"] = phases
    figures["loop"] = _loop_figures(runs, progress["sessions"],
                                    _loop_alone(world_config, args, work))
    figures["ingestion_all_days"] = ingestion[MAIN]
    figures["ingestion_by_run"] = ingestion
    seconds["analysis"] = round(time.perf_counter() - mark, 1)
    seconds["loops"] = round(sum(loop_seconds.values()), 1)
    seconds["total_this_session"] = round(time.perf_counter() - started, 1)
    figures["seconds"] = seconds
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    progress_path.write_text(json.dumps(progress))
    parameters = {**{key: (str(value) if isinstance(value, pathlib.Path) else value)
                     for key, value in vars(args).items()},
                  "primary_metric": PRIMARY, "alpha": ALPHA,
                  "retention_days": list(RETENTION_DAYS),
                  "minimum_detectable_effects": {
                      name: {metric: values["minimum_detectable_effect_80"]
                             for metric, values in figures[name]["metrics"].items()}
                      for name in segment_of},
                  "world": world_config.to_dict(),
                  "behaviour": BehaviourConfig().to_dict(),
                  "note": args.note or "nothing else ran on the machine"}
    ratios = {name: {"treatment_over_control": {
        metric: (values["treatment"] / values["control"] if values["control"] else None)
        for metric, values in figures[name]["metrics"].items()}}
        for name in segment_of}
    path = write_result(args.name, parameters, figures, {}, ratios, calibration)
    for name in segment_of:
        verdict = figures[name]["verdict"]
        print(f"{name}: {figures[name]['users_per_arm']} -> {verdict['action']}: "
              f"{verdict['reason']}")
    print(f"wrote {path} in {round(time.perf_counter() - started, 1)} s")
    return path


def _identical_twins(first: _Run, second: _Run, sample: float) -> dict[str, Any]:
    """Two twin runs under the same policy: how many users' outcomes, and whether every
    served list, came out the same (all of them, when the runs are deterministic)."""

    def outcomes(run: _Run) -> dict[str, dict]:
        return {row["user_id"]: row for row in (json.loads(line) for line in (
            run.loop_dir / "user_outcomes.jsonl").read_text().splitlines() if line)}

    def served(run: _Run) -> dict[str, list[list[str]]]:
        """Each user's lists in the order they asked (the log interleaves a round's users
        as their requests arrived)."""
        lists: dict[str, list[list[str]]] = {}
        for path in sorted(RawLayout(run.loop_dir).served.glob(f"{day_partition('*')}/*")):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                lists.setdefault(row["user_id"], []).append(
                    [item["title_id"] for item in row["items"]])
        return lists

    a, b = outcomes(first), outcomes(second)
    lists = served(first)
    return {"twins": [first.name, second.name], "sample": sample, "users": len(a),
            "identical_user_outcomes": sum(a[user] == b.get(user) for user in a),
            "lists": sum(map(len, lists.values())),
            "identical_served_lists": lists == served(second)}


if __name__ == "__main__":
    main()
