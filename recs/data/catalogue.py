"""Reading catalogue and profile tables (JSON lines) into typed columns (no TensorFlow)."""

import json

import numpy as np

from recs.contract import features as F
from recs.contract.models import open_text
from recs.types import JsonDict


def read_jsonl(path: str) -> list[JsonDict]:
    """Reads one JSON object per non-empty line; local paths and gs:// alike.

    Raises:
        ValueError: a line is not a JSON object; the message names the file and line number.
    """
    rows = []
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number} is not valid JSON ({error}); fix or remove "
                                 "the line.") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number} must be a JSON object; received "
                                 f"{type(row).__name__}.")
            rows.append(row)
    return rows


def to_columns(rows: list[JsonDict], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Turns rows into one NumPy column per key, typed as the feature contract says.

    Raises:
        ValueError: a row lacks one of `keys`.
    """
    columns = {}
    for key in keys:
        missing = [index for index, row in enumerate(rows) if key not in row]
        if missing:
            raise ValueError(f"{len(missing)} rows lack {key!r} (first at row {missing[0]}); "
                             f"every row needs {list(keys)}.")
        dtype = F.RAW_FEATURE_TYPES[key]
        values = [row[key] for row in rows]
        if dtype == F.STRING:
            columns[key] = np.array([str(v) for v in values], dtype=object)
        else:
            columns[key] = np.array(values, dtype=dtype)
    return columns
