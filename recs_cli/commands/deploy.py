"""`recs deploy`: TF Serving config files and Kubernetes manifests."""

import argparse
import pathlib

from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("deploy"))
    parser.add_argument("--image", default="registry.example/recs:0.1.0")
    parser.add_argument("--tls-secret", default="",
                        help="a Secret with tls.crt, tls.key and ca.crt: recs-service and "
                             "scann-model-server serve TLS (off when empty)")
    parser.add_argument("--token-secret", default="",
                        help="a Secret with keys 'service' and 'model-server' (tokens, one a "
                             "line): both require bearer tokens (off when empty)")


def run(out: pathlib.Path, image: str, tls_secret: str = "", token_secret: str = "") -> int:
    """Writes the files (`serving.deploy`) under `out` and prints their paths.

    Returns:
        0.

    Raises:
        ValueError: a Secret name Kubernetes would refuse.
    """
    from serving.deploy import DeploySecrets, write_deployment

    secrets = DeploySecrets(tls=tls_secret, tokens=token_secret)
    for path in write_deployment(str(out), image, secrets):
        print(path)
    return 0


COMMAND = Command("deploy", "write TF Serving configs and k8s manifests", run, add_arguments,
                  refused=(ValueError,))
