"""`recs evaluate`: the standard offline protocols on interaction tables, the default model
against same-run peers (`tfx_pipeline.evaluate_tables`)."""

import argparse
import pathlib
from collections.abc import Sequence

from recs_cli.commands._base import Command
from recs_cli.commands.import_tables import add_table_arguments, column_mapping


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_arguments(parser)
    parser.add_argument("--protocol", action="append", default=[],
                        choices=("recbole", "random", "leave-last-out"),
                        help="repeatable; default: every one the data allows "
                             "(leave-last-out needs a timestamp column)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("evaluation"))
    parser.add_argument("--epochs", type=int, default=0,
                        help="the default model's training epochs (0: its own)")
    parser.add_argument("--core", type=int, default=1,
                        help="k-core filter on users and items first (RecBole's; 1: none)")


def run(interactions: pathlib.Path, mapping: str, users: pathlib.Path | None,
        items: pathlib.Path | None, protocol: Sequence[str], out: pathlib.Path, epochs: int,
        core: int, verbose: bool = False) -> int:
    """Runs the protocols; writes `out/evaluation.json`, `out/evaluation.png` and the
    libraries' output to `out/recs.log`.

    Args:
        mapping: `--mapping`'s text (`column_mapping`).
        protocol: the protocols asked for, repeats ignored; empty runs every one that applies.

    Returns:
        0.

    Raises:
        ValueError: the mapping is malformed or does not fit the tables, a protocol needs a
            column the mapping lacks, or the data leaves a protocol nothing to test on.
        FileNotFoundError: a table or the mapping's file does not exist.
    """
    from recs_cli.console import LOG_FILE, session
    from tfx_pipeline.evaluate_tables import EvaluateConfig, evaluate, resolve_protocols

    columns = column_mapping(mapping)
    config = EvaluateConfig(protocols=tuple(dict.fromkeys(protocol)), epochs=epochs, core=core)
    resolve_protocols(config, columns)  # Refused before anything is read or written.
    with session(out / LOG_FILE, verbose) as console:
        evaluate(interactions, columns, out, config, users, items, console)
    return 0


COMMAND = Command("evaluate", "the standard full-ranking protocols on interaction tables: the "
                              "default model against same-run peers (JSON + plot)",
                  run, add_arguments, refused=(ValueError, FileNotFoundError),
                  prefix="recs evaluate")
