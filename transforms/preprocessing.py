"""tf.Transform preprocessing: raw interaction features -> model inputs.

The analyzers run once over the training data (full-pass vocabularies, quantiles, means and
variances); the resulting graph is embedded in every served model, so serving applies exactly
the training-time transformation to raw features.

| raw feature                 | transformed                                              |
|-----------------------------|----------------------------------------------------------|
| user_id, title_id, country, | vocabulary index, one out-of-vocabulary bucket           |
| subscription_tier, genre    |                                                          |
| preferred_genres ("a|b")    | genre-vocabulary ids + 1, padded with 0 to 3             |
| history ("t1|t2")           | title-vocabulary ids + 1, padded with 0 to 30            |
| genre + preferred_genres    | genre_match: 1.0 if the genre is a preferred one         |
| description                 | lower-cased word ids (top 2000) + 1, padded with 0 to 16 |
| age                         | quantile bucket, 6 buckets                               |
| hour                        | clipped to 0..23                                         |
| device_type                 | one-hot over the known devices plus "other"              |
| popularity                  | z-score of log1p                                         |
| release_year                | z-score                                                  |
| watch_seconds               | z-score of log1p (a training weight, not a model input)  |
| popularity                  | sampling_probability: popularity / max popularity (the   |
|                             | retrieval loss's log-Q correction, not a model input)    |
| engaged                     | the label, unchanged                                     |
"""

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F

import tensorflow as tf
import tensorflow_transform as tft

_ID_FEATURES = (F.USER_ID, F.COUNTRY, F.SUBSCRIPTION_TIER)


def _flat(tensor: tf.Tensor) -> tf.Tensor:
    """`[batch_size]` or `[batch_size, 1]` (SchemaGen's inferred shape) -> `[batch_size]`."""
    return tf.reshape(tensor, [-1])


def _padded_ids(tokens: tf.RaggedTensor, vocabulary: tf.Tensor, length: int) -> tf.Tensor:
    """Ragged tokens -> `[batch_size, length]` int64 ids, vocabulary index + 1, 0 = padding.

    Out-of-vocabulary tokens are dropped into the padding id, so they contribute nothing.
    """
    ids = tft.apply_vocabulary(tokens.to_sparse(), vocabulary, default_value=-1)
    dense = tf.sparse.to_dense(ids, default_value=-1)[:, :length]
    padding = length - tf.shape(dense)[1]
    dense = tf.pad(dense, [[0, 0], [0, padding]], constant_values=-1) + 1
    return tf.ensure_shape(dense, [None, length])


def _tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    cleaned = tf.strings.regex_replace(tf.strings.lower(text), r"[^a-z0-9 ]", " ")
    return tf.strings.split(cleaned)


def _device_one_hot(device: tf.Tensor) -> tf.Tensor:
    """`[batch_size]` strings -> `[batch_size, len(DEVICE_TYPES) + 1]` float one-hot."""
    known = tf.stack([tf.equal(device, name) for name in F.DEVICE_TYPES], axis=1)
    other = tf.logical_not(tf.reduce_any(known, axis=1, keepdims=True))
    return tf.cast(tf.concat([known, other], axis=1), tf.float32)


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The tf.Transform preprocessing function of the interaction records.

    Args:
        inputs: raw features keyed as in `recs.features.RAW_FEATURE_DTYPES`, each
            `[batch_size]` or `[batch_size, 1]`.

    Returns:
        Transformed features keyed by `recs.features.transformed_name(key)`.
    """
    raw = {key: _flat(value) for key, value in inputs.items()}
    out: dict[str, tf.Tensor] = {}
    for key in _ID_FEATURES:
        out[F.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            raw[key], num_oov_buckets=1, vocab_filename=key)

    titles = tft.vocabulary(raw[F.TITLE_ID], vocab_filename=F.TITLE_ID)
    out[F.transformed_name(F.TITLE_ID)] = tft.apply_vocabulary(raw[F.TITLE_ID], titles,
                                                               num_oov_buckets=1)
    history = tf.strings.split(raw[F.HISTORY], sep="|")
    out[F.transformed_name(F.HISTORY)] = _padded_ids(history, titles, F.MAX_HISTORY)
    out[F.WATCHED] = _padded_ids(history, titles, F.MAX_WATCHED)

    genres = tft.vocabulary(raw[F.GENRE], vocab_filename=F.GENRE_VOCABULARY)
    out[F.transformed_name(F.GENRE)] = tft.apply_vocabulary(raw[F.GENRE], genres,
                                                            num_oov_buckets=1)
    preferred = tf.strings.split(raw[F.PREFERRED_GENRES], sep="|")
    out[F.transformed_name(F.PREFERRED_GENRES)] = _padded_ids(preferred, genres,
                                                              F.MAX_PREFERRED_GENRES)
    out[F.transformed_name(F.GENRE_MATCH)] = F.genre_match(raw[F.PREFERRED_GENRES], raw[F.GENRE])

    tokens = _tokenize(raw[F.DESCRIPTION])
    words = tft.vocabulary(tokens, top_k=F.DESCRIPTION_VOCAB_SIZE,
                           vocab_filename=F.DESCRIPTION_VOCABULARY)
    out[F.transformed_name(F.DESCRIPTION)] = _padded_ids(tokens, words,
                                                         F.MAX_DESCRIPTION_TOKENS)

    out[F.transformed_name(F.AGE)] = tft.bucketize(tf.cast(raw[F.AGE], tf.float32),
                                                   F.AGE_BUCKETS)
    out[F.transformed_name(F.HOUR)] = tf.clip_by_value(raw[F.HOUR], 0, F.HOURS_PER_DAY - 1)
    out[F.transformed_name(F.DEVICE_TYPE)] = _device_one_hot(raw[F.DEVICE_TYPE])
    out[F.transformed_name(F.POPULARITY)] = tft.scale_to_z_score(
        tf.math.log1p(tf.maximum(raw[F.POPULARITY], 0.0)))
    popularity = tf.maximum(raw[F.POPULARITY], 0.0)
    out[F.SAMPLING_PROBABILITY] = tf.clip_by_value(
        popularity / tf.maximum(tft.max(popularity), 1e-9), 1e-6, 1.0)
    out[F.transformed_name(F.RELEASE_YEAR)] = tft.scale_to_z_score(
        tf.cast(raw[F.RELEASE_YEAR], tf.float32))
    out[F.WATCH_TIME_Z] = tft.scale_to_z_score(
        tf.math.log1p(tf.maximum(raw[F.WATCH_SECONDS], 0.0)))
    out[F.transformed_name(F.LABEL)] = raw[F.LABEL]
    return out
