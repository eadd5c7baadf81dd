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
import sys

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs_cli.commands import (Command, abtest, consume, demo, deploy, evaluate, generate,
                               import_tables, ingest, monitor, movielens, openapi, outcomes,
                               pipeline, recommend, report, serve, serve_models, submit)
from recs_cli.console import quiet_tensorflow

COMMANDS: tuple[Command, ...] = tuple(module.COMMAND for module in (
    generate, ingest, import_tables, evaluate, movielens, pipeline, submit, serve_models, serve,
    deploy, openapi, monitor, abtest, outcomes, consume, recommend, report, demo))
"""Every `recs` command, in the order `recs --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The `recs` parser: a subparser per command, each with its own flags and `--verbose`."""
    parser = argparse.ArgumentParser(prog="recs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show the libraries' output (TensorFlow, absl, Beam) on the "
                             "terminal instead of in the work directory's recs.log")
    for command in COMMANDS:
        subparser = subparsers.add_parser(command.name, help=command.help, parents=[common])
        if command.add_arguments is not None:
            command.add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses `argv` (default: the process's arguments) and runs the command.

    Returns:
        The command's exit status; a malformed command line exits 2 from the parser.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = next(command for command in COMMANDS if command.name == args.command)
    if extra and not command.takes_extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_tensorflow(args.verbose)  # Before any command imports TensorFlow.
    return command(args, extra)


if __name__ == "__main__":
    sys.exit(main())
