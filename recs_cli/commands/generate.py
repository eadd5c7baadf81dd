"""`recs generate`: seeded synthetic streaming logs."""

import argparse
import pathlib

from recs_cli.commands._base import Command


def add_sizes(parser: argparse.ArgumentParser) -> None:
    """The synthetic world's size and seed (`recs generate`, `recs demo`)."""
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--titles", type=int, default=400)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=pathlib.Path, required=True)
    add_sizes(parser)
    parser.add_argument("--sessions-per-user-day", type=float, default=0.6,
                        help="mean sessions per user and day (about 5.5 events each); "
                             "1M users at 1.8 give about 10M events a day")


def run(out: pathlib.Path, users: int, titles: int, days: int, seed: int,
        sessions_per_user_day: float, verbose: bool = False) -> int:
    """Writes the logs (`recs.data.synthetic.generate`) under `out`, the libraries' output to
    `out/recs.log`.

    Returns:
        0.
    """
    from recs.data.synthetic import GeneratorConfig
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import generate_logs

    with session(out / LOG_FILE, verbose) as console:
        config = GeneratorConfig(num_users=users, num_titles=titles, days=days, seed=seed,
                                 sessions_per_user_day=sessions_per_user_day)
        generate_logs(console, config, out, f"generating {users:,} users, {titles:,} titles, "
                                            f"{days} days")
    return 0


COMMAND = Command("generate", "write synthetic streaming logs", run, add_arguments)
