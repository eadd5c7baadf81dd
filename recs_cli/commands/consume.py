"""`recs consume`: profile updates from the event queue (Redis Streams)."""

import argparse
import dataclasses
import json

from recs.contract.layout import DEMO_ROOT, RunLayout
from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--store", default=str(RunLayout(DEMO_ROOT).store),
                        help="SQLite path or redis:// URL of the profile store")
    parser.add_argument("--catalogue", default=str(RunLayout(DEMO_ROOT).titles))
    parser.add_argument("--consumer", default="updater-1")
    parser.add_argument("--claim-idle-ms", type=int, default=30_000)
    parser.add_argument("--until-idle", action="store_true",
                        help="stop once the stream has nothing new")


def run(redis: str, store: str, catalogue: str, consumer: str, claim_idle_ms: int,
        until_idle: bool) -> int:
    """Applies the stream's events to the profile store (`serving.consumer.consume`) and
    prints the counts as JSON.

    Returns:
        0.
    """
    from serving.consumer import consume

    counts = consume(redis, store, catalogue, consumer, claim_idle_ms, until_idle)
    print(json.dumps(dataclasses.asdict(counts)))
    return 0


COMMAND = Command("consume", "profile updates from a Redis Stream", run, add_arguments)
