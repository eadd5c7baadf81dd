"""The feature contract: every feature key of the project is named here and only here.

A feature travels: raw log field -> interaction record (transforms/ingestion) -> tf.Example
key (the names below) -> tf.Transform output `transformed_name(key)` -> model input. Serving
signatures take the raw keys, so a client never sees transformed names.
"""

import tensorflow as tf

# Identifiers.
USER_ID = "user_id"
TITLE_ID = "title_id"

# User profile.
AGE = "age"
COUNTRY = "country"
SUBSCRIPTION_TIER = "subscription_tier"
PREFERRED_GENRES = "preferred_genres"  # "|"-joined genre names.

# What the user watched before: "|"-joined title ids played in earlier sessions, most recent
# first, at most MAX_WATCHED. Built from earlier sessions only, so it never holds the play's own
# title or outcome. The towers read the first MAX_HISTORY of them; the item-to-item part of
# retrieval all of them (WATCHED below).
HISTORY = "history"

# Context of the play.
DEVICE_TYPE = "device_type"
HOUR = "hour"  # Hour of day, 0..23, UTC.
TIMESTAMP = "timestamp"  # Unix seconds of the session start.

# Content metadata.
GENRE = "genre"
RELEASE_YEAR = "release_year"
POPULARITY = "popularity"  # Plays per day over the catalogue's history; long-tailed.
DESCRIPTION = "description"
DURATION_SECONDS = "duration_seconds"

# Outcomes of the play: known only after it happened, never model inputs.
WATCH_SECONDS = "watch_seconds"
WATCH_RATIO = "watch_ratio"
LIKED = "liked"
SKIPPED = "skipped"
COMPLETED = "completed"
LABEL = "engaged"

ENGAGED_WATCH_RATIO = 0.5
"""The labelling rule: a play is engaged when watch_ratio >= this, or the title was liked."""

COMPLETED_WATCH_RATIO = 0.9
"""A play this far through the title counts as finished; finished titles are not recommended."""

DEVICE_TYPES = ("tv", "mobile", "tablet", "web")
"""Known device types; anything else is one-hot encoded into a trailing "other" slot."""

MAX_PREFERRED_GENRES = 3
MAX_HISTORY = 30
MAX_WATCHED = 300
MAX_DESCRIPTION_TOKENS = 16
DESCRIPTION_VOCAB_SIZE = 2000
AGE_BUCKETS = 6
HOURS_PER_DAY = 24

GENRE_VOCABULARY = "genre"
DESCRIPTION_VOCABULARY = "description_tokens"

OOV_LAST = "oov_last"
PADDING_FIRST = "padding_first"
EMBEDDING_VOCABULARIES: dict[str, tuple[str, str]] = {
    USER_ID: (USER_ID, OOV_LAST),
    TITLE_ID: (TITLE_ID, OOV_LAST),
    COUNTRY: (COUNTRY, OOV_LAST),
    SUBSCRIPTION_TIER: (SUBSCRIPTION_TIER, OOV_LAST),
    GENRE: (GENRE_VOCABULARY, OOV_LAST),
    HISTORY: (TITLE_ID, PADDING_FIRST),
    PREFERRED_GENRES: (GENRE_VOCABULARY, PADDING_FIRST),
    DESCRIPTION: (DESCRIPTION_VOCABULARY, PADDING_FIRST),
}
"""Feature -> (tf.Transform vocabulary file, row layout) of its embedding table: ids of single
values put the out-of-vocabulary row last, bags of ids put the padding row first. Warm start
remaps rows by these when the vocabularies of two training windows differ."""

QUERY_FEATURES = (USER_ID, AGE, COUNTRY, SUBSCRIPTION_TIER, PREFERRED_GENRES, HISTORY,
                  DEVICE_TYPE, HOUR)
"""Raw features the query tower reads: who asks, what they watched, and in which context."""

CANDIDATE_FEATURES = (TITLE_ID, GENRE, RELEASE_YEAR, POPULARITY, DESCRIPTION)
"""Raw features the candidate tower reads: what a title is."""

RANKER_FEATURES = QUERY_FEATURES + CANDIDATE_FEATURES
"""Raw features the ranker reads for one (user, title, context) triple."""

OUTCOME_FEATURES = (WATCH_SECONDS, WATCH_RATIO, LIKED, SKIPPED, COMPLETED, LABEL)

RAW_FEATURE_DTYPES: dict[str, tf.dtypes.DType] = {
    USER_ID: tf.string,
    AGE: tf.int64,
    COUNTRY: tf.string,
    SUBSCRIPTION_TIER: tf.string,
    PREFERRED_GENRES: tf.string,
    HISTORY: tf.string,
    DEVICE_TYPE: tf.string,
    HOUR: tf.int64,
    TIMESTAMP: tf.int64,
    TITLE_ID: tf.string,
    GENRE: tf.string,
    RELEASE_YEAR: tf.int64,
    POPULARITY: tf.float32,
    DESCRIPTION: tf.string,
    DURATION_SECONDS: tf.int64,
    WATCH_SECONDS: tf.float32,
    WATCH_RATIO: tf.float32,
    LIKED: tf.int64,
    SKIPPED: tf.int64,
    COMPLETED: tf.int64,
    LABEL: tf.int64,
}
"""Every key of an interaction tf.Example, with its dtype. Each holds exactly one value."""


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """Returns the `tf.io.parse_example` spec of an interaction record."""
    return {key: tf.io.FixedLenFeature([], dtype) for key, dtype in RAW_FEATURE_DTYPES.items()}


def serving_input_signature(keys: tuple[str, ...]) -> dict[str, tf.TensorSpec]:
    """Returns the raw-feature input signature of a served model: `[batch_size]` per key."""
    return {key: tf.TensorSpec([None], RAW_FEATURE_DTYPES[key], name=key) for key in keys}


def transformed_name(key: str) -> str:
    """Returns the name tf.Transform gives the transformed form of raw feature `key`."""
    return f"{key}_xf"


GENRE_MATCH = "genre_match"
"""Derived in tf.Transform: 1.0 when the title's genre is among the user's preferred genres."""

DERIVED_FEATURES = (GENRE_MATCH,)
"""Model inputs computed from several raw features; they have no raw key of their own."""

WATCH_TIME_Z = transformed_name(WATCH_SECONDS)
"""z-score of log1p(watch seconds): a training weight for retrieval, never a model input."""

WATCHED = transformed_name("watched")
"""Derived in tf.Transform from HISTORY: ids of all its titles, up to MAX_WATCHED (title
vocabulary index + 1, 0 = padding, as `history`'s). The item-to-item part of retrieval sums
over it (`recs.models.item_item`); on ML-1M (benchmarks/quality_ml1m.py) the towers plus
item-to-item scores reached NDCG@10 0.273 reading the towers' 30 titles, 0.292 reading 300.
Not a tower input."""

SAMPLING_PROBABILITY = "sampling_probability"
"""Derived in tf.Transform: the title's popularity over the most popular title's. In-batch
negatives are drawn in proportion to how often titles are played, which popularity measures up
to a constant factor; the retrieval loss subtracts its log (log-Q correction). A training
signal, never a model input."""
