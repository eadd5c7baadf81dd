"""`recs ingest`: Beam ingestion of raw logs into tf.Examples and dead letters."""

import argparse
import pathlib
from collections.abc import Sequence

from recs_cli.commands._base import Command, add_runner_config, beam_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    add_runner_config(parser)


def run(raw: pathlib.Path, out: pathlib.Path, beam_runner_config: pathlib.Path | None,
        extra: Sequence[str] = (), verbose: bool = False) -> int:
    """Ingests `raw` into `out` (`transforms.ingestion`), the libraries' output to
    `out/recs.log`.

    Args:
        extra: further Beam options, after those of `beam_runner_config`.

    Returns:
        0, or 1 when the counters do not balance (something read was lost).
    """
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import ingest

    with session(out / LOG_FILE, verbose) as console:
        report = ingest(console, raw, out, beam_args(beam_runner_config, extra),
                        "Beam ingestion", per_span=True)
    return 0 if report.balanced else 1


COMMAND = Command("ingest", "Beam ingestion; extra args go to Beam", run, add_arguments)
