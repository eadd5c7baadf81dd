"""The `recs` command: thin entry points over typed functions that the tests call directly.

    recs generate        seeded synthetic streaming logs
    recs ingest          Beam ingestion -> tf.Examples + dead letters
    recs movielens       MovieLens 100K or 1M as ingested records, ready for the pipeline
    recs pipeline        run the TFX pipeline locally, or compile it for Kubeflow v2
    recs submit          start a run of the compiled pipeline on a Kubeflow Pipelines endpoint
    recs serve-models    the local TF Serving-protocol model server (REST + gRPC)
    recs serve           the recommendation service: HTTP JSON API, metrics, fallbacks
    recs openapi         the service's OpenAPI spec
    recs deploy          TF Serving config files and Kubernetes manifests
    recs consume         profile updates from the event queue (Redis Streams)
    recs monitor         one span's outcome metrics, calibration, drift and the retrain decision
    recs abtest          an A/B test's analysis: z-tests, Welch + CUPED, sample-ratio check
    recs recommend       recommendations for one user from the pushed models
    recs demo            all of the above on embedded defaults

This package sits at the end of the data flow, so it is the one place that imports from every
other package.
"""

import argparse
import dataclasses
import json
import logging
import pathlib
import re
import shutil
import sys
import threading
import time
import urllib.request

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_SERVED = ("ranker", "retrieval", "retrieval_exact", "towers")


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The layout of one end-to-end run under a single directory."""

    root: pathlib.Path

    @property
    def raw(self) -> pathlib.Path:
        return self.root / "raw"

    @property
    def ingested(self) -> pathlib.Path:
        return self.root / "ingested"

    @property
    def pipeline_root(self) -> pathlib.Path:
        return self.root / "pipeline"

    @property
    def metadata(self) -> pathlib.Path:
        return self.root / "metadata.db"

    @property
    def serving(self) -> pathlib.Path:
        return self.root / "serving"

    @property
    def store(self) -> pathlib.Path:
        return self.root / "profiles.db"

    def clean(self) -> None:
        """Removes the outputs of an earlier run, so that runs never mix."""
        for directory in (self.raw, self.ingested, self.pipeline_root, self.serving):
            shutil.rmtree(directory, ignore_errors=True)
        for path in (self.metadata, self.store):
            path.unlink(missing_ok=True)


class _ComponentProgress(logging.Handler):
    """Shows TFX's "Component X is running/finished" lines and errors, nothing else."""

    _PATTERN = re.compile(r"^Component \S+ is (running|finished)\.$")

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            print(f"    ! {message}", file=sys.stderr, flush=True)
        elif self._PATTERN.match(message):
            name = message.split()[1]
            if message.endswith("running."):
                self._started[name] = time.perf_counter()
                print(f"    - {name} ...", flush=True)
            else:
                seconds = time.perf_counter() - self._started.get(name, time.perf_counter())
                print(f"    - {name} done in {seconds:.1f}s", flush=True)


def show_pipeline_progress() -> None:
    from absl import logging as absl_logging

    # Through absl's verbosity flag, not Logger.setLevel: components re-apply that flag's value
    # to the logger while they run, which would silence a level set only on the logger.
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(_ComponentProgress())
    absl_logger.propagate = False


def generate(out: pathlib.Path, users: int, titles: int, days: int, seed: int,
             sessions_per_user_day: float = 0.6):
    from recs.data.synthetic import GeneratorConfig, generate as write

    return write(GeneratorConfig(num_users=users, num_titles=titles, days=days, seed=seed,
                                 sessions_per_user_day=sessions_per_user_day), out)


def ingest(raw: pathlib.Path, out: pathlib.Path, beam_args: list[str]):
    from transforms.ingestion import IngestionConfig, run_ingestion

    config = IngestionConfig(events_glob=str(raw / "events" / "*" / "*"),
                             users_path=str(raw / "users.jsonl"),
                             titles_path=str(raw / "titles.jsonl"), output_dir=str(out),
                             profile_updates_glob=str(raw / "profile_updates" / "*" / "*.jsonl"))
    return run_ingestion(config, beam_args)


def import_movielens(dataset: str, data_dir: pathlib.Path, workdir: Workdir,
                     max_ratings: int = 0, seed: int = 42) -> int:
    """Writes MovieLens as the pipeline's inputs: interaction tf.Examples, users and titles.

    Derived features (preferred genres, popularity, history) look at every written rating:
    this is the operational path. The quality benchmarks, which must not leak test ratings,
    derive them from their training split instead.

    Args:
        dataset: "ml-100k" or "ml-1m".
        data_dir: the folder of the GroupLens files.
        workdir: where `raw/` and `ingested/examples/` go (cleaned first).
        max_ratings: keep a seeded random subset of this many ratings (0 = all).

    Returns:
        The number of interaction records written.
    """
    import json

    import numpy as np
    import tensorflow as tf

    from recs import features as F
    from recs.data.movielens import (catalogue_rows, interaction_records, read_ml100k,
                                     read_ml1m)
    from transforms.ingestion import to_example

    readers = {"ml-100k": read_ml100k, "ml-1m": read_ml1m}
    if dataset not in readers:
        raise ValueError(f"dataset must be one of {sorted(readers)}; received {dataset!r}.")
    data = readers[dataset](str(data_dir))
    rows = np.arange(data.num_ratings)
    if max_ratings:
        rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_ratings])
    workdir.clean()
    records = interaction_records(data, rows, reference=rows)
    # One folder, read as one span: the ratings are a snapshot, not daily deliveries.
    examples = workdir.ingested / "examples" / "snapshot"
    examples.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(examples / "interactions-00000-of-00001.tfrecord.gz"),
                              options) as writer:
        for record in records:
            writer.write(to_example(record))
    workdir.raw.mkdir(parents=True)
    preferred = {r[F.USER_ID]: r[F.PREFERRED_GENRES] for r in records}
    with open(workdir.raw / "users.jsonl", "w") as handle:
        for user, profile in data.profiles.items():
            handle.write(json.dumps({F.USER_ID: user, **profile,
                                     F.PREFERRED_GENRES: preferred.get(user, "")}) + "\n")
    with open(workdir.raw / "titles.jsonl", "w") as handle:
        for row in catalogue_rows(data, rows):
            handle.write(json.dumps(row) + "\n")
    return len(records)


def pipeline_config(workdir: Workdir, **overrides):
    from tfx_pipeline import PipelineConfig

    paths = dict(pipeline_root=str(workdir.pipeline_root),
                 examples_dir=str(workdir.ingested / "examples"),
                 catalogue_path=str(workdir.raw / "titles.jsonl"),
                 serving_base_dir=str(workdir.serving), metadata_path=str(workdir.metadata))
    return PipelineConfig(**{**paths, **overrides})


def load_profile_store(workdir: Workdir):
    from serving.store import ProfileStore, load_store

    if workdir.store.exists():
        workdir.store.unlink()
    store = ProfileStore(str(workdir.store))
    load_store(store, str(workdir.raw / "users.jsonl"),
               str(workdir.ingested / "examples" / "*" / "*.tfrecord.gz"))
    return store


def start_model_server(serving_dir: pathlib.Path, rest_port: int = 0, grpc_port: int = 0,
                       host: str = "127.0.0.1", poll_seconds: float = 0.0,
                       num_versions: int = 1):
    """Loads every pushed model (warmed up) and serves it; `poll_seconds` > 0 also picks up
    versions pushed later."""
    from serving.model_server import ModelRegistry, ModelServer

    registry = ModelRegistry(str(serving_dir), _SERVED, num_versions=num_versions)
    registry.load()
    if poll_seconds > 0:
        registry.start_polling(poll_seconds)
    return ModelServer(registry, host=host, rest_port=rest_port, grpc_port=grpc_port).start()


def recommend(workdir: Workdir, user_id: str, k: int, device_type: str, hour: int,
              model_server: str = "", protocol: str = "rest"):
    """Recommendations for one user; starts an in-process model server unless one is given."""
    from serving.client import GrpcClient, RestClient
    from serving.recommender import Recommender, load_catalogue
    from serving.store import ProfileStore

    server = None
    if not model_server:
        server = start_model_server(workdir.serving)
        model_server = server.rest_url if protocol == "rest" else server.grpc_target
    client = RestClient(model_server) if protocol == "rest" else GrpcClient(model_server)
    store = ProfileStore(str(workdir.store))
    try:
        recommender = Recommender(client, store, load_catalogue(str(workdir.serving), "retrieval"))
        return recommender.recommend(user_id, k=k, device_type=device_type, hour=hour)
    finally:
        store.close()
        if server is not None:
            server.stop()


def service_app(config):
    """The recommendation service's app as a `serving.config.ServiceConfig` describes it."""
    from serving.client import GrpcClient, RestClient
    from serving.recommender import Recommender, load_catalogue
    from serving.service import create_app
    from serving.store import open_store

    def client(target: str):
        return RestClient(target) if config.protocol == "rest" else GrpcClient(target)

    recommender = Recommender(
        client(config.model_server), open_store(config.store),
        load_catalogue(config.serving_dir, config.retrieval_model),
        retrieval_model=config.retrieval_model, ranker_model=config.ranker_model,
        retrieval_client=client(config.retrieval_server) if config.retrieval_server else None)
    return create_app(recommender, config)


def serve(config, host: str, port: int, embedded_model_server: bool) -> None:
    """`recs serve`: the HTTP service on the guarded stack of `serving.http` (uvloop,
    httptools, the config's header, body and keep-alive limits); `embedded_model_server`
    first starts a local model server over `config.serving_dir` and points the service at
    it."""
    import uvicorn

    from serving.http import uvicorn_config

    server = None
    if embedded_model_server:
        server = start_model_server(pathlib.Path(config.serving_dir), poll_seconds=5.0)
        config = dataclasses.replace(
            config, model_server=server.rest_url if config.protocol == "rest"
            else server.grpc_target, retrieval_server="")
        print(f"model server: REST {server.rest_url}  gRPC {server.grpc_target}", flush=True)
    try:
        uvicorn.Server(uvicorn_config(service_app(config), config.http_limits(), host, port,
                                      log_level="info")).run()
    finally:
        if server is not None:
            server.stop()


def consume(redis_url: str, store_spec: str, catalogue_path: str, consumer: str,
            claim_idle_ms: int, until_idle: bool):
    """`recs consume`: the profile-update consumer until interrupted (or the stream is idle).

    Returns:
        The consumer's counts.
    """
    import redis

    from recs.data.catalogue import read_jsonl
    from serving.consumer import ProfileUpdater
    from serving.store import open_store

    durations = {row["title_id"]: float(row["duration_seconds"])
                 for row in read_jsonl(catalogue_path)}
    updater = ProfileUpdater(redis.Redis.from_url(redis_url),
                             open_store(store_spec), durations, consumer=consumer,
                             claim_idle_ms=claim_idle_ms)
    if until_idle:
        return updater.drain()
    stop = threading.Event()
    try:
        return updater.run(stop)
    except KeyboardInterrupt:
        stop.set()
        return updater.counts


def abtest(outcomes: pathlib.Path, experiment_name: str, weights: str, out: pathlib.Path,
           alpha: float):
    """`recs abtest`: analyzes per-user outcomes, prints a table, writes JSON and a PNG.

    Returns:
        The `recs.experiments.Analysis`.
    """
    from recs.data.catalogue import read_jsonl
    from recs.experiments import Arm, Experiment, analyze
    from recs.plots import plot_experiment

    arms = []
    for part in weights.split(","):
        name, _, weight = part.partition("=")
        arms.append(Arm(name.strip(), float(weight or 1.0)))
    analysis = analyze(Experiment(experiment_name, arms=tuple(arms)),
                       read_jsonl(str(outcomes)), alpha)
    report = analysis.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"abtest_{experiment_name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_experiment(report["comparisons"], f"{experiment_name}: {analysis.arms[1]} vs "
                    f"{analysis.arms[0]}", str(out / f"abtest_{experiment_name}.png"))
    ratio = analysis.sample_ratio
    print(f"{experiment_name}: users {dict(zip([a.name for a in arms], ratio.observed))}, "
          f"sample-ratio p = {ratio.p_value:.3g}"
          f"{'  *** SAMPLE RATIO MISMATCH: do not trust the results ***' if ratio.mismatch else ''}")
    print(f"  {'metric':<24} {'control':>10} {'treatment':>10} {'lift':>8} "
          f"{'CI of difference':>24} {'p':>8}")
    for c in analysis.comparisons:
        print(f"  {c.metric:<24} {c.control:>10.4g} {c.treatment:>10.4g} "
              f"{100 * c.relative_lift:>7.2f}% [{c.ci_low:>10.4g}, {c.ci_high:>10.4g}] "
              f"{c.p_value:>8.3g}{' *' if c.significant else ''}")
    return analysis


def openapi() -> str:
    """The service's OpenAPI spec; it depends only on the API, not on models or data."""
    from serving.config import ServiceConfig
    from serving.recommender import Recommender
    from serving.service import create_app, openapi_spec
    from serving.store import ProfileStore

    recommender = Recommender(client=None, store=ProfileStore(":memory:"), catalogue={})
    return openapi_spec(create_app(recommender, ServiceConfig()))


def print_recommendations(user_id: str, items, protocol: str) -> None:
    print(f"\n  Top {len(items)} for {user_id} (via {protocol}):")
    print(f"    {'#':>2}  {'title':<9} {'genre':<12} {'P(engaged)':>10} {'retrieval':>9}")
    for rank, item in enumerate(items, start=1):
        print(f"    {rank:>2}  {item.title_id:<9} {item.genre:<12} {item.score:>10.3f} "
              f"{item.retrieval_score:>9.3f}")


def demo(workdir: Workdir, users: int, titles: int, days: int, seed: int, k: int) -> None:
    """Runs the whole product once: data -> ingestion -> TFX -> serving -> recommendations."""
    from serving.client import GrpcClient, RestClient
    from serving.config import ServiceConfig
    from serving.recommender import Recommender, load_catalogue
    from serving.service import ServiceServer
    from tfx_pipeline import run_local

    started = time.perf_counter()
    workdir.clean()

    def stage(number: int, text: str) -> None:
        print(f"[{number}/5] {text}  (t={time.perf_counter() - started:.0f}s)", flush=True)

    stage(1, f"generating {users} users, {titles} titles, {days} days of playback logs")
    data = generate(workdir.raw, users, titles, days, seed)
    print(f"    {data.num_events} events; faults injected on purpose: {data.faults}")
    stage(2, "Beam ingestion (DirectRunner)")
    report = ingest(workdir.raw, workdir.ingested, [])
    print("    " + report.summary().replace("\n", "\n    "))
    stage(3, "TFX pipeline on LocalDagRunner")
    show_pipeline_progress()
    run_local(pipeline_config(workdir))
    stage(4, "loading the profile store and starting the model server (REST + gRPC)")
    store = load_profile_store(workdir)
    server = start_model_server(workdir.serving)
    print(f"    REST {server.rest_url}  gRPC {server.grpc_target}")
    stage(5, "recommendations: retrieve (ScaNN) -> filter finished -> rank")
    try:
        catalogue = load_catalogue(str(workdir.serving), "retrieval")
        for protocol, client in (("REST", RestClient(server.rest_url)),
                                 ("gRPC", GrpcClient(server.grpc_target))):
            recommender = Recommender(client, store, catalogue)
            for user_id in ("u000001", "u000002")[: 2 if protocol == "REST" else 1]:
                print_recommendations(user_id, recommender.recommend(user_id, k=k), protocol)
        with ServiceServer(service_app(ServiceConfig(
                model_server=server.rest_url, serving_dir=str(workdir.serving),
                store=str(workdir.store),
                served_log=str(workdir.root / "served.jsonl")))) as service:
            body = json.dumps({"user_id": "u000003", "k": k,
                               "context": {"device_type": "mobile", "hour": 8}}).encode()
            request = urllib.request.Request(f"{service.url}/v1/recommendations", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
            print(f"\n  POST {service.url}/v1/recommendations (the service, over HTTP):")
            print("    " + json.dumps({**answer, "items": answer["items"][:3]})[:600] + " ...")
    finally:
        server.stop()
        store.close()
    print(f"\nDone in {time.perf_counter() - started:.0f}s. Models: {workdir.serving}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def sizes(command: argparse.ArgumentParser) -> None:
        command.add_argument("--users", type=int, default=2000)
        command.add_argument("--titles", type=int, default=400)
        command.add_argument("--days", type=int, default=5)
        command.add_argument("--seed", type=int, default=7)

    command = commands.add_parser("generate", help="write synthetic streaming logs")
    command.add_argument("--out", type=pathlib.Path, required=True)
    sizes(command)
    command.add_argument("--sessions-per-user-day", type=float, default=0.6,
                         help="mean sessions per user and day (about 5.5 events each); "
                              "1M users at 1.8 give about 10M events a day")

    command = commands.add_parser("ingest", help="Beam ingestion; extra args go to Beam")
    command.add_argument("--raw", type=pathlib.Path, required=True)
    command.add_argument("--out", type=pathlib.Path, required=True)
    runner_config(command)

    command = commands.add_parser("movielens", help="MovieLens as the pipeline's inputs")
    command.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-100k")
    command.add_argument("--data", type=pathlib.Path, required=True,
                         help="folder of the GroupLens files, e.g. ../shared/data/movielens-100k")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("movielens_output"))
    command.add_argument("--max-ratings", type=int, default=0, help="0 = all")

    command = commands.add_parser("pipeline", help="run the TFX pipeline or compile it")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    command.add_argument("--kubeflow-out", default="",
                         help="compile a Kubeflow Pipelines v2 spec here instead of running")
    command.add_argument("--image", default="recs-pipeline:latest")
    command.add_argument("--window-spans", type=int, default=0,
                         help="train on the newest N day spans only (a retrain's rolling "
                              "window); 0 reads every span")
    runner_config(command)

    command = commands.add_parser("submit", help="run the compiled pipeline on Kubeflow")
    command.add_argument("--spec", required=True, help="the file `recs pipeline "
                         "--kubeflow-out` wrote")
    command.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8080")
    command.add_argument("--experiment", default="recs")
    command.add_argument("--run-name", default="")
    command.add_argument("--namespace", default="kubeflow")

    command = commands.add_parser("serve-models", help="TF Serving-protocol model server")
    command.add_argument("--base", type=pathlib.Path, required=True)
    command.add_argument("--host", default="127.0.0.1")
    command.add_argument("--rest-port", type=int, default=8501)
    command.add_argument("--grpc-port", type=int, default=8500)
    command.add_argument("--poll-seconds", type=float, default=5.0,
                         help="scan for new versions this often; 0 loads once")
    command.add_argument("--num-versions", type=int, default=1,
                         help="versions kept per model (TF Serving's latest policy)")

    command = commands.add_parser("serve", help="the recommendation service (HTTP JSON API)")
    command.add_argument("--config", type=pathlib.Path,
                         help="ServiceConfig JSON (the deploy manifests mount one)")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"),
                         help="without --config: serve this workdir's models and profiles")
    command.add_argument("--host", default="127.0.0.1")
    command.add_argument("--port", type=int, default=8080)
    command.add_argument("--model-server", default="",
                         help="without --config: REST URL or gRPC host:port; empty starts a "
                              "model server in-process")
    command.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    command.add_argument("--served-log", default="", help="JSON lines of every served list")

    command = commands.add_parser("deploy", help="write TF Serving configs and k8s manifests")
    command.add_argument("--out", type=pathlib.Path, default=pathlib.Path("deploy"))
    command.add_argument("--image", default="registry.example/recs:0.1.0")

    commands.add_parser("openapi", help="print the service's OpenAPI spec")

    command = commands.add_parser("monitor", help="measure a span, decide: nothing/alert/retrain")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"),
                         help="holds serving/ranker; decisions and reports go to monitoring/")
    command.add_argument("--span", type=int, required=True)
    command.add_argument("--examples", required=True, help="the span's ingested examples (glob)")
    command.add_argument("--reference", required=True,
                         help="the training spans' examples (glob): drift reference")
    command.add_argument("--baseline-auc", type=float, default=None)
    command.add_argument("--pushed-span", type=int, default=None,
                         help="span the served model was pushed at (cooldown)")
    command.add_argument("--served-log", default="", help="served lists of the span (JSON lines)")
    command.add_argument("--next-examples", default="",
                         help="the following span's examples, for served-title engagement")
    command.add_argument("--config", type=pathlib.Path, default=None,
                         help="MonitorConfig as JSON")

    command = commands.add_parser("abtest", help="analyze an A/B test's per-user outcomes")
    command.add_argument("--outcomes", type=pathlib.Path, required=True,
                         help="JSON lines: arm, engaged, returned, watch_seconds "
                              "[, pre_watch_seconds]")
    command.add_argument("--experiment", required=True)
    command.add_argument("--arms", default="control=1,treatment=1",
                         help="designed split, control first")
    command.add_argument("--alpha", type=float, default=0.05)
    command.add_argument("--out", type=pathlib.Path, default=pathlib.Path("abtest_report"))

    command = commands.add_parser("consume", help="profile updates from a Redis Stream")
    command.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    command.add_argument("--store", default="demo_output/profiles.db",
                         help="SQLite path or redis:// URL of the profile store")
    command.add_argument("--catalogue", default="demo_output/raw/titles.jsonl")
    command.add_argument("--consumer", default="updater-1")
    command.add_argument("--claim-idle-ms", type=int, default=30_000)
    command.add_argument("--until-idle", action="store_true",
                         help="stop once the stream has nothing new")

    command = commands.add_parser("recommend", help="recommendations for one user")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    command.add_argument("--user-id", required=True)
    command.add_argument("-k", type=int, default=10)
    command.add_argument("--device-type", default="tv")
    command.add_argument("--hour", type=int, default=20)
    command.add_argument("--model-server", default="",
                         help="REST URL or gRPC host:port of a running model server")
    command.add_argument("--protocol", choices=("rest", "grpc"), default="rest")

    command = commands.add_parser("demo", help="everything end to end on embedded defaults")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    command.add_argument("-k", type=int, default=10)
    sizes(command)
    return parser


def monitor(args: argparse.Namespace) -> str:
    """`recs monitor`: one span measured under the newest pushed ranker; returns the action."""
    from monitoring import MonitorConfig
    from monitoring.drift import span_statistics
    from monitoring.monitor import ServedModel, monitor_span, newest_version
    from monitoring.outcomes import read_records
    from recs import features as F

    config = MonitorConfig.from_json(args.config.read_text()) if args.config else MonitorConfig()
    workdir = Workdir(args.workdir)
    out = args.workdir / "monitoring"
    out.mkdir(parents=True, exist_ok=True)
    reference_records = read_records(args.reference)
    model = ServedModel(ranker_dir=newest_version(str(workdir.serving / "ranker")),
                        baseline_auc=args.baseline_auc,
                        known_titles=tuple(sorted(set(reference_records[F.TITLE_ID].tolist()))),
                        pushed_span=args.pushed_span)
    served = (pathlib.Path(args.served_log).read_text().splitlines()
              if args.served_log else None)
    reference = span_statistics(args.reference)
    current = reference if args.examples == args.reference else span_statistics(args.examples)
    decision, _ = monitor_span(
        args.span, args.examples, model, reference, current, config,
        str(out / "decisions.jsonl"),
        str(out / "reports"), served_lines=served,
        next_records=read_records(args.next_examples) if args.next_examples else None)
    print(decision.to_json())
    return decision.action


def runner_config(command: argparse.ArgumentParser) -> None:
    command.add_argument("--beam-runner-config", type=pathlib.Path, default=None,
                         help="a BeamRunnerConfig as JSON (transforms/runners.py): Dataflow, "
                              "Flink, Spark or the multi-process DirectRunner")


def beam_args(path: pathlib.Path | None, extra: list[str]) -> list[str]:
    """Beam options from a `BeamRunnerConfig` JSON file, then any extra options given."""
    from transforms.runners import BeamRunnerConfig

    configured = BeamRunnerConfig.from_json(path.read_text()).args() if path else []
    return configured + extra


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "ingest":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "generate":
        data = generate(args.out, args.users, args.titles, args.days, args.seed,
                        args.sessions_per_user_day)
        print(f"wrote {data.num_events} events under {data.events_dir}; faults injected: "
              f"{data.faults}")
    elif args.command == "ingest":
        report = ingest(args.raw, args.out, beam_args(args.beam_runner_config, extra))
        print(report.summary())
        return 0 if report.balanced else 1
    elif args.command == "movielens":
        count = import_movielens(args.dataset, args.data, Workdir(args.workdir), args.max_ratings)
        print(f"wrote {count} interaction records under {args.workdir}; next: "
              f"recs pipeline --workdir {args.workdir}")
    elif args.command == "pipeline":
        from tfx_pipeline import compile_for_kubeflow, run_local

        overrides = ({"beam_args": tuple(beam_args(args.beam_runner_config, []))}
                     if args.beam_runner_config else {})
        workdir = Workdir(args.workdir)
        if args.window_spans:
            from tfx_pipeline import rolling_window

            overrides["examples_dir"] = rolling_window(
                str(workdir.ingested / "examples"), str(workdir.root / "windows"),
                args.window_spans)
            print(f"training window: {overrides['examples_dir']}")
        config = pipeline_config(workdir, **overrides)
        if args.kubeflow_out:
            print(compile_for_kubeflow(config, args.kubeflow_out, args.image))
        else:
            show_pipeline_progress()
            run_local(config)
    elif args.command == "submit":
        from tfx_pipeline.submit import submit

        try:
            run_id = submit(args.spec, args.host, args.experiment, args.run_name, args.namespace,
                            work_dir=str(pathlib.Path(args.spec).resolve().parent))
        except (ValueError, ConnectionError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"started run {run_id}")
    elif args.command == "serve-models":
        server = start_model_server(args.base, args.rest_port, args.grpc_port, args.host,
                                    args.poll_seconds, args.num_versions)
        print(f"serving {_SERVED} from {args.base}: REST {server.rest_url}, "
              f"gRPC {server.grpc_target}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.stop()
    elif args.command == "serve":
        from serving.config import ServiceConfig

        if args.config:
            config, embedded = ServiceConfig.from_json(args.config.read_text()), False
        else:
            workdir = Workdir(args.workdir)
            config = ServiceConfig(model_server=args.model_server or "embedded",
                                   protocol=args.protocol, serving_dir=str(workdir.serving),
                                   store=str(workdir.store), served_log=args.served_log)
            embedded = not args.model_server
        serve(config, args.host, args.port, embedded)
    elif args.command == "deploy":
        from serving.deploy import write_deployment

        for path in write_deployment(str(args.out), args.image):
            print(path)
    elif args.command == "openapi":
        print(openapi(), end="")
    elif args.command == "monitor":
        action = monitor(args)
        return {"nothing": 0, "alert": 3, "retrain": 4}[action]
    elif args.command == "abtest":
        analysis = abtest(args.outcomes, args.experiment, args.arms, args.out, args.alpha)
        return 3 if analysis.sample_ratio.mismatch else 0
    elif args.command == "consume":
        counts = consume(args.redis, args.store, args.catalogue, args.consumer,
                         args.claim_idle_ms, args.until_idle)
        print(json.dumps(dataclasses.asdict(counts)))
    elif args.command == "recommend":
        from serving.recommender import UnknownUserError

        try:
            items = recommend(Workdir(args.workdir), args.user_id, args.k, args.device_type,
                              args.hour, args.model_server, args.protocol)
        except (UnknownUserError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print_recommendations(args.user_id, items, args.protocol)
    elif args.command == "demo":
        demo(Workdir(args.workdir), args.users, args.titles, args.days, args.seed, args.k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
