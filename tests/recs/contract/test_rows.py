"""Profile and title rows: one set of bounds, each tested at its edge, and a refusal that names
every broken field."""

import math

import pytest

from recs.contract import rows as R

PROFILE = {"user_id": "u1", "age": 30, "country": "us", "subscription_tier": "basic",
           "preferred_genres": "drama|comedy"}
TITLE = {"title_id": "t1", "genre": "drama", "release_year": 2020, "popularity": 3.0,
         "description": "a family secret", "duration_seconds": 1000}


def test_valid_rows_pass_and_their_values_come_in_the_stores_order():
    R.check_profile_row(PROFILE)
    R.check_title_row(TITLE)
    assert R.profile_values({**PROFILE, "updated_ts": 5}) == ("u1", 30, "us", "basic",
                                                             "drama|comedy")
    assert R.PROFILE_FIELDS == tuple(PROFILE) and R.TITLE_FIELDS == tuple(TITLE)


@pytest.mark.parametrize("field, value, valid", [
    ("user_id", "u" * 128, True), ("user_id", "u" * 129, False), ("user_id", "", False),
    ("user_id", "u\n1", False), ("user_id", 1, False),
    ("age", 0, True), ("age", 120, True), ("age", -1, False), ("age", 121, False),
    ("age", 150, False), ("age", True, False), ("age", 30.0, False), ("age", "30", False),
    ("country", "", True), ("country", "x" * 64, True), ("country", "x" * 65, False),
    ("country", "u\ts", False), ("country", None, False),
    ("subscription_tier", "x" * 65, False),
    ("preferred_genres", "", True), ("preferred_genres", "g" * 64, True),
    ("preferred_genres", "a|b|c|d", True),  # The towers read 3; a profile update may add one.
    ("preferred_genres", "g" * 65, False), ("preferred_genres", "drama||comedy", False),
    ("preferred_genres", "drama|", False), ("preferred_genres", ["drama"], False),
])
def test_profile_bounds(field, value, valid):
    bad = R.invalid_profile_fields({**PROFILE, field: value})
    assert bad == ([] if valid else [field])


@pytest.mark.parametrize("value, valid", [
    (0, True), (2 ** 62 - 1, True), (-(2 ** 62) + 1, True), (2 ** 62, False), (None, False),
    (True, False), (1.5, False)])
def test_a_profile_updates_time_stamp_is_checked_when_present(value, valid):
    assert R.invalid_profile_fields({**PROFILE, "updated_ts": value}) == (
        [] if valid else ["updated_ts"])


@pytest.mark.parametrize("field, value, valid", [
    ("title_id", "t" * 129, False),
    ("genre", "x" * 64, True), ("genre", "x" * 65, False), ("genre", "", True),
    ("release_year", 1800, True), ("release_year", 3000, True), ("release_year", 1799, False),
    ("release_year", 3001, False), ("release_year", 2020.0, False),
    ("popularity", 0, True), ("popularity", 1e12, True), ("popularity", -0.1, False),
    ("popularity", math.inf, False), ("popularity", math.nan, False),
    ("popularity", False, False),
    ("description", "d" * 4096, True), ("description", "d" * 4097, False),
    ("duration_seconds", 1e-3, True), ("duration_seconds", 1e7, True),
    ("duration_seconds", 0, False), ("duration_seconds", 1e7 + 1, False),
    ("duration_seconds", None, False),
])
def test_title_bounds(field, value, valid):
    bad = R.invalid_title_fields({**TITLE, field: value})
    assert bad == ([] if valid else [field])


def test_missing_fields_are_invalid_in_field_order():
    assert R.invalid_profile_fields({"user_id": "u1"}) == ["age", "country",
                                                           "subscription_tier",
                                                           "preferred_genres"]
    assert R.invalid_title_fields({}) == list(R.TITLE_FIELDS)


def test_a_refused_profile_names_each_field_what_it_must_be_and_what_it_held():
    with pytest.raises(ValueError) as error:
        R.check_profile_row({**PROFILE, "age": 150, "country": ...})
    message = str(error.value)
    assert message.startswith("profile row 'u1': age must be an integer in [0, 120], "
                              "received 150; country must be printable text of at most 64 "
                              "characters")
    assert "received Ellipsis" in message and "Fix the row at its source" in message
    with pytest.raises(ValueError, match="profile row 'u1': subscription_tier must be .* "
                                         "received nothing"):
        R.check_profile_row({key: v for key, v in PROFILE.items()
                             if key != "subscription_tier"})


def test_a_refused_title_names_its_fields():
    with pytest.raises(ValueError, match=r"title row 't1': duration_seconds must be a number "
                                         r"of seconds in \[0.001, 1e\+07\], received 0\. "
                                         r"Fix the row in the catalogue"):
        R.check_title_row({**TITLE, "duration_seconds": 0})


@pytest.mark.parametrize("check", [R.check_profile_row, R.check_title_row, R.profile_values])
def test_a_row_that_is_not_an_object_is_refused(check):
    with pytest.raises(ValueError, match="row must be a JSON object; received list"):
        check(["u1", 30])
