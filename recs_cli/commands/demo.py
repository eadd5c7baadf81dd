"""`recs demo`: the whole product end to end on embedded defaults (`recs_cli.demo`)."""

import argparse
import pathlib

from recs.contract.layout import DEMO_ROOT
from recs_cli.commands._base import Command
from recs_cli.commands.generate import add_sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(DEMO_ROOT))
    parser.add_argument("-k", type=int, default=10)
    add_sizes(parser)


def run(workdir: pathlib.Path, k: int, users: int, titles: int, days: int, seed: int,
        verbose: bool = False) -> int:
    """Runs the demo in a clean `workdir` (`recs_cli.demo.run_demo`), the libraries' output
    to `workdir/recs.log`.

    Returns:
        0.
    """
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import run_demo
    from recs.contract.layout import RunLayout

    run_dir = RunLayout(workdir)
    with session(run_dir.root / LOG_FILE, verbose) as console:
        run_demo(console, run_dir, users, titles, days, seed, k)
    return 0


COMMAND = Command("demo", "everything end to end on embedded defaults", run, add_arguments)
