"""`recs demo`: the whole product once, on embedded defaults; its stages are also the bodies
of `recs generate`, `recs ingest` and `recs pipeline`.

    generate logs -> Beam ingestion -> TFX pipeline (LocalDagRunner) -> profile store
    -> model server (REST + gRPC) -> recommendations over both -> the service over HTTP
    -> the run's report page
"""

import json
import pathlib
import urllib.request
from typing import Any

from recs_cli.console import LOG_FILE, Console, pipeline_progress
from recs.contract.layout import RunLayout
from tfx_pipeline.workdir import pipeline_config

_STAGES = 6


def format_recommendations(user_id: str, items: list[Any], protocol: str) -> str:
    """A recommendation list as a text table."""
    lines = [f"Top {len(items)} for {user_id} (via {protocol}):",
             f"  {'#':>2}  {'title':<9} {'genre':<12} {'P(engaged)':>10} {'retrieval':>9}"]
    for rank, item in enumerate(items, start=1):
        score = "-" if item.score is None else f"{item.score:.3f}"
        retrieval = "-" if item.retrieval_score is None else f"{item.retrieval_score:.3f}"
        lines.append(f"  {rank:>2}  {item.title_id:<9} {item.genre:<12} {score:>10} "
                     f"{retrieval:>9}")
    return "\n".join(lines)


def generate_logs(console: Console, config: Any, out: pathlib.Path, title: str) -> Any:
    """Stage: seeded synthetic logs (`recs.data.synthetic.GeneratorConfig`) under `out`.

    Returns:
        The `GeneratedData`.
    """
    from recs.data.synthetic import generate

    with console.stage(title):
        data = generate(config, out)
    faults = ", ".join(f"{kind} {count:,}" for kind, count in sorted(data.faults.items())
                       if count)
    console.detail(f"{data.num_events:,} events under {data.events_dir}")
    console.detail(f"faults injected on purpose: {faults or 'none'}")
    return data


def ingest(console: Console, raw: pathlib.Path, out: pathlib.Path, beam_args: list[str],
           title: str, per_span: bool = False) -> Any:
    """Stage: Beam ingestion of `raw` into `out`; the counters are shown (in three lines, or
    the full table per reason and per span), flagged when unbalanced or too dirty, and saved
    for the report (`monitoring.run_report`).

    Returns:
        The `IngestionReport`.
    """
    from monitoring.run_report import ingestion_warnings, save_ingestion_report
    from transforms.ingestion import IngestionConfig, run_ingestion

    with console.stage(title):
        report = run_ingestion(IngestionConfig.for_raw(raw, out), beam_args)
    saved = save_ingestion_report(report, out)
    dead = report.events_dead_lettered
    if per_span:
        console.detail(report.summary())
    else:
        console.detail(f"events read {report.events_read:,}, accepted "
                       f"{report.events_accepted:,}, dead-lettered {dead:,} "
                       f"({dead / max(1, report.events_read):.1%}): " + ", ".join(
                           f"{reason} {count:,}" for reason, count in
                           sorted(report.dead_lettered.items(), key=lambda item: -item[1])))
        console.detail(f"records written {report.records_written:,} in "
                       f"{len(report.records_per_span)} day spans")
    console.detail(f"counters saved for the report: {saved}")
    for text in ingestion_warnings(json.loads(saved.read_text())):
        console.warn(text)
    return report


def run_pipeline(console: Console, config: Any, title: str) -> None:
    """Stage: the TFX pipeline (`tfx_pipeline.config.PipelineConfig`) on LocalDagRunner, one
    line per component, then the warnings its ML-Metadata calls for (a model not blessed, an
    index refused, data anomalies)."""
    from monitoring.run_report import RunMetadata, pipeline_warnings
    from tfx_pipeline.pipeline import create_pipeline
    from tfx_pipeline.runners import run_local

    components = len(create_pipeline(config).components)
    with console.stage(title, total=components) as stage, pipeline_progress(stage):
        run_local(config)
    for text in pipeline_warnings(RunMetadata(config.metadata_path)):
        console.warn(text)


def write_report(console: Console, workdir: RunLayout, title: str) -> pathlib.Path:
    """Stage: the run's HTML page (`monitoring.run_report`)."""
    from monitoring.run_report import write_run_report

    with console.stage(title):
        return write_run_report(workdir)


def _recommendations(console: Console, workdir: RunLayout, k: int) -> None:
    from recs.contract.models import RETRIEVAL
    from serving.app import build_app, client
    from serving.config import ServiceConfig
    from serving.model_server import serve_models
    from serving.model_server.config import ModelServingConfig
    from serving.online.recommender import Recommender, load_catalogue
    from serving.api.service import ServiceServer
    from serving.online.store import fresh_store

    with console.stage(f"[4/{_STAGES}] profile store and model server (REST + gRPC)"):
        store = fresh_store(str(workdir.store), str(workdir.users), workdir.examples_glob)
        server = serve_models(ModelServingConfig.local(str(workdir.serving)))
    console.detail(f"REST {server.rest_url}  gRPC {server.grpc_target}")
    try:
        with console.stage(f"[5/{_STAGES}] recommendations over REST, gRPC and the "
                           "service's HTTP API"):
            catalogue = load_catalogue(str(workdir.serving), RETRIEVAL)
            lists = {protocol: Recommender(client(target, protocol), store, catalogue)
                     .recommend("u000001", k=k)
                     for protocol, target in (("rest", server.rest_url),
                                              ("grpc", server.grpc_target))}
            config = ServiceConfig(model_server=server.rest_url,
                                   serving_dir=str(workdir.serving), store=str(workdir.store),
                                   served_log=str(workdir.served_log))
            with ServiceServer(build_app(config)) as service:
                body = json.dumps({"user_id": "u000003", "k": k,
                                   "context": {"device_type": "mobile", "hour": 8}}).encode()
                request = urllib.request.Request(
                    f"{service.url}/v1/recommendations", data=body,
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                url = service.url
        console.detail(format_recommendations("u000001", lists["rest"], "REST"))
        same = [i.title_id for i in lists["grpc"]] == [i.title_id for i in lists["rest"]]
        console.detail(f"gRPC returns {'the same' if same else 'a DIFFERENT'} list for u000001")
        if not same:
            console.warn("REST and gRPC disagree on u000001's list")
        top = ", ".join(f"{item['title_id']} {item['score']:.3f}"
                        if item.get("score") is not None else item["title_id"]
                        for item in answer["items"][:3])
        console.detail(f"POST {url}/v1/recommendations u000003 (mobile, 8h): {top}, ...; "
                       f"models {answer['model_versions']}; "
                       f"{sum(answer['timings_ms'].values()):.0f} ms"
                       + (f"; FALLBACK {answer['fallback']}" if answer.get("fallback") else ""))
    finally:
        server.stop()
        store.close()


def run_demo(console: Console, workdir: RunLayout, users: int, titles: int, days: int,
             seed: int, k: int) -> pathlib.Path:
    """Runs the whole product once: data -> ingestion -> TFX -> serving -> recommendations
    -> the report page.

    Returns:
        The report page's path.
    """
    from monitoring.run_report import summarize_run
    from recs.contract.models import SERVED_MODELS
    from recs.data.synthetic import GeneratorConfig

    workdir.clean()
    generate_logs(console, GeneratorConfig(num_users=users, num_titles=titles, days=days,
                                           seed=seed), workdir.raw,
                  f"[1/{_STAGES}] generating {users:,} users, {titles:,} titles, {days} days "
                  "of playback logs")
    ingest(console, workdir.raw, workdir.ingested, [],
           f"[2/{_STAGES}] Beam ingestion (DirectRunner)")
    run_pipeline(console, pipeline_config(workdir),
                 f"[3/{_STAGES}] TFX pipeline (LocalDagRunner)")
    missing = [name for name in SERVED_MODELS
               if not any((workdir.serving / name).glob("*/saved_model.pb"))]
    if missing:
        console.warn(f"nothing to serve: no version of {', '.join(missing)} was pushed; "
                     "skipping the serving stages (the report says why)")
    else:
        _recommendations(console, workdir, k)
    report = write_report(console, workdir, f"[6/{_STAGES}] run report")
    # The warnings were shown at their stage; the summary repeats them once.
    console.summary(summarize_run(workdir).figures,
                    (("report", str(report)), ("models", str(workdir.serving)),
                     ("log", str(workdir.root / LOG_FILE))))
    return report
