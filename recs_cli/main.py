"""The `recs` command: thin entry points over typed functions that the tests call directly.

    recs generate        seeded synthetic streaming logs
    recs ingest          Beam ingestion -> tf.Examples + dead letters
    recs movielens       MovieLens 100K or 1M as ingested records, ready for the pipeline
    recs pipeline        run the TFX pipeline locally, or compile it for Kubeflow v2
    recs serve-models    the local TF Serving-protocol model server (REST + gRPC)
    recs recommend       recommendations for one user from the pushed models
    recs demo            all of the above on embedded defaults

This package sits at the end of the data flow, so it is the one place that imports from every
other package.
"""

import argparse
import dataclasses
import logging
import pathlib
import re
import shutil
import sys
import time

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


def generate(out: pathlib.Path, users: int, titles: int, days: int, seed: int):
    from recs.data.synthetic import GeneratorConfig, generate as write

    return write(GeneratorConfig(num_users=users, num_titles=titles, days=days, seed=seed), out)


def ingest(raw: pathlib.Path, out: pathlib.Path, beam_args: list[str]):
    from transforms.ingestion import IngestionConfig, run_ingestion

    config = IngestionConfig(events_glob=str(raw / "events" / "*" / "*.jsonl"),
                             users_path=str(raw / "users.jsonl"),
                             titles_path=str(raw / "titles.jsonl"), output_dir=str(out))
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
    examples = workdir.ingested / "examples"
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

    return PipelineConfig(pipeline_root=str(workdir.pipeline_root),
                          examples_dir=str(workdir.ingested / "examples"),
                          catalogue_path=str(workdir.raw / "titles.jsonl"),
                          serving_base_dir=str(workdir.serving),
                          metadata_path=str(workdir.metadata), **overrides)


def load_profile_store(workdir: Workdir):
    from serving.store import ProfileStore, load_store

    if workdir.store.exists():
        workdir.store.unlink()
    store = ProfileStore(str(workdir.store))
    load_store(store, str(workdir.raw / "users.jsonl"),
               str(workdir.ingested / "examples" / "*.tfrecord.gz"))
    return store


def start_model_server(serving_dir: pathlib.Path, rest_port: int = 0, grpc_port: int = 0,
                       host: str = "127.0.0.1"):
    from serving.model_server import ModelRegistry, ModelServer

    registry = ModelRegistry(str(serving_dir), _SERVED)
    registry.load()
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


def print_recommendations(user_id: str, items, protocol: str) -> None:
    print(f"\n  Top {len(items)} for {user_id} (via {protocol}):")
    print(f"    {'#':>2}  {'title':<9} {'genre':<12} {'P(engaged)':>10} {'retrieval':>9}")
    for rank, item in enumerate(items, start=1):
        print(f"    {rank:>2}  {item.title_id:<9} {item.genre:<12} {item.score:>10.3f} "
              f"{item.retrieval_score:>9.3f}")


def demo(workdir: Workdir, users: int, titles: int, days: int, seed: int, k: int) -> None:
    """Runs the whole product once: data -> ingestion -> TFX -> serving -> recommendations."""
    from serving.client import GrpcClient, RestClient
    from serving.recommender import Recommender, load_catalogue
    from tfx_pipeline import run_local

    started = time.perf_counter()
    workdir.clean()

    def stage(number: int, text: str) -> None:
        print(f"[{number}/5] {text}  (t={time.perf_counter() - started:.0f}s)", flush=True)

    stage(1, f"generating {users} users, {titles} titles, {days} days of playback logs")
    data = generate(workdir.raw, users, titles, days, seed)
    print(f"    {data.num_events} events, {data.num_malformed} malformed and "
          f"{data.num_duplicates} duplicated on purpose")
    stage(2, "Beam ingestion (DirectRunner)")
    report = ingest(workdir.raw, workdir.ingested, [])
    print(f"    read {report.events_read}, accepted {report.events_accepted}, dead-lettered "
          f"{report.events_dead_lettered} {report.dead_lettered}; "
          f"{report.records_written} interaction records; balanced={report.balanced}")
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

    command = commands.add_parser("ingest", help="Beam ingestion; extra args go to Beam")
    command.add_argument("--raw", type=pathlib.Path, required=True)
    command.add_argument("--out", type=pathlib.Path, required=True)

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

    command = commands.add_parser("serve-models", help="TF Serving-protocol model server")
    command.add_argument("--base", type=pathlib.Path, required=True)
    command.add_argument("--host", default="127.0.0.1")
    command.add_argument("--rest-port", type=int, default=8501)
    command.add_argument("--grpc-port", type=int, default=8500)

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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "ingest":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "generate":
        data = generate(args.out, args.users, args.titles, args.days, args.seed)
        print(f"wrote {data.num_events} events under {data.events_dir}")
    elif args.command == "ingest":
        report = ingest(args.raw, args.out, extra)
        print(report)
        return 0 if report.balanced else 1
    elif args.command == "movielens":
        count = import_movielens(args.dataset, args.data, Workdir(args.workdir), args.max_ratings)
        print(f"wrote {count} interaction records under {args.workdir}; next: "
              f"recs pipeline --workdir {args.workdir}")
    elif args.command == "pipeline":
        from tfx_pipeline import compile_for_kubeflow, run_local

        config = pipeline_config(Workdir(args.workdir))
        if args.kubeflow_out:
            print(compile_for_kubeflow(config, args.kubeflow_out, args.image))
        else:
            show_pipeline_progress()
            run_local(config)
    elif args.command == "serve-models":
        server = start_model_server(args.base, args.rest_port, args.grpc_port, args.host)
        print(f"serving {_SERVED} from {args.base}: REST {server.rest_url}, "
              f"gRPC {server.grpc_target}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.stop()
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
