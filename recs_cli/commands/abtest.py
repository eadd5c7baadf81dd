"""`recs abtest`: an A/B test's analysis: z-tests, Welch + CUPED, sample-ratio check."""

import argparse
import pathlib

from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outcomes", type=pathlib.Path, required=True,
                        help="JSON lines (recs outcomes): arm, engaged, returned, "
                             "renewed, watch_seconds [, pre_watch_seconds]")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--arms", default="control=1,treatment=1",
                        help="designed split, control first")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--metric", default="returned",
                        help="the pre-registered primary metric the verdict rests on")
    parser.add_argument("--minimum-effect", type=float, default=0.0,
                        help="smallest difference worth shipping, in the metric's units")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("abtest_report"))


def run(outcomes: pathlib.Path, experiment: str, arms: str, alpha: float, metric: str,
        minimum_effect: float, out: pathlib.Path) -> int:
    """Analyzes the per-user outcomes (`monitoring.abtest`), writes the report under `out`
    and prints the table and the verdict.

    Args:
        arms: the designed split, control first, e.g. "control=1,treatment=1".
        metric: the pre-registered primary metric the verdict rests on.

    Returns:
        0, or 3 when the arms' sizes do not match the designed split (sample-ratio mismatch).
    """
    from monitoring.abtest import DecisionRule, run_abtest

    rule = DecisionRule(metric, alpha, minimum_effect)
    analysis, verdict = run_abtest(str(outcomes), experiment, arms, str(out), alpha, rule)
    print(analysis.table())
    print(f"verdict: {verdict.action.upper()} ({verdict.reason})")
    return 3 if analysis.sample_ratio.mismatch else 0


COMMAND = Command("abtest", "analyze an A/B test's per-user outcomes", run, add_arguments)
