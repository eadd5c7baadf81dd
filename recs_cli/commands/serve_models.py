"""`recs serve-models`: the local TF Serving-protocol model server (REST + gRPC)."""

import argparse
import pathlib
import time
from collections.abc import Sequence

from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=pathlib.Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument("--poll-seconds", type=float, default=5.0,
                        help="scan for new versions this often; 0 loads once")
    parser.add_argument("--num-versions", type=int, default=1,
                        help="versions kept per model (TF Serving's latest policy)")
    parser.add_argument("--batching", action="store_true",
                        help="batch concurrent requests of the models whose version holds "
                             "batching_params.pbtxt (TF Serving's --enable_batching with "
                             "per-model parameters)")
    parser.add_argument("--label", action="append", default=[], metavar="MODEL:LABEL=VERSION",
                        help="a version label (TF Serving's version_labels), e.g. "
                             "ranker:canary=2; repeat for more")
    security = parser.add_argument_group(
        "authentication and TLS of both ports (off by default; this server's own: stock TF "
        "Serving has no tokens)")
    security.add_argument("--tls-cert", default="", help="PEM certificate")
    security.add_argument("--tls-key", default="", help="its PEM key")
    security.add_argument("--tls-client-ca", default="",
                          help="require client certificates signed by this CA")
    security.add_argument("--token-file", default="",
                          help="bearer tokens required, one a line (REST model status, the "
                               "readiness probe's, stays open)")
    security.add_argument("--token-env", default="",
                          help="or: an environment variable holding them, comma-separated")


def parse_labels(texts: Sequence[str]) -> dict[str, dict[str, int]]:
    """`--label` values as TF Serving's version labels.

    Args:
        texts: each `MODEL:LABEL=VERSION`, such as `ranker:canary=2`.

    Returns:
        model -> label -> version.

    Raises:
        ValueError: a text is not of that form, or its version is not a positive integer.
    """
    labels: dict[str, dict[str, int]] = {}
    for text in texts:
        model, _, rest = text.partition(":")
        label, _, version = rest.partition("=")
        if not (model and label and version.isdigit() and int(version) > 0):
            raise ValueError(f"--label must be MODEL:LABEL=VERSION such as ranker:canary=2; "
                             f"received {text!r}")
        labels.setdefault(model, {})[label] = int(version)
    return labels


def run(base: pathlib.Path, host: str, rest_port: int, grpc_port: int, poll_seconds: float,
        num_versions: int, batching: bool, label: Sequence[str], tls_cert: str = "",
        tls_key: str = "", tls_client_ca: str = "", token_file: str = "",
        token_env: str = "") -> int:
    """Serves the models under `base` until interrupted.

    Args:
        label: `--label` values (`parse_labels`), checked before any model loads.
        tls_cert, tls_key, tls_client_ca: `ModelServingConfig.tls`.
        token_file, token_env: `ModelServingConfig.tokens`.

    Returns:
        0, once interrupted (Ctrl-C).

    Raises:
        ValueError: a label is malformed, or names a model that is not served; a port or
            poll period out of range; a TLS or token file the server cannot use (all
            found before any model loads).
    """
    from serving.model_server import serve_models
    from serving.model_server.config import ModelServingConfig
    from serving.security import ServerTls, TokenSource

    config = ModelServingConfig.local(
        str(base), host=host, rest_port=rest_port, grpc_port=grpc_port,
        poll_seconds=poll_seconds, num_versions=num_versions, enable_batching=batching,
        labels=parse_labels(label),
        tls=ServerTls(cert_file=tls_cert, key_file=tls_key, client_ca_file=tls_client_ca),
        tokens=TokenSource(file=token_file, env=token_env))
    server = serve_models(config)
    print(f"serving {server.registry.model_names} from {base}: REST {server.rest_url}, "
          f"gRPC {server.grpc_target}", flush=True)
    for model, entries in server.registry.not_versions.items():
        print(f"skipped under {model}/ (not version numbers): {', '.join(entries)}",
              flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


COMMAND = Command("serve-models", "TF Serving-protocol model server", run, add_arguments,
                  refused=(ValueError,))
