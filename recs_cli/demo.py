"""`recs demo`: the whole product once, on embedded defaults.

    generate logs -> Beam ingestion -> TFX pipeline (LocalDagRunner) -> profile store
    -> model server (REST + gRPC) -> recommendations over both -> the service over HTTP
"""

import json
import time
import urllib.request

from tfx_pipeline.workdir import Workdir, pipeline_config


def print_recommendations(user_id: str, items, protocol: str) -> None:
    """A recommendation list as a table."""
    print(f"\n  Top {len(items)} for {user_id} (via {protocol}):")
    print(f"    {'#':>2}  {'title':<9} {'genre':<12} {'P(engaged)':>10} {'retrieval':>9}")
    for rank, item in enumerate(items, start=1):
        print(f"    {rank:>2}  {item.title_id:<9} {item.genre:<12} {item.score:>10.3f} "
              f"{item.retrieval_score:>9.3f}")


def run_demo(workdir: Workdir, users: int, titles: int, days: int, seed: int, k: int) -> None:
    """Runs the whole product once: data -> ingestion -> TFX -> serving -> recommendations."""
    from recs.contract.models import RETRIEVAL
    from recs.data.synthetic import GeneratorConfig, generate
    from recs_cli.console import show_pipeline_progress
    from serving.app import build_app, client
    from serving.config import ServiceConfig
    from serving.model_server import serve_models
    from serving.recommender import Recommender, load_catalogue
    from serving.service import ServiceServer
    from serving.store import fresh_store
    from tfx_pipeline.runners import run_local
    from transforms.ingestion import IngestionConfig, run_ingestion

    started = time.perf_counter()
    workdir.clean()

    def stage(number: int, text: str) -> None:
        print(f"[{number}/5] {text}  (t={time.perf_counter() - started:.0f}s)", flush=True)

    stage(1, f"generating {users} users, {titles} titles, {days} days of playback logs")
    data = generate(GeneratorConfig(num_users=users, num_titles=titles, days=days, seed=seed),
                    workdir.raw)
    print(f"    {data.num_events} events; faults injected on purpose: {data.faults}")
    stage(2, "Beam ingestion (DirectRunner)")
    report = run_ingestion(IngestionConfig.for_raw(workdir.raw, workdir.ingested))
    print("    " + report.summary().replace("\n", "\n    "))
    stage(3, "TFX pipeline on LocalDagRunner")
    show_pipeline_progress()
    run_local(pipeline_config(workdir))
    stage(4, "loading the profile store and starting the model server (REST + gRPC)")
    store = fresh_store(str(workdir.store), str(workdir.users), workdir.examples_glob)
    server = serve_models(str(workdir.serving))
    print(f"    REST {server.rest_url}  gRPC {server.grpc_target}")
    stage(5, "recommendations: retrieve (ScaNN) -> filter finished -> rank")
    try:
        catalogue = load_catalogue(str(workdir.serving), RETRIEVAL)
        for protocol, target in (("rest", server.rest_url), ("grpc", server.grpc_target)):
            recommender = Recommender(client(target, protocol), store, catalogue)
            for user_id in ("u000001", "u000002")[: 2 if protocol == "rest" else 1]:
                print_recommendations(user_id, recommender.recommend(user_id, k=k),
                                      protocol.upper())
        config = ServiceConfig(model_server=server.rest_url, serving_dir=str(workdir.serving),
                               store=str(workdir.store), served_log=str(workdir.served_log))
        with ServiceServer(build_app(config)) as service:
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
