"""`recs serve`: the recommendation service, its HTTP JSON API, metrics and fallbacks."""

import argparse
import pathlib
from typing import TYPE_CHECKING

from recs.contract.layout import DEMO_ROOT
from recs_cli.commands._base import Command

if TYPE_CHECKING:  # Annotations only: serving loads when a command runs.
    from serving.config import ServiceConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=pathlib.Path,
                        help="ServiceConfig JSON (the deploy manifests mount one)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(DEMO_ROOT),
                        help="without --config: serve this workdir's models and profiles")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model-server", default="",
                        help="without --config: REST URL or gRPC host:port; empty starts a "
                             "model server in-process")
    parser.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    parser.add_argument("--served-log", default="", help="JSON lines of every served list")


def service_config(config: pathlib.Path | None, workdir: pathlib.Path, model_server: str,
                   protocol: str, served_log: str) -> tuple["ServiceConfig", bool]:
    """The `ServiceConfig` of `recs serve` and `recs recommend`.

    Args:
        config: a ServiceConfig JSON file; when given, the other arguments are not read.
        workdir: whose models and profile store to serve.
        model_server: REST URL or gRPC host:port; empty embeds a model server.
        protocol: "rest" or "grpc".
        served_log: where every served list is logged; empty logs none.

    Returns:
        The config, and whether to embed a model server (no `config`, no `model_server`).
    """
    from serving.config import ServiceConfig
    from recs.contract.layout import RunLayout

    if config:
        return ServiceConfig.from_json(config.read_text()), False
    run_dir = RunLayout(workdir)
    overrides = {"model_server": model_server} if model_server else {}
    settings = ServiceConfig(protocol=protocol, serving_dir=str(run_dir.serving),
                             store=str(run_dir.store), served_log=served_log, **overrides)
    return settings, not model_server


def run(config: pathlib.Path | None, workdir: pathlib.Path, host: str, port: int,
        model_server: str, protocol: str, served_log: str) -> int:
    """Serves recommendations on `host:port` until interrupted (`service_config` for the
    other arguments).

    Returns:
        0.
    """
    from serving.app import run_service

    settings, embedded = service_config(config, workdir, model_server, protocol, served_log)
    run_service(settings, host, port, embedded)
    return 0


COMMAND = Command("serve", "the recommendation service (HTTP JSON API)", run, add_arguments)
