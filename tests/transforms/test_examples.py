"""Bulk tf.Example encoding: the same Examples as one record at a time, without TensorFlow."""

import math
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from transforms.examples import encode_examples
from recs.features import to_example

RECORD = {
    F.USER_ID: "u1", F.AGE: 34, F.COUNTRY: "DE", F.SUBSCRIPTION_TIER: "premium",
    F.PREFERRED_GENRES: "drama|comedy", F.HISTORY: "t9|t3", F.DEVICE_TYPE: "tv", F.HOUR: 21,
    F.TIMESTAMP: 1_767_600_000, F.TITLE_ID: "t1", F.GENRE: "drama", F.RELEASE_YEAR: 2019,
    F.POPULARITY: 12.5, F.DESCRIPTION: "Ein Film über Zeit — naïve ☂", F.DURATION_SECONDS: 5400,
    F.WATCH_SECONDS: 4000.25, F.WATCH_RATIO: 4000.25 / 5400, F.LIKED: 1, F.SKIPPED: 0,
    F.COMPLETED: 0, F.LABEL: 1,
}


def _parsed(serialized: bytes) -> dict:
    example = tf.train.Example.FromString(serialized)
    return {key: list(getattr(feature, feature.WhichOneof("kind")).value)
            for key, feature in example.features.feature.items()}


def test_bulk_examples_parse_to_the_one_at_a_time_examples():
    records = [RECORD, {**RECORD, F.USER_ID: "u2", F.TITLE_ID: "", F.HISTORY: "",
                        F.WATCH_SECONDS: 0.0, F.WATCH_RATIO: float("nan"), F.LABEL: 0}]
    bulk = encode_examples(records)
    assert len(bulk) == 2
    for serialized, record in zip(bulk, records):
        got, want = _parsed(serialized), _parsed(to_example(record))
        assert got.keys() == set(F.RAW_FEATURE_TYPES)
        nan = [k for k, v in want.items() if isinstance(v[0], float) and math.isnan(v[0])]
        assert all(math.isnan(got[k][0]) for k in nan)
        assert {k: v for k, v in got.items() if k not in nan} == {
            k: v for k, v in want.items() if k not in nan}
    assert _parsed(bulk[0])[F.DESCRIPTION] == [RECORD[F.DESCRIPTION].encode()]
    assert _parsed(bulk[0])[F.WATCH_SECONDS] == [pytest.approx(4000.25)]


def test_numbers_convert_as_int_and_float_would():
    record = {**RECORD, F.LIKED: True, F.AGE: 34.0, F.HOUR: np.int64(3),
              F.POPULARITY: 2, F.WATCH_RATIO: np.float32(0.5)}
    parsed = _parsed(encode_examples([record])[0])
    assert (parsed[F.LIKED], parsed[F.AGE], parsed[F.HOUR]) == ([1], [34], [3])
    assert (parsed[F.POPULARITY], parsed[F.WATCH_RATIO]) == ([2.0], [0.5])


def test_nothing_in_is_nothing_out():
    assert encode_examples([]) == []
    [one] = encode_examples(iter([RECORD]))
    assert _parsed(one) == _parsed(encode_examples([RECORD])[0])


@pytest.mark.parametrize("change", [{F.USER_ID: 7}, {F.AGE: "old"}, {F.AGE: 2 ** 70},
                                    {F.DESCRIPTION: "\ud800"}])
def test_a_value_that_does_not_convert_raises(change):
    with pytest.raises(Exception):
        encode_examples([RECORD, {**RECORD, **change}])


def test_a_missing_key_raises_naming_it():
    record = dict(RECORD)
    del record[F.GENRE]
    with pytest.raises(KeyError, match=F.GENRE):
        encode_examples([record])


def test_encoding_does_not_load_tensorflow():
    code = ("import sys; from transforms.examples import encode_examples; "
            "import transforms.ingestion; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)
