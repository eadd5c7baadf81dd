"""The feature contract with its TensorFlow specs.

Every key, shape rule and constant is in `recs.contract.features` (no TensorFlow); this module
re-exports them and adds what needs TensorFlow: the dtypes, the `tf.io.parse_example` spec and
the serving input signatures.
"""

from typing import Any

import tensorflow as tf

from recs.contract.features import *  # noqa: F401,F403  (the contract, under its usual name)
from recs.contract.features import INT64, RAW_FEATURE_TYPES, STRING

RAW_FEATURE_DTYPES: dict[str, tf.dtypes.DType] = {
    key: tf.dtypes.as_dtype(name) for key, name in RAW_FEATURE_TYPES.items()}
"""Every key of an interaction tf.Example, with its dtype. Each holds exactly one value."""


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """Returns the `tf.io.parse_example` spec of an interaction record."""
    return {key: tf.io.FixedLenFeature([], dtype) for key, dtype in RAW_FEATURE_DTYPES.items()}


def serving_input_signature(keys: tuple[str, ...]) -> dict[str, tf.TensorSpec]:
    """Returns the raw-feature input signature of a served model: `[batch_size]` per key."""
    return {key: tf.TensorSpec([None], RAW_FEATURE_DTYPES[key], name=key) for key in keys}


def genre_match(preferred_genres: tf.Tensor, genre: tf.Tensor) -> tf.Tensor:
    """`GENRE_MATCH`: 1.0 where the title's genre is among the "|"-joined preferred genres.

    One implementation for tf.Transform (`transforms.preprocessing`) and for the recommender
    model, which computes it per candidate from the catalogue's raw genre.

    Args:
        preferred_genres: `[batch_size]` strings such as "drama|comedy".
        genre: `[batch_size]` genre names.

    Returns:
        `[batch_size]` float32.
    """
    preferred = tf.strings.split(preferred_genres, sep="|")
    return tf.cast(tf.reduce_any(tf.equal(preferred, genre[:, tf.newaxis]), axis=1), tf.float32)


def to_example(record: dict[str, Any]) -> bytes:
    """Serializes an interaction record as a tf.Example with the contract's dtypes."""
    # Filled in place, and typed by the contract's dtype names: building a Feature message per
    # key and comparing DTypes cost twice the time.
    example = tf.train.Example()
    feature = example.features.feature
    for key, kind in RAW_FEATURE_TYPES.items():
        value = record[key]
        if kind == STRING:
            feature[key].bytes_list.value.append(value.encode())
        elif kind == INT64:
            feature[key].int64_list.value.append(int(value))
        else:
            feature[key].float_list.value.append(float(value))
    return example.SerializeToString()
