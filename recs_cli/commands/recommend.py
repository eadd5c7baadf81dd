"""`recs recommend`: recommendations for one user from the pushed models."""

import argparse
import pathlib

from recs.contract.layout import DEMO_ROOT
from recs_cli.commands._base import Command
from recs_cli.commands.serve import service_config
from serving.types import StoreUnavailableError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(DEMO_ROOT))
    parser.add_argument("--user-id", required=True)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--device-type", default="tv")
    parser.add_argument("--hour", type=int, default=20)
    parser.add_argument("--model-server", default="",
                        help="REST URL or gRPC host:port of a running model server")
    parser.add_argument("--protocol", choices=("rest", "grpc"), default="rest")


def run(workdir: pathlib.Path, user_id: str, k: int, device_type: str, hour: int,
        model_server: str, protocol: str) -> int:
    """Prints `user_id`'s top `k` in the given context, from the workdir's models (embedded
    when `model_server` is empty) and profile store.

    Returns:
        0.

    Raises:
        ValueError: `k` or `hour` out of range, or `serving.UnknownUserError` (a
            ValueError, which is how the glue refuses it): no profile for `user_id`.
        StoreUnavailableError: the profile store cannot answer (locked, not a database).
    """
    from recs_cli.demo import format_recommendations
    from serving.app import recommend_once

    config, embedded = service_config(None, workdir, model_server, protocol, served_log="")
    items = recommend_once(config, user_id, k, device_type, hour, embedded)
    print(format_recommendations(user_id, items, protocol))
    return 0


COMMAND = Command("recommend", "recommendations for one user", run, add_arguments,
                  refused=(ValueError, StoreUnavailableError))
