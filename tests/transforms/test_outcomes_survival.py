"""The outcome job's survival fields and daily rows (what `recs abtest` reads for Kaplan-Meier
retention and for its sequential looks), on hand-made logs (DirectRunner).

Days are January 2026 day numbers; the window is [10, 16] (experiment days 1 to 7), the return
horizon 2 days.
"""

import json
import pathlib

import pytest
import tensorflow as tf

from recs import features as F
from recs.contract import outcomes as O
from recs.features import to_example
from transforms.outcomes import OutcomesConfig, daily_outcomes, run_outcomes, user_outcome

EXPERIMENT = "ranker-v2"
START, END = "2026-01-10", "2026-01-16"
JAN1 = 1_767_225_600  # 2026-01-01 00:00:00 UTC.
_BLANK = {key: "" if kind == F.STRING else 0 for key, kind in F.RAW_FEATURE_TYPES.items()}


def _day(day: int) -> int:
    """January `day` as an ordinal, as the job counts days."""
    import datetime as dt

    return dt.date(2026, 1, day).toordinal()


def _served(user: str, titles: list[str], arm: str) -> str:
    return json.dumps({"ts": 1.0e9, "request_id": f"r-{user}", "user_id": user,
                       "device_type": "tv", "hour": 20, "k": len(titles), "fallback": None,
                       "policy": "models", "model_versions": {"ranker": 3},
                       "routes": {"ranker": "ranker@stable"}, "experiments": {EXPERIMENT: arm},
                       "items": [{"title_id": t, "score": 0.5, "position": i,
                                  "propensity": 1.0, "explored": False}
                                 for i, t in enumerate(titles)]})


def _decision(user: str, day: int, event: str) -> str:
    return json.dumps({"user_id": user, "ts": JAN1 + (day - 1) * 86_400 + 86_399,
                       "event": event})


def _record(user: str, title: str, day: int, watch: float, engaged: int) -> bytes:
    return to_example({**_BLANK, F.USER_ID: user, F.TITLE_ID: title,
                       F.TIMESTAMP: JAN1 + (day - 1) * 86_400 + 12 * 3600,
                       F.WATCH_SECONDS: watch, F.LABEL: engaged})


SERVED = {
    10: [_served("a1", ["t1"], "control"), _served("a2", ["t2"], "control"),
         _served("b3", ["t1"], "treatment")],
    11: [_served("b2", ["t1"], "treatment")],
    12: [_served("b1", ["t2"], "treatment")],
    14: [_served("b3", ["t2"], "control")],       # b3 changes arm on day 14.
}
RECORDS = {
    11: [_record("a1", "t1", 11, 100.0, 1)],
    12: [_record("a2", "t2", 12, 40.0, 0)],
}
SUBSCRIPTIONS = {
    11: [_decision("b1", 11, "cancelled"),        # Before b1's exposure (day 12): not churn.
         _decision("b2", 11, "cancelled")],       # On b2's exposure day: churned, 0 days.
    12: [_decision("a2", 12, "renewed"),
         '{"user_id": "a2", "ts": ',              # malformed_json
         json.dumps({"user_id": "a2", "ts": 1, "event": "paused"})],  # unknown event
    13: [_decision("a1", 13, "cancelled")],       # Day 3 after a1's exposure: churned, 3 days.
    15: [_decision("a1", 15, "cancelled")],       # A later cancellation: the first counts.
}

FINAL = {  # user: (days_observed, churned)
    "a1": (3, 1),   # 13 - 10.
    "a2": (6, 0),   # Still subscribed: censored at the end, 16 - 10.
    "b1": (4, 0),   # Its cancellation on day 11 precedes its exposure: censored, 16 - 12.
    "b2": (0, 1),   # Cancelled on its exposure day, 11 - 11.
}                   # b3 (two arms) is dead-lettered.


def _write(folder: pathlib.Path, day: int, name: str, lines: list[str]) -> None:
    path = folder / f"day=2026-01-{day:02d}" / name
    path.parent.mkdir(parents=True)
    path.write_text("".join(line + "\n" for line in lines))


def _write_logs(root: pathlib.Path) -> None:
    for day, lines in SERVED.items():
        _write(root / "served", day, "part-0.jsonl", lines)
    for day, lines in SUBSCRIPTIONS.items():
        _write(root / "subscriptions", day, "part-0.jsonl", lines)
    for day, records in RECORDS.items():
        path = root / "examples" / f"day=2026-01-{day:02d}" / "part-0.tfrecord.gz"
        path.parent.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for record in records:
                writer.write(record)


def _read(path: str | pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def _arguments(root: pathlib.Path, out: pathlib.Path, end: str = END) -> list[str]:
    return ["outcomes", "--served", str(root / "served"), "--examples", str(root / "examples"),
            "--subscriptions", str(root / "subscriptions"), "--experiment", EXPERIMENT,
            "--start", START, "--end", end, "--return-horizon-days", "2",
            "--out", str(out)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`recs outcomes --daily` on the logs above: (logs root, rows path, written report)."""
    from recs_cli.main import main

    root = tmp_path_factory.mktemp("survival")
    _write_logs(root)
    out = root / "out" / "rows.jsonl"
    assert main([*_arguments(root, out), "--daily"]) == 0
    return root, out, json.loads((root / "out" / "rows.report.json").read_text())


def test_churned_users_count_days_to_their_first_cancellation_and_the_rest_are_censored(run):
    _, out, _ = run
    rows = {row["user_id"]: row for row in _read(out)}
    assert {user: (row["days_observed"], row["churned"]) for user, row in rows.items()} == FINAL
    # `renewed` keeps its own rule: a2's renewal on day 12 (after its exposure day) counts;
    # b2's cancellation on its exposure day does not.
    assert rows["a2"]["renewed"] == 1 and rows["b2"]["renewed"] is None
    assert list(rows["a1"]) == list(O.FIELDS)


def test_daily_rows_are_the_rows_as_they_stood_each_day(run):
    _, out, report = run
    daily = _read(str(out).replace(".jsonl", ".daily.jsonl"))
    by_key = {(row["user_id"], row["experiment_day"]): row for row in daily}
    # a1, exposed on day 10 (experiment day 1), cancelled on day 13 (experiment day 4):
    # observed 0, 1, 2 days, then churned after 3 from day 13 on. Returned (horizon 2 days)
    # is null until day 12 ends it; a1 was active on day 11. Watch: day 11's 100 s.
    assert [(by_key["a1", d]["days_observed"], by_key["a1", d]["churned"],
             by_key["a1", d]["returned"], by_key["a1", d]["watch_seconds"])
            for d in range(1, 8)] == [(0, 0, None, 0.0), (1, 0, None, 100.0),
                                      (2, 0, 1, 100.0), (3, 1, 1, 100.0), (3, 1, 1, 100.0),
                                      (3, 1, 1, 100.0), (3, 1, 1, 100.0)]
    assert by_key["a1", 4]["as_of_day"] == "2026-01-13"
    # b1 has rows from its exposure (day 12 = experiment day 3); b3 while it had one arm
    # (days 10 to 13), none once its lists named two.
    assert sorted(d for u, d in by_key if u == "b1") == [3, 4, 5, 6, 7]
    assert sorted(d for u, d in by_key if u == "b3") == [1, 2, 3, 4]
    assert {by_key["b3", d]["arm"] for d in range(1, 5)} == {"treatment"}
    # a1 7, a2 7, b3 4, b1 5 and b2 6 (from day 11, experiment day 2).
    assert len(daily) == report["daily_rows"] == 29
    assert list(daily[0]) == list(O.DAILY_FIELDS)
    # The last day's rows are the final rows.
    assert {row["user_id"]: {k: v for k, v in row.items() if k not in (
        O.AS_OF_DAY, O.EXPERIMENT_DAY)} for row in daily if row["experiment_day"] == 7} == {
        row["user_id"]: row for row in _read(out)}


def test_a_days_rows_equal_those_of_a_run_ending_that_day(run, tmp_path):
    from recs_cli.main import main

    root, out, _ = run
    daily = _read(str(out).replace(".jsonl", ".daily.jsonl"))
    short = tmp_path / "to-13.jsonl"
    assert main(_arguments(root, short, end="2026-01-13")) == 0
    as_of = {row["user_id"]: {k: v for k, v in row.items()
                              if k not in (O.AS_OF_DAY, O.EXPERIMENT_DAY)}
             for row in daily if row["as_of_day"] == "2026-01-13"}
    assert as_of == {row["user_id"]: row for row in _read(short)}
    assert set(as_of) == {"a1", "a2", "b1", "b2", "b3"}  # b3 still has one arm on day 13.


def test_malformed_decisions_are_dead_lettered_and_counted(run):
    _, _, report = run
    assert report["dead_lettered_by_input"] == {
        "served": {"arm_changed": 1},
        "subscriptions": {"malformed_json": 1, "unknown_subscription_event": 1}}
    assert report["daily_path"].endswith("out/rows.daily.jsonl")


def test_user_outcome_cuts_every_input_at_as_of_and_needs_decisions_for_survival(tmp_path):
    config = OutcomesConfig(served_path="-", examples_dir="-", output_path="rows.jsonl",
                            experiment=EXPERIMENT, start_day=START, end_day=END,
                            return_horizon_days=2)
    served = [(_day(10), "control", ("t1",), 0, 1), (_day(15), "control", ("t2",), 0, 2)]
    records = [(_day(11), "t1", 60.0, 1), (_day(15), "t2", 30.0, 1)]
    decisions = [(_day(14), 0, 0, 1, 0)]  # Cancelled on day 14.
    on_12 = user_outcome(config, served, records, decisions, as_of=_day(12))
    # Day 15's list and record are after day 12; the cancellation too: censored, 2 days.
    assert (on_12["lists_served"], on_12["watch_seconds"], on_12["days_observed"],
            on_12["churned"], on_12["returned"]) == (1, 60.0, 2, 0, 1)
    final = user_outcome(config, served, records, decisions)
    assert (final["lists_served"], final["watch_seconds"], final["days_observed"],
            final["churned"]) == (2, 90.0, 4, 1)
    # Without a subscriptions input nothing says who left: both fields are null.
    blind = user_outcome(config, served, records, None)
    assert blind["days_observed"] is None and blind["churned"] is None
    # Before the first exposure there is no row.
    assert user_outcome(config, served, records, decisions, as_of=_day(9)) is None
    assert [row["experiment_day"] for row in daily_outcomes(config, served, records, None)] == [
        1, 2, 3, 4, 5, 6, 7]


def test_config_refuses_a_daily_flag_that_is_not_a_bool():
    with pytest.raises(ValueError, match="daily must be True or False; received 'yes'"):
        OutcomesConfig(served_path="s", examples_dir="e", output_path="rows.jsonl",
                       experiment=EXPERIMENT, start_day=START, end_day=END, daily="yes")
