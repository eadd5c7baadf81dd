"""`recs submit`: start a run of the compiled pipeline on a Kubeflow Pipelines endpoint."""

import argparse
import pathlib

from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, help="the file `recs pipeline "
                        "--kubeflow-out` wrote")
    parser.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8080")
    parser.add_argument("--experiment", default="recs")
    parser.add_argument("--run-name", default="")
    parser.add_argument("--namespace", default="kubeflow")


def run(spec: str, host: str, experiment: str, run_name: str, namespace: str) -> int:
    """Starts a run of `spec` (`tfx_pipeline.submit`) and prints its id.

    Returns:
        0.

    Raises:
        ValueError: `spec` is not a compiled pipeline.
        ConnectionError: no KFP API answers at `host`.
    """
    from tfx_pipeline.submit import submit

    run_id = submit(spec, host, experiment, run_name, namespace,
                    work_dir=str(pathlib.Path(spec).resolve().parent))
    print(f"started run {run_id}")
    return 0


COMMAND = Command("submit", "run the compiled pipeline on Kubeflow", run, add_arguments,
                  refused=(ValueError, ConnectionError))
