"""Profile and catalogue rows: one set of rules for every part that reads them.

A profile row is one line of `users.jsonl` (or of a profile update, which adds `updated_ts`),
a row of the online profile store, and, with its genres joined by "|", a new user's profile in
a recommendation request. A title row is one line of `titles.jsonl`. Ingestion refuses a row
that breaks these rules (a dead letter, `invalid_profile` / `invalid_title`), the store and
the service refuse it with a `ValueError`, and the consumer reads title durations by them.

Rules (fields not listed are not read and not checked; printable text holds no control
character, `TEXT_PATTERN`):

    user_id, title_id     an id: 1 to MAX_ID_CHARS printable characters (the event rule)
    age                   an integer (not a bool) in [MIN_AGE, MAX_AGE]
    country, subscription_tier, genre
                          printable text of at most MAX_LABEL_CHARS characters; "" = unknown
    preferred_genres      genre names joined by "|", each 1 to MAX_LABEL_CHARS printable
                          characters; "" = none. The towers read the first
                          MAX_PREFERRED_GENRES; more are allowed (a profile update may add one)
    description           printable text of at most MAX_TEXT_CHARS characters
    release_year          an integer in [MIN_RELEASE_YEAR, MAX_RELEASE_YEAR]
    popularity            a finite number in [0, MAX_POPULARITY]
    duration_seconds      a finite number in [MIN_DURATION_SECONDS, MAX_DURATION_SECONDS]
    updated_ts            (profile updates) an integer of Unix seconds, |ts| < 2**62

The bounds: MAX_AGE 120 is the service's published one (its OpenAPI document); the label
bound, 64 characters, is the service's too (a country, a tier or a genre is a short name); free
text (a description) keeps ingestion's 4,096.

Standard library only: the service and the consumer check rows without TensorFlow.
"""

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from recs.contract import features as F
from recs.contract.events import MAX_ID_CHARS, valid_id

MIN_AGE, MAX_AGE = 0, 120
MAX_LABEL_CHARS = 64
MAX_TEXT_CHARS = 4096
MIN_RELEASE_YEAR, MAX_RELEASE_YEAR = 1800, 3000
MAX_POPULARITY = 1e12
MIN_DURATION_SECONDS, MAX_DURATION_SECONDS = 1e-3, 1e7
UPDATED_TS = "updated_ts"
"""In a profile update: when it took effect (Unix seconds); sessions join the version then in
force."""
MAX_ABS_UPDATED_TS = 2 ** 62
GENRE_SEPARATOR = "|"
TEXT_PATTERN = r"^[^\u0000-\u001F\u007F-\u009F]*$"
"""Printable text, as a regular expression that Python, JSON Schema (ECMA-262) and the
service's validator read alike: no control character (Unicode category Cc)."""
_CONTROL = re.compile(r"[\u0000-\u001F\u007F-\u009F]")

PROFILE_FIELDS = (F.USER_ID, F.AGE, F.COUNTRY, F.SUBSCRIPTION_TIER, F.PREFERRED_GENRES)
"""A profile row's fields, the store's columns in order."""
TITLE_FIELDS = (F.TITLE_ID, F.GENRE, F.RELEASE_YEAR, F.POPULARITY, F.DESCRIPTION,
                F.DURATION_SECONDS)
"""A title row's fields."""


def _text(limit: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= limit and not _CONTROL.search(v)


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and low <= v <= high


def _number_in(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: (type(v) in (int, float) and math.isfinite(v) and low <= v <= high)


def _genres(value: Any) -> bool:
    if not _text(MAX_TEXT_CHARS)(value):
        return False
    return value == "" or all(0 < len(name) <= MAX_LABEL_CHARS
                              for name in value.split(GENRE_SEPARATOR))


def _id(value: Any) -> bool:
    return isinstance(value, str) and valid_id(value)


_Rules = dict[str, tuple[Callable[[Any], bool], str]]
"""field -> (check, what it expects, for messages)."""

_ID = f"an id of 1 to {MAX_ID_CHARS} printable characters"
_LABEL = f"printable text of at most {MAX_LABEL_CHARS} characters (\"\" = unknown)"
PROFILE_RULES: _Rules = {
    F.USER_ID: (_id, _ID),
    F.AGE: (_int_in(MIN_AGE, MAX_AGE), f"an integer in [{MIN_AGE}, {MAX_AGE}]"),
    F.COUNTRY: (_text(MAX_LABEL_CHARS), _LABEL),
    F.SUBSCRIPTION_TIER: (_text(MAX_LABEL_CHARS), _LABEL),
    F.PREFERRED_GENRES: (_genres, f"genre names of 1 to {MAX_LABEL_CHARS} printable "
                                  f"characters joined by {GENRE_SEPARATOR!r} (\"\" = none)"),
}
TITLE_RULES: _Rules = {
    F.TITLE_ID: (_id, _ID),
    F.GENRE: (_text(MAX_LABEL_CHARS), _LABEL),
    F.RELEASE_YEAR: (_int_in(MIN_RELEASE_YEAR, MAX_RELEASE_YEAR),
                     f"an integer in [{MIN_RELEASE_YEAR}, {MAX_RELEASE_YEAR}]"),
    F.POPULARITY: (_number_in(0.0, MAX_POPULARITY), f"a number in [0, {MAX_POPULARITY:g}]"),
    F.DESCRIPTION: (_text(MAX_TEXT_CHARS),
                    f"printable text of at most {MAX_TEXT_CHARS} characters"),
    F.DURATION_SECONDS: (_number_in(MIN_DURATION_SECONDS, MAX_DURATION_SECONDS),
                         f"a number of seconds in [{MIN_DURATION_SECONDS:g}, "
                         f"{MAX_DURATION_SECONDS:g}]"),
}
_UPDATED_TS_RULE = (lambda v: type(v) is int and abs(v) < MAX_ABS_UPDATED_TS,
                    "an integer of Unix seconds")


def _invalid(row: Mapping[str, Any], rules: _Rules) -> list[str]:
    return [field for field, (check, _) in rules.items() if not check(row.get(field))]


def invalid_profile_fields(row: Mapping[str, Any]) -> list[str]:
    """The fields of a profile row (or profile update) that are missing or break their rule,
    in `PROFILE_FIELDS` order, `updated_ts` last; [] for a valid row."""
    bad = _invalid(row, PROFILE_RULES)
    if UPDATED_TS in row and not _UPDATED_TS_RULE[0](row[UPDATED_TS]):
        bad.append(UPDATED_TS)
    return bad


def invalid_title_fields(row: Mapping[str, Any]) -> list[str]:
    """The fields of a title row that are missing or break their rule, in `TITLE_FIELDS`
    order; [] for a valid row."""
    return _invalid(row, TITLE_RULES)


def _check(kind: str, key: str, row: Mapping[str, Any],
           invalid: Callable[[Mapping[str, Any]], list[str]], fix: str) -> None:
    if not isinstance(row, Mapping):
        raise ValueError(f"a {kind} row must be a JSON object; received "
                         f"{type(row).__name__}.")
    bad = invalid(row)
    if bad:
        rules = {**PROFILE_RULES, **TITLE_RULES, UPDATED_TS: _UPDATED_TS_RULE}
        problems = "; ".join(
            f"{field} must be {rules[field][1]}, received "
            f"{repr(row[field])[:80] if field in row else 'nothing'}" for field in bad)
        raise ValueError(f"{kind} row {row.get(key)!r}: {problems}. {fix}")


def check_profile_row(row: Mapping[str, Any]) -> None:
    """Validates a profile row (or profile update).

    Raises:
        ValueError: not an object, or fields missing or breaking their rules; the message
            names each field, what it must be and what it held.
    """
    _check("profile", F.USER_ID, row, invalid_profile_fields,
           "Fix the row at its source (users.jsonl, a profile update, or the request's "
           "profile).")


def check_title_row(row: Mapping[str, Any]) -> None:
    """Validates a title row.

    Raises:
        ValueError: not an object, or fields missing or breaking their rules; the message
            names each field, what it must be and what it held.
    """
    _check("title", F.TITLE_ID, row, invalid_title_fields,
           "Fix the row in the catalogue (titles.jsonl).")


def profile_values(row: Mapping[str, Any]) -> tuple[str, int, str, str, str]:
    """A valid profile row's stored values, in `PROFILE_FIELDS` order.

    Raises:
        ValueError: the row breaks the rules (`check_profile_row`).
    """
    check_profile_row(row)
    return tuple(row[field] for field in PROFILE_FIELDS)  # type: ignore[return-value]


__all__ = ["GENRE_SEPARATOR", "MAX_AGE", "MAX_DURATION_SECONDS", "MAX_LABEL_CHARS",
           "MAX_POPULARITY", "MAX_RELEASE_YEAR", "MAX_TEXT_CHARS", "MIN_AGE",
           "MIN_DURATION_SECONDS", "MIN_RELEASE_YEAR", "PROFILE_FIELDS", "PROFILE_RULES",
           "TEXT_PATTERN", "TITLE_FIELDS", "TITLE_RULES", "UPDATED_TS", "check_profile_row", "check_title_row",
           "invalid_profile_fields", "invalid_title_fields", "profile_values"]
