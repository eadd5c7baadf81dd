"""`recs outcomes`: an A/B test's per-user outcomes from the served-list log (Beam)."""

import argparse
import pathlib

from recs_cli.commands._base import Command, add_runner_config, beam_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--served", required=True,
                        help="served-list log: a folder of day=YYYY-MM-DD/*.jsonl, or a glob")
    parser.add_argument("--examples", required=True,
                        help="ingested examples: a folder of day=YYYY-MM-DD/*.tfrecord.gz")
    parser.add_argument("--subscriptions", default="",
                        help="optional folder of day=YYYY-MM-DD/*.jsonl renewal decisions")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--start", required=True, help="first day of the window (ISO date)")
    parser.add_argument("--end", required=True, help="last day of the window, inclusive")
    parser.add_argument("--out", required=True,
                        help="the per-user rows (JSON lines); dead letters and a report "
                             "are written beside it")
    parser.add_argument("--pre-period-days", type=int, default=7)
    parser.add_argument("--return-horizon-days", type=int, default=7)
    parser.add_argument("--attribution-days", type=int, default=1)
    parser.add_argument("--delivery-slack-days", type=int, default=1)
    parser.add_argument("--daily", action="store_true",
                        help="also write the rows as they stood at each day of the window "
                             "to <out base>.daily.jsonl (recs abtest --sequential reads them)")
    add_runner_config(parser)


def run(served: str, examples: str, subscriptions: str, experiment: str, start: str, end: str,
        out: str, pre_period_days: int, return_horizon_days: int, attribution_days: int,
        delivery_slack_days: int, daily: bool, beam_runner_config: pathlib.Path | None
        ) -> int:
    """Joins the served lists with the days after them (`transforms.outcomes`) into per-user
    rows at `out` (with `daily`, also each day's rows beside it), and prints the run's
    summary.

    Returns:
        0.

    Raises:
        ValueError: a bad window or Beam runner config, an input that matches no file or a
            file outside a day partition, or no served-list partition in the window.
    """
    from transforms.outcomes import OutcomesConfig, run_outcomes

    config = OutcomesConfig(
        served_path=served, examples_dir=examples, output_path=out, experiment=experiment,
        start_day=start, end_day=end, subscriptions_dir=subscriptions,
        pre_period_days=pre_period_days, return_horizon_days=return_horizon_days,
        attribution_days=attribution_days, delivery_slack_days=delivery_slack_days,
        daily=daily, beam_args=tuple(beam_args(beam_runner_config)))
    print(run_outcomes(config).summary())
    return 0


COMMAND = Command("outcomes", "per-user A/B test outcomes (what abtest reads) from served "
                              "lists and the days after (Beam)", run, add_arguments,
                  refused=(ValueError,))
