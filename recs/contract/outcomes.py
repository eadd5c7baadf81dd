"""The outcome row: one JSON line per user exposed to an A/B test, and its daily variant.

    transforms.outcomes (`recs outcomes`) --> <output>.jsonl         the rows at the window's end
                                          --> <output>.daily.jsonl   the rows as they stood at
                                                                     each day (`--daily`)
      --> monitoring.abtest (`recs abtest`; `--sequential` reads the daily file)
      --> benchmarks/retention_ab.py

A row's fields (`FIELDS`, in the order written; how each is computed is
`transforms.outcomes`'):

    user_id, arm, first_exposure_day (ISO date)
    lists_served, titles_served, engaged (0/1), served_engaged
    watch_seconds, pre_watch_seconds (the CUPED covariate)
    returned (0/1, null while the return horizon is open), renewed (0/1 or null)
    days_observed, churned    survival: days from the first exposure to the first
                              cancellation (churned 1) or to the end of the data (censored,
                              churned 0); both null without subscription decisions

A daily row is a row as a run with `end_day` = its day would have written it, with two fields
after `user_id` (`DAILY_FIELDS`): `as_of_day` (ISO date) and `experiment_day` (1 = the
window's first day). A user has a daily row for every day from their first exposure on.

Standard library only.
"""

from collections.abc import Iterable, Mapping
from typing import Any

USER_ID, ARM, FIRST_EXPOSURE_DAY, LISTS_SERVED, TITLES_SERVED = (
    "user_id", "arm", "first_exposure_day", "lists_served", "titles_served")
ENGAGED, SERVED_ENGAGED, WATCH_SECONDS, PRE_WATCH_SECONDS, RETURNED, RENEWED = (
    "engaged", "served_engaged", "watch_seconds", "pre_watch_seconds", "returned", "renewed")
DAYS_OBSERVED, CHURNED = "days_observed", "churned"
"""Survival: days observed until the churn or the censoring, and 1 churned / 0 censored."""
FIELDS = (USER_ID, ARM, FIRST_EXPOSURE_DAY, LISTS_SERVED, TITLES_SERVED, ENGAGED,
          SERVED_ENGAGED, WATCH_SECONDS, PRE_WATCH_SECONDS, RETURNED, RENEWED, DAYS_OBSERVED,
          CHURNED)
"""A row's fields, in the order they are written."""
AS_OF_DAY, EXPERIMENT_DAY = "as_of_day", "experiment_day"
DAILY_FIELDS = (USER_ID, AS_OF_DAY, EXPERIMENT_DAY, *FIELDS[1:])
"""A daily row's fields, in the order they are written."""
DAILY_SUFFIX = ".daily.jsonl"


def daily_path(output_path: str) -> str:
    """Where the daily rows of a run writing `output_path` go: `rows.jsonl` ->
    `rows.daily.jsonl`."""
    base = output_path[:-len(".jsonl")] if output_path.endswith(".jsonl") else output_path
    return f"{base}{DAILY_SUFFIX}"


def has_survival(row: Mapping[str, Any]) -> bool:
    """True when the row carries survival fields (its job read subscription decisions)."""
    return row.get(DAYS_OBSERVED) is not None and row.get(CHURNED) is not None


def rows_by_day(rows: Iterable[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Daily rows grouped by `experiment_day`: `[days]`, day 1 first, up to the last day
    any row has; a day without rows is an empty list.

    Raises:
        ValueError: a row without a positive integer `experiment_day` (not a daily row), or
            no rows at all.
    """
    by_day: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        day = row.get(EXPERIMENT_DAY)
        if type(day) is not int or day < 1:
            raise ValueError(
                f"rows must be daily outcome rows, each with an integer {EXPERIMENT_DAY} >= 1 "
                f"(recs outcomes --daily writes them to <output>{DAILY_SUFFIX}); received a "
                f"row with {EXPERIMENT_DAY}={day!r} (user {row.get(USER_ID)!r}).")
        by_day.setdefault(day, []).append(row)
    if not by_day:
        raise ValueError("rows must hold at least one daily outcome row; received none.")
    return [by_day.get(day, []) for day in range(1, max(by_day) + 1)]
