"""The outcome row's contract: the daily rows' file beside the rows, and their grouping by
experiment day for the sequential looks."""

import pytest

from recs.contract import outcomes as O


def test_the_daily_rows_go_beside_the_rows():
    assert O.daily_path("out/ranker-v2.jsonl") == "out/ranker-v2.daily.jsonl"
    assert O.daily_path("out/rows") == "out/rows.daily.jsonl"


def test_daily_rows_group_by_experiment_day_with_empty_days_kept():
    rows = [{"user_id": "a", "experiment_day": 2}, {"user_id": "b", "experiment_day": 4},
            {"user_id": "a", "experiment_day": 4}]
    # Day 1 and day 3 have no rows; day 4 is the last any row has.
    assert O.rows_by_day(rows) == [[], [rows[0]], [], [rows[1], rows[2]]]


@pytest.mark.parametrize("rows, message", [
    ([{"user_id": "a", "arm": "control"}], "with experiment_day=None"),
    ([{"user_id": "a", "experiment_day": 0}], "with experiment_day=0"),
    ([{"user_id": "a", "experiment_day": True}], "with experiment_day=True"),
    ([{"user_id": "a", "experiment_day": "2"}], "with experiment_day='2'"),
    ([], "at least one daily outcome row"),
])
def test_rows_that_are_not_daily_rows_are_refused(rows, message):
    with pytest.raises(ValueError, match=message):
        O.rows_by_day(rows)


def test_survival_needs_both_fields():
    assert O.has_survival({"days_observed": 0, "churned": 1})
    assert not O.has_survival({"days_observed": 3, "churned": None})
    assert not O.has_survival({"churned": 0})
