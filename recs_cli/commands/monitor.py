"""`recs monitor`: one span's outcome metrics, calibration, drift and the retrain decision."""

import argparse
import pathlib

from recs.contract.layout import DEMO_ROOT
from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(DEMO_ROOT),
                        help="holds serving/ranker; decisions and reports go to monitoring/")
    parser.add_argument("--span", type=int, required=True)
    parser.add_argument("--examples", required=True, help="the span's ingested examples (glob)")
    parser.add_argument("--reference", required=True,
                        help="the training spans' examples (glob): drift reference")
    parser.add_argument("--baseline-auc", type=float, default=None)
    parser.add_argument("--pushed-span", type=int, default=None,
                        help="span the served model was pushed at (cooldown)")
    parser.add_argument("--served-log", default="", help="served lists of the span (JSON lines)")
    parser.add_argument("--next-examples", default="",
                        help="the following span's examples, for served-title engagement")
    parser.add_argument("--config", type=pathlib.Path, default=None,
                        help="MonitorConfig as JSON")


def run(workdir: pathlib.Path, span: int, examples: str, reference: str,
        baseline_auc: float | None, pushed_span: int | None, served_log: str,
        next_examples: str, config: pathlib.Path | None) -> int:
    """Measures `span` against the workdir's served ranker (`monitoring.monitor`), writes
    the reports under `workdir/monitoring` and prints the decision as JSON.

    Args:
        config: a MonitorConfig JSON file; None takes `MonitorConfig()`.

    Returns:
        The decision: 0 nothing to do, 3 alert, 4 retrain.
    """
    from monitoring.config import MonitorConfig
    from monitoring.decision import ALERT, NOTHING, RETRAIN
    from monitoring.monitor import monitor_workdir
    from recs.contract.layout import RunLayout

    settings = MonitorConfig.from_json(config.read_text()) if config else MonitorConfig()
    run_dir = RunLayout(workdir)
    decision = monitor_workdir(str(run_dir.serving), str(run_dir.monitoring), span, examples,
                               reference, settings, baseline_auc, pushed_span, served_log,
                               next_examples)
    print(decision.to_json())
    return {NOTHING: 0, ALERT: 3, RETRAIN: 4}[decision.action]


COMMAND = Command("monitor", "measure a span, decide: nothing/alert/retrain", run,
                  add_arguments)
