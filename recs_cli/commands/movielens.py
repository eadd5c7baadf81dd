"""`recs movielens`: MovieLens 100K or 1M as ingested records, ready for the pipeline."""

import argparse
import pathlib

from recs_cli.commands._base import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-100k")
    parser.add_argument("--data", type=pathlib.Path, required=True,
                        help="folder of the GroupLens files, e.g. ../shared/data/movielens-100k")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("movielens_output"))
    parser.add_argument("--max-ratings", type=int, default=0, help="0 = all")


def run(dataset: str, data: pathlib.Path, workdir: pathlib.Path, max_ratings: int) -> int:
    """Writes `dataset` (`recs.data.movielens`) into a clean `workdir`'s raw records and
    examples, at most `max_ratings` ratings (0: all).

    Returns:
        0.
    """
    from recs.data.movielens import write_movielens
    from recs.contract.layout import RunLayout

    run_dir = RunLayout(workdir)
    run_dir.clean()
    count = write_movielens(dataset, str(data), str(run_dir.raw), str(run_dir.examples_dir),
                            max_ratings)
    print(f"wrote {count} interaction records under {workdir}; next: "
          f"recs pipeline --workdir {workdir}")
    return 0


COMMAND = Command("movielens", "MovieLens as the pipeline's inputs", run, add_arguments)
