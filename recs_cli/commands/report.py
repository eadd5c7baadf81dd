"""`recs report`: one HTML page of what a run did (data, checks, curves, gates, pushes)."""

import argparse
import pathlib

from recs.contract.layout import DEMO_ROOT
from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(DEMO_ROOT))
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="the HTML file; default <workdir>/report.html")


def run(workdir: pathlib.Path, out: pathlib.Path | None, verbose: bool = False) -> int:
    """Writes the run's page (`monitoring.run_report`), the libraries' output to
    `workdir/report.log`.

    Returns:
        0.

    Raises:
        NotADirectoryError: `workdir` does not exist; refused before anything is written.
    """
    from monitoring.run_report import REPORT_LOG, write_run_report
    from recs_cli.console import session
    from recs.contract.layout import RunLayout

    run_dir = RunLayout(workdir)
    if not run_dir.root.is_dir():  # Refused before a session would create it for its log.
        raise NotADirectoryError(
            f"workdir {str(run_dir.root)!r} does not exist; pass the directory a run wrote "
            "(recs demo --workdir W, recs pipeline --workdir W).")
    with session(run_dir.root / REPORT_LOG, verbose) as console:
        with console.stage("run report"):
            path = write_run_report(run_dir, out)
        console.detail(str(path))
    return 0


COMMAND = Command("report", "one HTML page of what a run in a workdir did", run, add_arguments,
                  refused=(NotADirectoryError,))
