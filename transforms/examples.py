"""Interaction records -> serialized tf.Examples, in bulk and without TensorFlow.

A record is a dict holding every key of `RAW_FEATURE_TYPES` once. The records become one Arrow
record batch (a one-value list column per key, typed by the contract) that tfx_bsl's C++
encoder, the one TFX's own components use, turns into serialized Examples, with no Python work
per feature. Ingestion's workers encode through this and so never load TensorFlow.
"""

from typing import Any, Iterable

import pyarrow as pa
from tfx_bsl.coders import example_coder

from recs.contract.features import INT64, RAW_FEATURE_TYPES, STRING

# A string is UTF-8 encoded; a number is converted as `int` / `float` would (a bool, a NumPy
# scalar or an integral float is accepted, as a tf.Example filled in Python accepts them).
_COLUMNS = {STRING: (pa.large_binary(), None), INT64: (pa.int64(), int)}
_FLOATS = (pa.float32(), float)


def encode_examples(records: Iterable[dict[str, Any]]) -> list[bytes]:
    """Serialized tf.Examples of `records`, in their order, each key holding its one value.

    Raises:
        KeyError: a record lacks a contract key.
        TypeError, ValueError, pyarrow.ArrowException: a value does not convert to its key's
            dtype (a string must be a str, an integer fit int64).
    """
    records = list(records)
    if not records:
        return []
    # Every list holds one value: offsets 0, 1, ..., n shared by the columns.
    offsets = pa.array(range(len(records) + 1), pa.int64())
    columns = []
    for key, kind in RAW_FEATURE_TYPES.items():
        dtype, convert = _COLUMNS.get(kind, _FLOATS)
        column = [record[key] for record in records]
        values = pa.array(column if convert is None else list(map(convert, column)), dtype)
        columns.append(pa.LargeListArray.from_arrays(offsets, values))
    batch = pa.RecordBatch.from_arrays(columns, list(RAW_FEATURE_TYPES))
    return example_coder.RecordBatchToExamples(batch)
