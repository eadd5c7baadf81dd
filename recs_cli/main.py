"""The `recs` command: thin entry points over typed functions that the tests call directly.

    recs generate        seeded synthetic streaming logs
    recs ingest          Beam ingestion -> tf.Examples + dead letters
    recs movielens       MovieLens 100K or 1M as ingested records, ready for the pipeline
    recs import          your interaction tables (CSV, Parquet, JSON lines) the same way
    recs evaluate        the standard offline protocols on those tables, with same-run peers
    recs pipeline        run the TFX pipeline locally, or compile it for Kubeflow v2
    recs submit          start a run of the compiled pipeline on a Kubeflow Pipelines endpoint
    recs serve-models    the local TF Serving-protocol model server (REST + gRPC)
    recs serve           the recommendation service: HTTP JSON API, metrics, fallbacks
    recs openapi         the service's OpenAPI spec
    recs deploy          TF Serving config files and Kubernetes manifests
    recs consume         profile updates from the event queue (Redis Streams)
    recs monitor         one span's outcome metrics, calibration, drift and the retrain decision
    recs outcomes        an A/B test's per-user outcomes from the served-list log (Beam)
    recs abtest          an A/B test's analysis: z-tests, Welch + CUPED, sample-ratio check
    recs recommend       recommendations for one user from the pushed models
    recs report          one HTML page of what a run did (data, checks, curves, gates, pushes)
    recs demo            all of the above on embedded defaults

`recs demo`, `pipeline`, `ingest`, `generate` and `evaluate` send the libraries' output to
`recs.log` in their work (or output) directory (`recs report` to `report.log`) and show their
stages; `--verbose` shows everything.

A parser that dispatches to typed functions living with the code they run; this package sits
at the end of the data flow, so it is the one place that imports from every other package.
"""

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
import time

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs_cli.console import quiet_tensorflow
from tfx_pipeline.workdir import Workdir


def runner_config(command: argparse.ArgumentParser) -> None:
    command.add_argument("--beam-runner-config", type=pathlib.Path, default=None,
                         help="a BeamRunnerConfig as JSON (transforms/runners.py): Dataflow, "
                              "Flink, Spark or the multi-process DirectRunner")


def beam_args(path: pathlib.Path | None, extra: list[str]) -> list[str]:
    """Beam options from a `BeamRunnerConfig` JSON file, then any extra options given."""
    from transforms.runners import BeamRunnerConfig

    configured = BeamRunnerConfig.from_json(path.read_text()).args() if path else []
    return configured + extra


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show the libraries' output (TensorFlow, absl, Beam) on the "
                             "terminal instead of in the work directory's recs.log")
    add_command = functools.partial(commands.add_parser, parents=[common])

    def sizes(command: argparse.ArgumentParser) -> None:
        command.add_argument("--users", type=int, default=2000)
        command.add_argument("--titles", type=int, default=400)
        command.add_argument("--days", type=int, default=5)
        command.add_argument("--seed", type=int, default=7)

    command = add_command("generate", help="write synthetic streaming logs")
    command.add_argument("--out", type=pathlib.Path, required=True)
    sizes(command)
    command.add_argument("--sessions-per-user-day", type=float, default=0.6,
                         help="mean sessions per user and day (about 5.5 events each); "
                              "1M users at 1.8 give about 10M events a day")

    command = add_command("ingest", help="Beam ingestion; extra args go to Beam")
    command.add_argument("--raw", type=pathlib.Path, required=True)
    command.add_argument("--out", type=pathlib.Path, required=True)
    runner_config(command)

    def tables(command: argparse.ArgumentParser) -> None:
        command.add_argument("--interactions", type=pathlib.Path, required=True)
        command.add_argument("--users", type=pathlib.Path, default=None,
                             help="a user attribute table (age, country, segment columns)")
        command.add_argument("--items", type=pathlib.Path, default=None,
                             help="an item attribute table (genre, description, year columns)")
        command.add_argument("--mapping", default="{}",
                             help="a ColumnMapping (recs/data/tables.py) as JSON, or a JSON "
                                  "file: '{\"user\": \"customer\", \"item\": \"sku\", "
                                  "\"rating\": \"stars\"}'")

    command = add_command(
        "import", help="interaction tables (CSV, TSV, Parquet, JSON lines) as the pipeline's "
                       "inputs, through a column mapping")
    tables(command)
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("import_output"))

    command = add_command(
        "evaluate", help="the standard full-ranking protocols on interaction tables: the "
                         "default model against same-run peers (JSON + plot)")
    tables(command)
    command.add_argument("--protocol", action="append", default=[],
                         choices=("recbole", "random", "leave-last-out"),
                         help="repeatable; default: every one the data allows "
                              "(leave-last-out needs a timestamp column)")
    command.add_argument("--out", type=pathlib.Path, default=pathlib.Path("evaluation"))
    command.add_argument("--epochs", type=int, default=0,
                         help="the default model's training epochs (0: its own)")
    command.add_argument("--core", type=int, default=1,
                         help="k-core filter on users and items first (RecBole's; 1: none)")

    command = add_command("movielens", help="MovieLens as the pipeline's inputs")
    command.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-100k")
    command.add_argument("--data", type=pathlib.Path, required=True,
                         help="folder of the GroupLens files, e.g. ../shared/data/movielens-100k")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("movielens_output"))
    command.add_argument("--max-ratings", type=int, default=0, help="0 = all")

    command = add_command("pipeline", help="run the TFX pipeline or compile it")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    command.add_argument("--kubeflow-out", default="",
                         help="compile a Kubeflow Pipelines v2 spec here instead of running")
    command.add_argument("--image", default="recs-pipeline:latest")
    command.add_argument("--window-spans", type=int, default=0,
                         help="train on the newest N day spans only (a retrain's rolling "
                              "window); 0 reads every span")
    runner_config(command)

    command = add_command("submit", help="run the compiled pipeline on Kubeflow")
    command.add_argument("--spec", required=True, help="the file `recs pipeline "
                         "--kubeflow-out` wrote")
    command.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8080")
    command.add_argument("--experiment", default="recs")
    command.add_argument("--run-name", default="")
    command.add_argument("--namespace", default="kubeflow")

    command = add_command("serve-models", help="TF Serving-protocol model server")
    command.add_argument("--base", type=pathlib.Path, required=True)
    command.add_argument("--host", default="127.0.0.1")
    command.add_argument("--rest-port", type=int, default=8501)
    command.add_argument("--grpc-port", type=int, default=8500)
    command.add_argument("--poll-seconds", type=float, default=5.0,
                         help="scan for new versions this often; 0 loads once")
    command.add_argument("--num-versions", type=int, default=1,
                         help="versions kept per model (TF Serving's latest policy)")
    command.add_argument("--batching", action="store_true",
                         help="batch concurrent requests of the models whose version holds "
                              "batching_params.pbtxt (TF Serving's --enable_batching with "
                              "per-model parameters)")
    command.add_argument("--label", action="append", default=[], metavar="MODEL:LABEL=VERSION",
                         help="a version label (TF Serving's version_labels), e.g. "
                              "ranker:canary=2; repeat for more")

    command = add_command("serve", help="the recommendation service (HTTP JSON API)")
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

    command = add_command("deploy", help="write TF Serving configs and k8s manifests")
    command.add_argument("--out", type=pathlib.Path, default=pathlib.Path("deploy"))
    command.add_argument("--image", default="registry.example/recs:0.1.0")

    add_command("openapi", help="print the service's OpenAPI spec")

    command = add_command("monitor", help="measure a span, decide: nothing/alert/retrain")
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

    command = add_command("abtest", help="analyze an A/B test's per-user outcomes")
    command.add_argument("--outcomes", type=pathlib.Path, required=True,
                         help="JSON lines (recs outcomes): arm, engaged, returned, "
                              "renewed, watch_seconds [, pre_watch_seconds]")
    command.add_argument("--experiment", required=True)
    command.add_argument("--arms", default="control=1,treatment=1",
                         help="designed split, control first")
    command.add_argument("--alpha", type=float, default=0.05)
    command.add_argument("--metric", default="returned",
                         help="the pre-registered primary metric the verdict rests on")
    command.add_argument("--minimum-effect", type=float, default=0.0,
                         help="smallest difference worth shipping, in the metric's units")
    command.add_argument("--out", type=pathlib.Path, default=pathlib.Path("abtest_report"))

    command = add_command("outcomes", help="per-user A/B test outcomes (what abtest reads) "
                                           "from served lists and the days after (Beam)")
    command.add_argument("--served", required=True,
                         help="served-list log: a folder of day=YYYY-MM-DD/*.jsonl, or a glob")
    command.add_argument("--examples", required=True,
                         help="ingested examples: a folder of day=YYYY-MM-DD/*.tfrecord.gz")
    command.add_argument("--subscriptions", default="",
                         help="optional folder of day=YYYY-MM-DD/*.jsonl renewal decisions")
    command.add_argument("--experiment", required=True)
    command.add_argument("--start", required=True, help="first day of the window (ISO date)")
    command.add_argument("--end", required=True, help="last day of the window, inclusive")
    command.add_argument("--out", required=True,
                         help="the per-user rows (JSON lines); dead letters and a report "
                              "are written beside it")
    command.add_argument("--pre-period-days", type=int, default=7)
    command.add_argument("--return-horizon-days", type=int, default=7)
    command.add_argument("--attribution-days", type=int, default=1)
    command.add_argument("--delivery-slack-days", type=int, default=1)
    runner_config(command)

    command = add_command("consume", help="profile updates from a Redis Stream")
    command.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    command.add_argument("--store", default="demo_output/profiles.db",
                         help="SQLite path or redis:// URL of the profile store")
    command.add_argument("--catalogue", default="demo_output/raw/titles.jsonl")
    command.add_argument("--consumer", default="updater-1")
    command.add_argument("--claim-idle-ms", type=int, default=30_000)
    command.add_argument("--until-idle", action="store_true",
                         help="stop once the stream has nothing new")

    command = add_command("recommend", help="recommendations for one user")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    command.add_argument("--user-id", required=True)
    command.add_argument("-k", type=int, default=10)
    command.add_argument("--device-type", default="tv")
    command.add_argument("--hour", type=int, default=20)
    command.add_argument("--model-server", default="",
                         help="REST URL or gRPC host:port of a running model server")
    command.add_argument("--protocol", choices=("rest", "grpc"), default="rest")

    command = add_command("report", help="one HTML page of what a run in a workdir did")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    command.add_argument("--out", type=pathlib.Path, default=None,
                         help="the HTML file; default <workdir>/report.html")

    command = add_command("demo", help="everything end to end on embedded defaults")
    command.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("demo_output"))
    command.add_argument("-k", type=int, default=10)
    sizes(command)
    return parser


def _service_config(args: argparse.Namespace):
    """The ServiceConfig of `recs serve` / `recs recommend`, and whether to embed a model
    server (no --config and no --model-server given)."""
    from serving.config import ServiceConfig

    if getattr(args, "config", None):
        return ServiceConfig.from_json(args.config.read_text()), False
    workdir = Workdir(args.workdir)
    overrides = {"model_server": args.model_server} if args.model_server else {}
    config = ServiceConfig(protocol=args.protocol, serving_dir=str(workdir.serving),
                           store=str(workdir.store),
                           served_log=getattr(args, "served_log", ""), **overrides)
    return config, not args.model_server


def _generate(args: argparse.Namespace, extra: list[str]) -> int:
    from recs.data.synthetic import GeneratorConfig
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import generate_logs

    with session(args.out / LOG_FILE, args.verbose) as console:
        config = GeneratorConfig(num_users=args.users, num_titles=args.titles, days=args.days,
                                 seed=args.seed,
                                 sessions_per_user_day=args.sessions_per_user_day)
        generate_logs(console, config, args.out, f"generating {args.users:,} users, "
                                                 f"{args.titles:,} titles, {args.days} days")
    return 0


def _ingest(args: argparse.Namespace, extra: list[str]) -> int:
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import ingest

    with session(args.out / LOG_FILE, args.verbose) as console:
        report = ingest(console, args.raw, args.out, beam_args(args.beam_runner_config, extra),
                        "Beam ingestion", per_span=True)
    return 0 if report.balanced else 1


def _movielens(args: argparse.Namespace, extra: list[str]) -> int:
    from recs.data.movielens import write_movielens

    workdir = Workdir(args.workdir)
    workdir.clean()
    count = write_movielens(args.dataset, str(args.data), str(workdir.raw),
                            str(workdir.examples_dir), args.max_ratings)
    print(f"wrote {count} interaction records under {args.workdir}; next: "
          f"recs pipeline --workdir {args.workdir}")
    return 0


def _mapping(text: str):
    """`--mapping`: a ColumnMapping as JSON, or a file holding it.

    Raises:
        ValueError: not a JSON object of ColumnMapping fields, or a field's value is wrong.
        FileNotFoundError: no such file.
    """
    from recs.data.tables import ColumnMapping

    if text.lstrip()[:1] not in ("{", "["):  # a file holding the JSON
        text = pathlib.Path(text).read_text()
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"--mapping must be a JSON object of ColumnMapping fields; "
                         f"received {type(values).__name__}.")
    return ColumnMapping.from_dict(values)


def _import(args: argparse.Namespace, extra: list[str]) -> int:
    from recs.data.tables import import_tables, write_import

    try:
        mapping = _mapping(args.mapping)
        result = import_tables(args.interactions, mapping, args.users, args.items)
    except (ValueError, FileNotFoundError) as error:
        print(f"recs import: {error}", file=sys.stderr)
        return 2
    workdir = Workdir(args.workdir)
    workdir.clean()
    counts = write_import(result, str(workdir.raw), str(workdir.examples_dir))
    print(json.dumps(counts, indent=2))
    print(f"wrote {counts['records_written']} interaction records under {args.workdir} "
          f"({counts['dead_lettered']} rows dead-lettered to "
          f"{workdir.raw / 'import_dead_letters.jsonl'}); next: "
          f"recs pipeline --workdir {args.workdir}")
    return 0


def _evaluate(args: argparse.Namespace, extra: list[str]) -> int:
    from recs_cli.console import LOG_FILE, session
    from recs_cli.evaluate import EvaluateConfig, evaluate, resolve_protocols

    try:
        mapping = _mapping(args.mapping)
        config = EvaluateConfig(protocols=tuple(dict.fromkeys(args.protocol)),
                                epochs=args.epochs, core=args.core)
        resolve_protocols(config, mapping)  # Refused before anything is read or written.
        with session(args.out / LOG_FILE, args.verbose) as console:
            evaluate(args.interactions, mapping, args.out, config, args.users, args.items,
                     console)
    except (ValueError, FileNotFoundError) as error:
        print(f"recs evaluate: {error}", file=sys.stderr)
        return 2
    return 0


def _pipeline(args: argparse.Namespace, extra: list[str]) -> int:
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import pipeline_command

    workdir = Workdir(args.workdir)
    with session(workdir.root / LOG_FILE, args.verbose) as console:
        pipeline_command(console, workdir, args.window_spans,
                         beam_args(args.beam_runner_config, [])
                         if args.beam_runner_config else None,
                         args.kubeflow_out, args.image)
    return 0


def _submit(args: argparse.Namespace, extra: list[str]) -> int:
    from tfx_pipeline.submit import submit

    try:
        run_id = submit(args.spec, args.host, args.experiment, args.run_name, args.namespace,
                        work_dir=str(pathlib.Path(args.spec).resolve().parent))
    except (ValueError, ConnectionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"started run {run_id}")
    return 0


def _serve_models(args: argparse.Namespace, extra: list[str]) -> int:
    from serving.model_server import serve_models

    labels: dict[str, dict[str, int]] = {}
    for text in args.label:
        model, _, rest = text.partition(":")
        label, _, version = rest.partition("=")
        if not (model and label and version.isdigit() and int(version) > 0):
            print(f"error: --label must be MODEL:LABEL=VERSION such as ranker:canary=2; "
                  f"received {text!r}", file=sys.stderr)
            return 2
        labels.setdefault(model, {})[label] = int(version)
    server = serve_models(str(args.base), rest_port=args.rest_port, grpc_port=args.grpc_port,
                          host=args.host, poll_seconds=args.poll_seconds,
                          num_versions=args.num_versions, batching=args.batching,
                          labels=labels)
    print(f"serving {server.registry.model_names} from {args.base}: REST {server.rest_url}, "
          f"gRPC {server.grpc_target}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def _serve(args: argparse.Namespace, extra: list[str]) -> int:
    from serving.app import run_service

    config, embedded = _service_config(args)
    run_service(config, args.host, args.port, embedded)
    return 0


def _deploy(args: argparse.Namespace, extra: list[str]) -> int:
    from serving.deploy import write_deployment

    for path in write_deployment(str(args.out), args.image):
        print(path)
    return 0


def _openapi(args: argparse.Namespace, extra: list[str]) -> int:
    from serving.app import openapi_document

    print(openapi_document(), end="")
    return 0


def _monitor(args: argparse.Namespace, extra: list[str]) -> int:
    from monitoring.config import MonitorConfig
    from monitoring.decision import ALERT, NOTHING, RETRAIN
    from monitoring.monitor import monitor_workdir

    config = MonitorConfig.from_json(args.config.read_text()) if args.config else MonitorConfig()
    workdir = Workdir(args.workdir)
    decision = monitor_workdir(str(workdir.serving), str(workdir.monitoring), args.span,
                               args.examples, args.reference, config, args.baseline_auc,
                               args.pushed_span, args.served_log, args.next_examples)
    print(decision.to_json())
    return {NOTHING: 0, ALERT: 3, RETRAIN: 4}[decision.action]


def _abtest(args: argparse.Namespace, extra: list[str]) -> int:
    from monitoring.abtest import DecisionRule, run_abtest

    rule = DecisionRule(args.metric, args.alpha, args.minimum_effect)
    analysis, verdict = run_abtest(str(args.outcomes), args.experiment, args.arms,
                                   str(args.out), args.alpha, rule)
    print(analysis.table())
    print(f"verdict: {verdict.action.upper()} ({verdict.reason})")
    return 3 if analysis.sample_ratio.mismatch else 0


def _outcomes(args: argparse.Namespace, extra: list[str]) -> int:
    from transforms.outcomes import OutcomesConfig, run_outcomes

    try:
        config = OutcomesConfig(
            served_path=args.served, examples_dir=args.examples, output_path=args.out,
            experiment=args.experiment, start_day=args.start, end_day=args.end,
            subscriptions_dir=args.subscriptions, pre_period_days=args.pre_period_days,
            return_horizon_days=args.return_horizon_days,
            attribution_days=args.attribution_days,
            delivery_slack_days=args.delivery_slack_days,
            beam_args=tuple(beam_args(args.beam_runner_config, extra)))
        report = run_outcomes(config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


def _consume(args: argparse.Namespace, extra: list[str]) -> int:
    from serving.consumer import consume

    counts = consume(args.redis, args.store, args.catalogue, args.consumer, args.claim_idle_ms,
                     args.until_idle)
    print(json.dumps(dataclasses.asdict(counts)))
    return 0


def _recommend(args: argparse.Namespace, extra: list[str]) -> int:
    from recs_cli.demo import format_recommendations
    from serving.app import recommend_once
    from serving.recommender import UnknownUserError

    config, embedded = _service_config(args)
    try:
        items = recommend_once(config, args.user_id, args.k, args.device_type, args.hour,
                               embedded)
    except (UnknownUserError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_recommendations(args.user_id, items, args.protocol))
    return 0


def _report(args: argparse.Namespace, extra: list[str]) -> int:
    from monitoring.run_report import REPORT_LOG, write_run_report
    from recs_cli.console import session

    workdir = Workdir(args.workdir)
    if not workdir.root.is_dir():  # Refused before a session would create it for its log.
        print(f"error: workdir {str(workdir.root)!r} does not exist; pass the directory a run "
              "wrote (recs demo --workdir W, recs pipeline --workdir W).", file=sys.stderr)
        return 2
    with session(workdir.root / REPORT_LOG, args.verbose) as console:
        with console.stage("run report"):
            path = write_run_report(workdir, args.out)
        console.detail(str(path))
    return 0


def _demo(args: argparse.Namespace, extra: list[str]) -> int:
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import run_demo

    workdir = Workdir(args.workdir)
    with session(workdir.root / LOG_FILE, args.verbose) as console:
        run_demo(console, workdir, args.users, args.titles, args.days, args.seed, args.k)
    return 0


_COMMANDS = {"generate": _generate, "ingest": _ingest, "movielens": _movielens,
             "import": _import, "evaluate": _evaluate,
             "pipeline": _pipeline, "submit": _submit, "serve-models": _serve_models,
             "serve": _serve, "deploy": _deploy, "openapi": _openapi, "monitor": _monitor,
             "abtest": _abtest, "consume": _consume, "recommend": _recommend,
             "report": _report, "demo": _demo, "outcomes": _outcomes}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "ingest":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_tensorflow(args.verbose)  # Before any command imports TensorFlow.
    return _COMMANDS[args.command](args, extra)


if __name__ == "__main__":
    sys.exit(main())
