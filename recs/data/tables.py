"""Interaction tables people already have (CSV, Parquet, JSON lines) as the pipeline's inputs.

A `ColumnMapping` says which column holds what: the user, the item, optionally a rating (or an
implicit weight such as a play count) and a timestamp, and optionally the columns of a user
attribute table and an item attribute table. `import_tables` reads the files through it into
the same container the MovieLens adapters produce (`recs.data.movielens.MovieLens`), so the
records, the tf.Transform preprocessing and the pipeline run on them unchanged; `write_import`
writes them where `recs pipeline` reads them.

A mapping that does not fit the data (a column that is not there, a rating column that holds
no numbers) is a `ValueError` naming the mapping field, the column and the expected type. Rows
that do not fit (an empty id, a rating that is NaN, infinite, negative or above `max_rating`,
a timestamp that does not parse) are not fatal: they go to the dead letters, counted by reason.

How outcomes are derived:

- With `rating`: ratings lie in [0, max_rating]; those at or above `positive_rating` are the
  engaged (liked) plays. They are placed on the records' 1-5 scale so that `positive_rating`
  lands on 4 (the records' liked threshold): r >= positive_rating -> 4 + (r - positive) /
  (max - positive), below -> 1 + 2 r / positive, rounded.
- With `weight` instead (implicit data: plays, seconds, clicks): weight > 0 is an engaged
  play (5), weight 0 an exposure without engagement (1).
- With neither: every row is an engaged play.

Example:
    mapping = ColumnMapping(user="customer", item="sku", rating="stars", timestamp="ts")
    result = import_tables("ratings.csv", mapping, users="customers.parquet")
    write_import(result, "work/raw", "work/examples")
"""

import collections
import dataclasses
import json
import math
import os
import pathlib

import numpy as np

from recs import features as F
from recs.config import Config, require
from recs.data.movielens import MovieLens, write_pipeline_inputs
from recs.types import JsonDict

READERS = (".csv", ".tsv", ".parquet", ".jsonl", ".json")
# An id longer than this is not one someone meant.
_MAX_ID_CHARS = 512


@dataclasses.dataclass(frozen=True)
class ColumnMapping(Config):
    """Which columns of the interaction, user and item tables hold what.

    Attributes:
        user: the interaction table's user id column.
        item: the interaction table's item id column.
        rating: an explicit rating column ("" = none).
        weight: an implicit strength column (plays, seconds; "" = none); not with `rating`.
        timestamp: Unix seconds or ISO-8601 date-times ("" = none: no time order).
        positive_rating: ratings at or above it are engaged plays.
        max_rating: the rating scale's top.
        user_key: the user table's id column ("" = the same name as `user`).
        age: the user table's age column (years; "" = none).
        country: the user table's country or region column ("" = none).
        segment: the user table's one categorical segment, such as a plan or occupation
            (the records' subscription tier; "" = none).
        item_key: the item table's id column ("" = the same name as `item`).
        genre: the item table's genres, one name or several joined by "|" ("" = none).
        description: the item table's free text ("" = none).
        release_year: the item table's year column ("" = none).
    """

    user: str = "user"
    item: str = "item"
    rating: str = ""
    weight: str = ""
    timestamp: str = ""
    positive_rating: float = 4.0
    max_rating: float = 5.0
    user_key: str = ""
    age: str = ""
    country: str = ""
    segment: str = ""
    item_key: str = ""
    genre: str = ""
    description: str = ""
    release_year: str = ""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "str" or field.type is str:
                require(isinstance(value, str), field.name, "a column name (a string)", value)
            else:
                require(isinstance(value, (int, float)) and not isinstance(value, bool),
                        field.name, "a number", value)
        require(bool(self.user), "user", "the user id column's name", self.user)
        require(bool(self.item), "item", "the item id column's name", self.item)
        require(not (self.rating and self.weight), "rating and weight",
                "at most one of the two (a rating, or an implicit weight)",
                (self.rating, self.weight))
        require(math.isfinite(self.max_rating) and self.max_rating > 0, "max_rating",
                "a finite number > 0", self.max_rating)
        require(0 < self.positive_rating <= self.max_rating, "positive_rating",
                f"in (0, max_rating = {self.max_rating}]", self.positive_rating)


@dataclasses.dataclass(frozen=True)
class ImportResult:
    """Imported interactions and what was left out.

    Attributes:
        data: the interactions with user profiles and the item catalogue.
        dead_letters: one dict per rejected row: `source` file, `row` number, `reason`,
            the row's `values`.
        counts: rows read, imported, and dead-lettered by reason.
    """

    data: MovieLens
    dead_letters: list[JsonDict]
    counts: dict[str, int]


def read_table(path: str | os.PathLike):
    """A CSV, TSV, Parquet or JSON-lines file as a pandas DataFrame of its raw values.

    Raises:
        ValueError: an unknown file type, or a file that does not parse as its type.
        FileNotFoundError: no such file.
    """
    import pandas as pd

    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ValueError(f"{path}: unknown table type {suffix!r}; expected one of "
                         f"{', '.join(READERS)} (JSON as one object per line).")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        if suffix in (".csv", ".tsv"):
            # Strings as written: ids keep their leading zeros, bad numbers are a row's
            # problem (dead letters), not the file's.
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str,
                               keep_default_na=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} does not parse as {suffix[1:]}: {error}") from error


def _column(table, field: str, column: str, path: pathlib.Path):
    if column not in table.columns:
        raise ValueError(
            f"column mapping: {field}={column!r}, but {path.name} has no column {column!r}; "
            f"its columns are {sorted(map(str, table.columns))}. Set {field} to one of them.")
    return table[column]


def _numbers(values, field: str, column: str, path: pathlib.Path) -> np.ndarray:
    """Float values of a column; NaN where a value is not a number. A column with values but
    no number at all is a wrong mapping."""
    import pandas as pd

    numbers = pd.to_numeric(values.map(_scalar), errors="coerce").to_numpy(dtype=np.float64)
    present = values.map(lambda v: _scalar(v) not in (None, "")).to_numpy()
    if present.any() and not np.isfinite(numbers[present]).any():
        sample = [str(v)[:40] for v in values[present].head(3)]
        raise ValueError(f"column mapping: {field}={column!r} must hold numbers; "
                         f"{path.name}'s column {column!r} holds values such as {sample}. "
                         f"Map {field} to a numeric column, or leave it empty.")
    return numbers


def _scalar(value):
    """A cell as a plain scalar: lists, dicts and other nested values are not scalars."""
    if isinstance(value, (list, dict, tuple, set, np.ndarray)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _ids(values) -> list[str | None]:
    """Ids as strings; None for an empty, nested or absurdly long value."""
    out: list[str | None] = []
    for value in values:
        value = _scalar(value)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            out.append(None)
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip()
        out.append(text if 0 < len(text) <= _MAX_ID_CHARS else None)
    return out


def _timestamps(values, column: str, path: pathlib.Path) -> np.ndarray:
    """Unix seconds (int64); -1 where a value does not parse."""
    import pandas as pd

    scalars = values.map(_scalar)
    numbers = pd.to_numeric(scalars, errors="coerce").to_numpy(dtype=np.float64)
    parsed = pd.to_datetime(scalars.where(~np.isfinite(numbers)), errors="coerce", utc=True)
    seconds = np.where(np.isfinite(numbers), numbers,
                       parsed.astype("int64").to_numpy() / 1e9)
    valid = (np.isfinite(numbers) | parsed.notna().to_numpy()) & (seconds >= 0) & \
        (seconds < 2 ** 33)  # up to the year 2242
    present = scalars.map(lambda v: v not in (None, "")).to_numpy()
    if present.any() and not valid[present].any():
        sample = [str(v)[:40] for v in values[present].head(3)]
        raise ValueError(f"column mapping: timestamp={column!r} must hold Unix seconds or "
                         f"ISO-8601 date-times; {path.name}'s column {column!r} holds values "
                         f"such as {sample}.")
    return np.where(valid, np.nan_to_num(seconds), -1).astype(np.int64)


def _five_point(ratings: np.ndarray, mapping: ColumnMapping) -> np.ndarray:
    positive, top = mapping.positive_rating, mapping.max_rating
    upper = 4 + (ratings - positive) / max(top - positive, 1e-12)
    lower = 1 + 2 * ratings / positive
    return np.clip(np.rint(np.where(ratings >= positive, upper, lower)), 1, 5).astype(np.int64)


def import_tables(interactions: str | os.PathLike, mapping: ColumnMapping,
                  users: str | os.PathLike | None = None,
                  items: str | os.PathLike | None = None) -> ImportResult:
    """Reads interaction (and attribute) tables through `mapping`.

    Args:
        interactions: the interaction table (CSV, TSV, Parquet or JSON lines).
        mapping: which columns hold what.
        users: an optional user attribute table, keyed by `mapping.user_key`.
        items: an optional item attribute table, keyed by `mapping.item_key`.

    Returns:
        The interactions that fit, the dead letters of the rows that did not, and counts.

    Raises:
        ValueError: the mapping does not fit a table (a missing column, a numeric field
            mapped to a column without numbers), or no row fits.
        FileNotFoundError: a table does not exist.
    """
    path = pathlib.Path(interactions)
    table = read_table(path)
    user_ids = _ids(_column(table, "user", mapping.user, path))
    item_ids = _ids(_column(table, "item", mapping.item, path))
    rows = len(table)
    reasons: list[str | None] = [None] * rows

    def reject(mask: np.ndarray, reason: str) -> None:
        for row in np.flatnonzero(mask):
            reasons[row] = reasons[row] or reason

    reject(np.array([u is None for u in user_ids], dtype=bool), "user id empty or not a scalar")
    reject(np.array([i is None for i in item_ids], dtype=bool), "item id empty or not a scalar")
    if mapping.rating:
        values = _numbers(_column(table, "rating", mapping.rating, path), "rating",
                          mapping.rating, path)
        reject(~np.isfinite(values), "rating not a finite number")
        reject(np.isfinite(values) & ((values < 0) | (values > mapping.max_rating)),
               f"rating outside [0, {mapping.max_rating:g}]")
        ratings = _five_point(np.nan_to_num(values), mapping)
    elif mapping.weight:
        values = _numbers(_column(table, "weight", mapping.weight, path), "weight",
                          mapping.weight, path)
        reject(~np.isfinite(values), "weight not a finite number")
        reject(np.isfinite(values) & (values < 0), "weight negative")
        ratings = np.where(np.nan_to_num(values) > 0, 5, 1).astype(np.int64)
    else:
        ratings = np.full(rows, 5, dtype=np.int64)
    if mapping.timestamp:
        stamps = _timestamps(_column(table, "timestamp", mapping.timestamp, path),
                             mapping.timestamp, path)
        reject(stamps < 0, "timestamp does not parse (Unix seconds or ISO-8601)")
    else:
        stamps = np.zeros(rows, dtype=np.int64)

    keep = np.array([reason is None for reason in reasons], dtype=bool)
    dead_letters = [{"source": path.name, "row": int(row), "reason": reasons[row],
                     "values": {str(k): str(v)[:200] for k, v in table.iloc[row].items()}}
                    for row in np.flatnonzero(~keep)]
    if not keep.any():
        raise ValueError(f"{path.name}: none of its {rows} rows fit the mapping; the first "
                         f"rejections: {[d['reason'] for d in dead_letters[:3]]}.")
    kept_users = np.array([user_ids[r] for r in np.flatnonzero(keep)], dtype=object)
    kept_items = np.array([item_ids[r] for r in np.flatnonzero(keep)], dtype=object)
    # Time order within the import, as the history features expect.
    order = np.argsort(stamps[keep], kind="stable")
    profiles = _profiles(users, mapping, set(kept_users), dead_letters)
    catalogue = _catalogue(items, mapping, set(kept_items), dead_letters)
    data = MovieLens(name=path.stem, users=kept_users[order], titles=kept_items[order],
                     ratings=ratings[keep][order], timestamps=stamps[keep][order],
                     profiles=profiles, catalogue=catalogue)
    by_reason = collections.Counter(d["reason"] for d in dead_letters)
    counts = {"rows_read": rows, "interactions_imported": int(keep.sum()),
              "dead_lettered": len(dead_letters), **{f"dead_letter: {reason}": count
                                                    for reason, count in by_reason.items()}}
    return ImportResult(data=data, dead_letters=dead_letters, counts=counts)


def _attribute_rows(path: str | os.PathLike | None, key_field: str, key: str,
                    mapping: ColumnMapping, fields: tuple[str, ...], wanted: set[str],
                    dead_letters: list[JsonDict]) -> dict[str, JsonDict]:
    """`{id: raw row}` of an attribute table, for the ids in `wanted`; every column that
    `mapping` names for `fields` must exist. A row without a usable id is a dead letter, a
    second row for an id is ignored (the first stands)."""
    if path is None:
        return {}
    path = pathlib.Path(path)
    table = read_table(path)
    ids = _ids(_column(table, key_field, key, path))
    for field in fields:
        if getattr(mapping, field):
            _column(table, field, getattr(mapping, field), path)
    rows: dict[str, JsonDict] = {}
    for number, (identifier, row) in enumerate(zip(ids, table.to_dict("records"))):
        if identifier is None:
            dead_letters.append({"source": path.name, "row": number,
                                 "reason": f"{key_field} empty or not a scalar",
                                 "values": {str(k): str(v)[:200] for k, v in row.items()}})
        elif identifier in wanted:
            rows.setdefault(identifier, row)
    return rows


def _text(row: JsonDict, column: str) -> str:
    value = _scalar(row.get(column, "")) if column else ""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value).strip()[:10_000]


def _integer(row: JsonDict, column: str, low: int, high: int) -> int:
    if not column:
        return 0
    try:
        value = float(_scalar(row.get(column)))
    except (TypeError, ValueError):
        return 0
    return int(value) if math.isfinite(value) and low <= value <= high else 0


def _profiles(path, mapping: ColumnMapping, wanted: set[str],
              dead_letters: list[JsonDict]) -> dict[str, JsonDict]:
    rows = _attribute_rows(path, "user_key", mapping.user_key or mapping.user, mapping,
                           ("age", "country", "segment"), wanted, dead_letters)
    return {user: {F.AGE: _integer(rows.get(user, {}), mapping.age, 0, 130),
                   F.COUNTRY: _text(rows.get(user, {}), mapping.country),
                   F.SUBSCRIPTION_TIER: _text(rows.get(user, {}), mapping.segment)}
            for user in wanted}


def _catalogue(path, mapping: ColumnMapping, wanted: set[str],
               dead_letters: list[JsonDict]) -> dict[str, JsonDict]:
    rows = _attribute_rows(path, "item_key", mapping.item_key or mapping.item, mapping,
                           ("genre", "description", "release_year"), wanted, dead_letters)
    catalogue = {}
    for item in wanted:
        row = rows.get(item, {})
        genres = [g.strip() for g in _text(row, mapping.genre).split("|") if g.strip()]
        genres = genres or ["unknown"]
        catalogue[item] = {F.TITLE_ID: item, F.GENRE: genres[0], "genres": genres,
                           F.RELEASE_YEAR: _integer(row, mapping.release_year, 1800, 2200),
                           F.DESCRIPTION: " ".join(
                               part for part in (_text(row, mapping.description), *genres)
                               if part and part != "unknown")}
    # A missing year is the catalogue's median, as the MovieLens adapter does.
    years = [row[F.RELEASE_YEAR] for row in catalogue.values() if row[F.RELEASE_YEAR]]
    for row in catalogue.values():
        row[F.RELEASE_YEAR] = row[F.RELEASE_YEAR] or (int(np.median(years)) if years else 0)
    return catalogue


def write_import(result: ImportResult, raw_dir: str, examples_dir: str) -> dict[str, int]:
    """Writes an import as the pipeline's inputs (`recs.data.movielens.write_pipeline_inputs`)
    and its dead letters as `raw_dir/import_dead_letters.jsonl`; returns the counts."""
    written = write_pipeline_inputs(result.data, raw_dir, examples_dir)
    with open(pathlib.Path(raw_dir) / "import_dead_letters.jsonl", "w") as handle:
        for letter in result.dead_letters:
            handle.write(json.dumps(letter) + "\n")
    return {**result.counts, "records_written": written}
