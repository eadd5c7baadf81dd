"""preprocessing_fn run for real through tf.Transform on the DirectRunner."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from recs import features as F
from transforms.preprocessing import preprocessing_fn


def _row(user: str, title: str, genre: str, prefs: str, device: str, age: int,
         watch: float, popularity: float, year: int, description: str, label: int,
         history: str = "") -> dict:
    return {
        F.USER_ID: user, F.AGE: age, F.COUNTRY: "us", F.SUBSCRIPTION_TIER: "basic",
        F.PREFERRED_GENRES: prefs, F.HISTORY: history, F.DEVICE_TYPE: device, F.HOUR: 21,
        F.TIMESTAMP: 0,
        F.TITLE_ID: title, F.GENRE: genre, F.RELEASE_YEAR: year, F.POPULARITY: popularity,
        F.DESCRIPTION: description, F.DURATION_SECONDS: 3600, F.WATCH_SECONDS: watch,
        F.WATCH_RATIO: watch / 3600, F.LIKED: 0, F.SKIPPED: 0, F.COMPLETED: 0, F.LABEL: label,
    }


ROWS = [
    # user "a" twice, so it gets vocabulary index 0 (most frequent first).
    _row("a", "t1", "drama", "drama|comedy", "tv", 20, np.e - 1, np.e - 1, 2000,
         "Space robots, space!", 1),
    _row("a", "t2", "comedy", "comedy", "mobile", 40, np.e ** 3 - 1, np.e ** 3 - 1, 2010,
         "robots in love", 0, history="t1"),
    _row("b", "t1", "drama", "unknowngenre|comedy", "fridge", 60, np.e ** 2 - 1,
         np.e ** 2 - 1, 2020, "love", 1, history="t2|t9|t1"),
]


@pytest.fixture(scope="module")
def transformed() -> list[dict]:
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(F.raw_feature_spec()))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (result, _), _ = ((ROWS, metadata)
                          | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
    return result


def test_vocabulary_ids_follow_frequency(transformed):
    users = [row[F.transformed_name(F.USER_ID)] for row in transformed]
    assert users == [0, 0, 1]  # "a" twice -> 0, "b" -> 1.
    titles = [row[F.transformed_name(F.TITLE_ID)] for row in transformed]
    assert titles == [0, 1, 0]  # "t1" twice -> 0.


def test_history_is_padded_title_ids(transformed):
    history = [list(row[F.transformed_name(F.HISTORY)]) for row in transformed]
    # Title vocabulary: t1 -> 0, t2 -> 1; ids are shifted by one; unknown t9 -> 0 (padding).
    assert history[0] == [0] * F.MAX_HISTORY
    assert history[1][:2] == [1, 0]
    assert history[2][:4] == [2, 0, 1, 0]
    assert all(len(row) == F.MAX_HISTORY for row in history)
    # The item-to-item part's copy: the same ids, MAX_WATCHED wide.
    watched = [list(row[F.WATCHED]) for row in transformed]
    assert [row[:F.MAX_HISTORY] for row in watched] == history
    assert all(len(row) == F.MAX_WATCHED and not any(row[F.MAX_HISTORY:]) for row in watched)


def test_watched_keeps_a_long_history_that_history_cuts():
    long = "|".join(f"t{i}" for i in range(F.MAX_HISTORY + 20))
    rows = [dict(ROWS[0], **{F.TITLE_ID: f"t{i}", F.HISTORY: long})
            for i in range(F.MAX_HISTORY + 20)]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(F.raw_feature_spec()))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (result, _), _ = ((rows, metadata)
                          | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
    # Every title is played once, so each history token has an id (index + 1 > 0).
    assert all((row[F.transformed_name(F.HISTORY)] > 0).sum() == F.MAX_HISTORY
               for row in result)
    assert all((row[F.WATCHED] > 0).sum() == F.MAX_HISTORY + 20 for row in result)


def test_sampling_probability_is_popularity_over_the_maximum(transformed):
    # Popularity e-1, e^3-1, e^2-1: the maximum is e^3-1.
    probability = [row[F.SAMPLING_PROBABILITY] for row in transformed]
    np.testing.assert_allclose(probability, np.array([np.e - 1, np.e ** 3 - 1, np.e ** 2 - 1])
                               / (np.e ** 3 - 1), rtol=1e-5)


def test_watch_time_is_z_scored_log(transformed):
    # log1p(watch) = 1, 3, 2 -> mean 2, population std sqrt(2/3).
    z = [row[F.WATCH_TIME_Z] for row in transformed]
    np.testing.assert_allclose(z, np.array([-1, 1, 0]) / np.sqrt(2 / 3), rtol=1e-5)


def test_device_one_hot_has_other_slot(transformed):
    one_hot = np.stack([row[F.transformed_name(F.DEVICE_TYPE)] for row in transformed])
    # tv, mobile, tablet, web, other
    np.testing.assert_array_equal(one_hot, [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1]])


def test_preferred_genres_are_padded_genre_ids(transformed):
    prefs = [list(row[F.transformed_name(F.PREFERRED_GENRES)]) for row in transformed]
    # Genre vocabulary by frequency: drama (2) -> 0, comedy (1) -> 1; ids are shifted by one.
    assert prefs == [[1, 2, 0], [2, 0, 0], [0, 2, 0]]  # unknown genre -> 0, like padding.


def test_description_tokens_are_lowercased_and_padded(transformed):
    tokens = [list(row[F.transformed_name(F.DESCRIPTION)]) for row in transformed]
    # Counts: space 2, robots 2, love 2, in 1. Ties break by reverse token order, so
    # space=0, robots=1, love=2, in=3; ids are shifted by one, 0 pads.
    assert tokens[0][:4] == [1, 2, 1, 0]  # "Space robots, space!"
    assert tokens[1][:4] == [2, 4, 3, 0]  # "robots in love"
    assert tokens[2] == [3] + [0] * (F.MAX_DESCRIPTION_TOKENS - 1)  # "love"
    assert all(len(row) == F.MAX_DESCRIPTION_TOKENS for row in tokens)


def test_label_passes_through(transformed):
    assert [row[F.transformed_name(F.LABEL)] for row in transformed] == [1, 0, 1]


def test_genre_match_compares_genre_with_preferences(transformed):
    # drama in drama|comedy; comedy in comedy; drama not in unknowngenre|comedy.
    matches = [row[F.transformed_name(F.GENRE_MATCH)] for row in transformed]
    assert matches == [1.0, 1.0, 0.0]
