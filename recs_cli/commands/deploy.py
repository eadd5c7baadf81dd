"""`recs deploy`: TF Serving config files and Kubernetes manifests."""

import argparse
import pathlib

from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("deploy"))
    parser.add_argument("--image", default="registry.example/recs:0.1.0")


def run(out: pathlib.Path, image: str) -> int:
    """Writes the files (`serving.deploy`) under `out` and prints their paths.

    Returns:
        0.
    """
    from serving.deploy import write_deployment

    for path in write_deployment(str(out), image):
        print(path)
    return 0


COMMAND = Command("deploy", "write TF Serving configs and k8s manifests", run, add_arguments)
