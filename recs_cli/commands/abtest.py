"""`recs abtest`: an A/B test's analysis: z-tests, Welch + CUPED, sample-ratio check,
Kaplan-Meier retention, and the daily group-sequential verdict.

    recs abtest --outcomes rows.jsonl --experiment E [--arms control=1,treatment=1]
                [--metric|--primary METRIC] [--alpha A] [--minimum-effect X] [--out DIR]
    recs abtest --outcomes rows.daily.jsonl --experiment E --sequential --looks N
                [--spending obrien_fleming|pocock] [--aa-splits K] [...the flags above]

Exit status: 0; 2 for bad flags or rows (one line on stderr); 3 when the split does not match
the design (sample-ratio mismatch: no result is trusted).
"""

import argparse
import pathlib

from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outcomes", type=pathlib.Path, required=True,
                        help="JSON lines (recs outcomes): arm, engaged, returned, renewed, "
                             "watch_seconds [, pre_watch_seconds, days_observed, churned]; "
                             "with --sequential, the daily rows (recs outcomes --daily)")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--arms", default="control=1,treatment=1",
                        help="designed split, control first")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--metric", "--primary", dest="metric", default="returned",
                        help="the primary metric the verdict rests on, named before the run: "
                             "engaged, returned, renewed, watch_seconds, 'watch_seconds "
                             "(CUPED)', or (fixed horizon) retention_dN / renewal_dN")
    parser.add_argument("--minimum-effect", type=float, default=0.0,
                        help="smallest difference worth shipping, in the metric's units")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("abtest_report"),
                        help="folder of abtest_<experiment>.json and its PNG plots")
    parser.add_argument("--sequential", action="store_true",
                        help="daily group-sequential looks instead of one fixed-horizon test")
    parser.add_argument("--looks", type=int, default=None,
                        help="with --sequential: the planned daily looks")
    parser.add_argument("--spending", default=None,
                        help="with --sequential: obrien_fleming (default) or pocock")
    parser.add_argument("--aa-splits", type=int, default=None,
                        help="with --sequential: the A/A stopping rate over this many random "
                             "re-splits of the same users")


def run(outcomes: pathlib.Path, experiment: str, arms: str, alpha: float, metric: str,
        minimum_effect: float, out: pathlib.Path, sequential: bool, looks: int | None,
        spending: str | None, aa_splits: int | None) -> int:
    """Analyzes the per-user outcomes (`monitoring.abtest.run_abtest`), writes the report and
    its plots under `out`, and prints the tables and the verdict.

    Args:
        arms: the designed split, control first, e.g. "control=1,treatment=1".
        metric: the pre-registered primary metric the verdict rests on.
        sequential: the daily group-sequential test (needs `looks`).
        looks, spending, aa_splits: its design (`monitoring.abtest.SequentialDesign`).

    Returns:
        0, or 3 when the arms' sizes do not match the designed split (sample-ratio mismatch).

    Raises:
        ValueError: a design flag without --sequential, --sequential without --looks, or what
            `run_abtest` refuses.
    """
    from monitoring.abtest import DecisionRule, SequentialDesign, run_abtest

    design_flags = {"--looks": looks, "--spending": spending, "--aa-splits": aa_splits}
    given = [flag for flag, value in design_flags.items() if value is not None]
    if not sequential and given:
        raise ValueError(f"{', '.join(given)} only apply to the sequential test; add "
                         "--sequential (with --looks N), or leave them out for the "
                         "fixed-horizon test.")
    if sequential and looks is None:
        raise ValueError("--sequential needs --looks N: the planned number of daily looks, "
                         "fixed before the experiment starts (e.g. --looks 14).")
    rule = DecisionRule(metric, alpha, minimum_effect)
    design = None
    if sequential:
        chosen = {"spending": spending, "aa_splits": aa_splits}
        design = SequentialDesign(looks, **{k: v for k, v in chosen.items() if v is not None})
    result = run_abtest(str(outcomes), experiment, arms, str(out), alpha, rule, design)
    print(result.text())
    print(f"report: {result.json_path}")
    return 3 if result.split_broken else 0


COMMAND = Command("abtest", "analyze an A/B test's per-user outcomes (fixed horizon, "
                            "retention, or daily sequential looks)", run, add_arguments,
                  refused=(ValueError, FileNotFoundError))
