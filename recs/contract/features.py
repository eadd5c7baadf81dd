"""The feature contract: every feature key of the project is named here and only here.

A feature travels: raw log field -> interaction record (transforms/ingestion) -> tf.Example
key (the names below) -> tf.Transform output `transformed_name(key)` -> model input. Serving
signatures take the raw keys, so a client never sees transformed names.

Constants only, no TensorFlow: the service and the event consumer import this module without
loading the ML stack. `recs.features` adds the TensorFlow specs built from it.
"""

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

STRING, INT64, FLOAT32 = "string", "int64", "float32"
RAW_FEATURE_TYPES: dict[str, str] = {
    USER_ID: STRING,
    AGE: INT64,
    COUNTRY: STRING,
    SUBSCRIPTION_TIER: STRING,
    PREFERRED_GENRES: STRING,
    HISTORY: STRING,
    DEVICE_TYPE: STRING,
    HOUR: INT64,
    TIMESTAMP: INT64,
    TITLE_ID: STRING,
    GENRE: STRING,
    RELEASE_YEAR: INT64,
    POPULARITY: FLOAT32,
    DESCRIPTION: STRING,
    DURATION_SECONDS: INT64,
    WATCH_SECONDS: FLOAT32,
    WATCH_RATIO: FLOAT32,
    LIKED: INT64,
    SKIPPED: INT64,
    COMPLETED: INT64,
    LABEL: INT64,
}
"""Every key of an interaction tf.Example, with its dtype's name (a `tf.dtypes.DType` name and
a NumPy dtype name alike). Each holds exactly one value."""


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
over it (`recs.models.item_item`). Not a tower input."""

CANDIDATE_TRANSFORMED = tuple(transformed_name(key) for key in CANDIDATE_FEATURES)
"""Transformed features that depend on the title alone: computed once per catalogue title."""

CROSS_TRANSFORMED = (transformed_name(GENRE_MATCH),)
"""Transformed features of a (user, title) pair: recomputed for each candidate."""

SAMPLING_PROBABILITY = "sampling_probability"
"""Derived in tf.Transform: the title's popularity over the most popular title's. In-batch
negatives are drawn in proportion to how often titles are played, which popularity measures up
to a constant factor; the retrieval loss subtracts its log (log-Q correction). A training
signal, never a model input."""
