"""`recs import`: your interaction tables (CSV, TSV, Parquet, JSON lines) as the pipeline's
inputs, through a column mapping."""

import argparse
import json
import pathlib
from typing import TYPE_CHECKING

from recs_cli.commands._base import Command

if TYPE_CHECKING:  # Annotations only: pandas loads when a command runs.
    from recs.data.tables import ColumnMapping


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """The tables and their column mapping (`recs import`, `recs evaluate`)."""
    parser.add_argument("--interactions", type=pathlib.Path, required=True)
    parser.add_argument("--users", type=pathlib.Path, default=None,
                        help="a user attribute table (age, country, segment columns)")
    parser.add_argument("--items", type=pathlib.Path, default=None,
                        help="an item attribute table (genre, description, year columns)")
    parser.add_argument("--mapping", default="{}",
                        help="a ColumnMapping (recs/data/tables.py) as JSON, or a JSON "
                             "file: '{\"user\": \"customer\", \"item\": \"sku\", "
                             "\"rating\": \"stars\"}'")


def column_mapping(text: str) -> "ColumnMapping":
    """`--mapping`: a ColumnMapping as JSON, or a file holding it.

    Raises:
        ValueError: not a JSON object of ColumnMapping fields, or a field's value is wrong.
        FileNotFoundError: no such file.
    """
    from recs.data.tables import ColumnMapping

    if text.lstrip()[:1] not in ("{", "["):  # a file holding the JSON
        text = pathlib.Path(text).read_text()
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"--mapping must be a JSON object of ColumnMapping fields; "
                         f"received {type(values).__name__}.")
    return ColumnMapping.from_dict(values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_arguments(parser)
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("import_output"))


def run(interactions: pathlib.Path, mapping: str, users: pathlib.Path | None,
        items: pathlib.Path | None, workdir: pathlib.Path) -> int:
    """Imports the tables (`recs.data.tables`) into a clean `workdir`'s raw records and
    examples, for `recs pipeline --workdir`.

    Args:
        mapping: `--mapping`'s text (`column_mapping`).

    Returns:
        0.

    Raises:
        ValueError: the mapping is malformed or does not fit the tables.
        FileNotFoundError: a table or the mapping's file does not exist.
    """
    from recs.data.tables import import_tables, write_import
    from recs.contract.layout import RunLayout

    result = import_tables(interactions, column_mapping(mapping), users, items)
    run_dir = RunLayout(workdir)
    run_dir.clean()
    counts = write_import(result, str(run_dir.raw), str(run_dir.examples_dir))
    print(json.dumps(counts, indent=2))
    print(f"wrote {counts['records_written']} interaction records under {workdir} "
          f"({counts['dead_lettered']} rows dead-lettered to "
          f"{run_dir.raw / 'import_dead_letters.jsonl'}); next: "
          f"recs pipeline --workdir {workdir}")
    return 0


COMMAND = Command("import", "interaction tables (CSV, TSV, Parquet, JSON lines) as the "
                            "pipeline's inputs, through a column mapping", run, add_arguments,
                  refused=(ValueError, FileNotFoundError), prefix="recs import")
