"""The experiment-outcome job on hand-made logs (DirectRunner): every field of the rows, the
dead letters and the report, the CLI, and `recs abtest` reading what it writes.

Days are January 2026 day numbers; the window is [10, 20], so the pre-period is [3, 10), and
with the default one day of delivery slack the example partitions read are [2, 21].
"""

import json
import pathlib

import pytest
import tensorflow as tf

from recs import features as F
from recs.features import to_example
from transforms.outcomes import OutcomesConfig, run_outcomes

EXPERIMENT = "ranker-v2"
START, END = "2026-01-10", "2026-01-20"
JAN1 = 1_767_225_600  # 2026-01-01 00:00:00 UTC.
_BLANK = {key: "" if kind == F.STRING else 0 for key, kind in F.RAW_FEATURE_TYPES.items()}


def _ts(day: int, hour: int = 12) -> int:
    return JAN1 + (day - 1) * 86_400 + hour * 3600


def _served(user: str, titles: list[str], arm: str = "", other: bool = False,
            score: float = 0.5) -> str:
    experiments = {EXPERIMENT: arm} if arm else ({"other-test": "b"} if other else {})
    # `ts` is the server's wall clock, deliberately nowhere near the partition's day.
    return json.dumps({"ts": 1.0e9, "request_id": f"r-{user}", "user_id": user,
                       "device_type": "tv", "hour": 20, "k": len(titles), "fallback": False,
                       "model_versions": {"ranker": 3}, "experiments": experiments,
                       "items": [{"title_id": title, "score": score, "position": i,
                                  "propensity": 1.0, "explored": False}
                                 for i, title in enumerate(titles)],
                       "routes": {"ranker": "ranker@stable"}, "policy": "models"})


def _decision(user: str, day: int, event: str) -> str:
    return json.dumps({"user_id": user, "ts": _ts(day), "event": event})


def _record(user: str, title: str, day: int, watch: float, engaged: int, hour: int = 12
            ) -> bytes:
    return to_example({**_BLANK, F.USER_ID: user, F.TITLE_ID: title,
                       F.TIMESTAMP: _ts(day, hour), F.WATCH_SECONDS: watch, F.LABEL: engaged})


def _write_lines(folder: pathlib.Path, day: int, lines: list[str | bytes]) -> None:
    path = folder / f"day=2026-01-{day:02d}" / "part-0.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n"
                              for line in lines))


def _write_records(folder: pathlib.Path, day: int, records: list[bytes]) -> None:
    path = folder / f"day=2026-01-{day:02d}" / "interactions-00000.tfrecord.gz"
    path.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for record in records:
            writer.write(record)


def _missing_label() -> bytes:
    example = tf.train.Example.FromString(_record("u3", "t1", 12, 1.0, 1))
    del example.features.feature[F.LABEL]
    return example.SerializeToString()


SERVED = {
    9: [_served("u6", ["t1"], "control")],        # Before the window: never read.
    10: [_served("u1", ["t1", "t2"], "control", score=float("nan")),  # NaN: still read.
         _served("u5", ["t1"], "control"),
         b"\xff\xfe not utf-8",                                        # undecodable_bytes
         '{"user_id": "u9", "items": [',                               # malformed_json
         "[1, 2]",                                                     # not_an_object
         json.dumps({"user_id": 42, "experiments": {}, "items": []}),  # wrong_type
         ""],                                                          # blank
    11: [_served("u2", ["t4", "t5"], "treatment")],
    12: [_served("u1", ["t3"], "control"), _served("u3", ["t1"], "control")],
    13: [_served("u5", ["t2"], "treatment")],     # u5 changes arm: dead-lettered.
    15: [_served("u4", ["t2"], "treatment"), _served("u4", ["t2", "t6"], "treatment")],
    16: [_served("u2", ["t7"], other=True), _served("u6", ["t1"])],  # Activity only.
    21: [_served("u7", ["t1"], "control")],       # After the window: never read.
}
RECORDS = {
    2: [_record("u3", "t9", 2, 999.0, 1)],        # Read, but before the pre-period.
    4: [_record("u3", "t8", 4, 30.0, 0)],
    5: [_record("u1", "t8", 5, 100.0, 0)],
    9: [_record("u1", "t9", 9, 50.0, 1)],
    10: [_record("u1", "t1", 10, 600.0, 1), _record("u2", "t9", 10, 70.0, 1)],
    11: [_record("u1", "t2", 11, 300.0, 1), _record("u2", "t5", 11, 20.0, 0)],
    12: [_record("u3", "t1", 12, 500.0, 1), _record("u7", "t1", 12, 80.0, 1),
         b"not a tf.Example", _missing_label()],
    14: [_record("u1", "t3", 14, 40.0, 1)],
    16: [_record("u4", "t6", 16, 100.0, 1)],
    # Day 20's late session, delivered on day 21, counts; day 21's is after the window.
    21: [_record("u1", "t1", 20, 10.0, 0, hour=23), _record("u1", "t1", 21, 5.0, 1)],
    22: [_record("u1", "t1", 20, 1000.0, 1)],     # Beyond the slack: never read.
}
SUBSCRIPTIONS = {
    10: [_decision("u1", 10, "cancelled")],       # On u1's first exposure day: too early.
    11: [_decision("u2", 11, "renewed")],         # On u2's first exposure day: too early.
    12: [_decision("u2", 12, "cancelled")],
    13: [b"\xff",                                                        # undecodable_bytes
         '{"user_id": "u1", "ts": ',                                     # malformed_json
         '["renewed"]',                                                  # not_an_object
         json.dumps({"user_id": 7, "ts": 1, "event": "renewed"}),       # wrong_type
         json.dumps({"user_id": "u3", "ts": 1, "event": "paused"})],    # unknown event
    15: [_decision("u1", 15, "renewed"), _decision("u4", 15, "renewed")],
    18: [_decision("u1", 18, "cancelled")],
    21: [_decision("u4", 21, "cancelled")],       # After the window: never read.
}

EXPECTED = {
    # Served t1, t2 on day 10 and t3 on day 12. t1 engaged on day 10 (same day) and t2 on
    # day 11 (next day) count; t3 on day 14 (two days later) does not. Watch on days
    # [10, 20]: 600 + 300 + 40 + 10 (day 20, delivered late) = 950; day 21's 5 and the
    # unread day-22 partition do not count. Pre-period [3, 10): 100 + 50. Active on day 11
    # within (10, 17]. First decision after day 10: renewed on day 15 (day 18 comes later).
    # Survival counts the cancellation on the exposure day itself: churned after 0 days.
    "u1": {"user_id": "u1", "arm": "control", "first_exposure_day": "2026-01-10",
           "lists_served": 2, "titles_served": 3, "engaged": 1, "served_engaged": 2,
           "watch_seconds": 950.0, "pre_watch_seconds": 150.0, "returned": 1, "renewed": 1,
           "days_observed": 0, "churned": 1},
    # Served t4, t5 on day 11; t5 watched but not engaged, t9 (day 10) is before the first
    # exposure and was never served. No pre-period records: 0.0. Returned through a list of
    # another experiment on day 16, within (11, 18]. Day 11's renewal is on the exposure day;
    # day 12's cancellation is the first after it: churned after 12 - 11 = 1 day.
    "u2": {"user_id": "u2", "arm": "treatment", "first_exposure_day": "2026-01-11",
           "lists_served": 1, "titles_served": 2, "engaged": 0, "served_engaged": 0,
           "watch_seconds": 20.0, "pre_watch_seconds": 0.0, "returned": 1, "renewed": 0,
           "days_observed": 1, "churned": 1},
    # t1 served and engaged on day 12; pre-period: day 4's 30 (day 2 is before it). Nothing
    # within (12, 19]: 0. Its only decision ("paused") is dead-lettered: null; no
    # cancellation, so censored at the window's end after 20 - 12 = 8 days.
    "u3": {"user_id": "u3", "arm": "control", "first_exposure_day": "2026-01-12",
           "lists_served": 1, "titles_served": 1, "engaged": 1, "served_engaged": 1,
           "watch_seconds": 500.0, "pre_watch_seconds": 30.0, "returned": 0, "renewed": None,
           "days_observed": 8, "churned": 0},
    # Two lists on day 15 (t2; t2, t6); t6 engaged on day 16. 15 + 7 = 22 > 20: returned is
    # null. Day 15's renewal is on the exposure day, day 21's is after the window: null;
    # day 21's cancellation is after the window too: censored after 20 - 15 = 5 days.
    "u4": {"user_id": "u4", "arm": "treatment", "first_exposure_day": "2026-01-15",
           "lists_served": 2, "titles_served": 2, "engaged": 1, "served_engaged": 1,
           "watch_seconds": 100.0, "pre_watch_seconds": 0.0, "returned": None, "renewed": None,
           "days_observed": 5, "churned": 0},
}


def _config(root: pathlib.Path, **options) -> OutcomesConfig:
    values = {"served_path": str(root / "served"), "examples_dir": str(root / "examples"),
              "subscriptions_dir": str(root / "subscriptions"),
              "output_path": str(root / "out" / "outcomes.jsonl"), "experiment": EXPERIMENT,
              "start_day": START, "end_day": END}
    return OutcomesConfig(**{**values, **options})


def _write_logs(root: pathlib.Path) -> None:
    for day, lines in SERVED.items():
        _write_lines(root / "served", day, lines)
    for day, records in RECORDS.items():
        _write_records(root / "examples", day, records)
    for day, lines in SUBSCRIPTIONS.items():
        _write_lines(root / "subscriptions", day, lines)


def _rows(path: str) -> dict[str, dict]:
    return {row["user_id"]: row for row in map(json.loads, pathlib.Path(path).read_text()
                                               .splitlines())}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outcomes")
    _write_logs(root)
    config = _config(root)
    return config, run_outcomes(config)


def test_rows_hold_every_outcome_as_computed_by_hand(run):
    config, _ = run
    # u5 (two arms) is dead-lettered; u6 (served in the window outside the experiment) and
    # u7 (records only) were never exposed.
    assert _rows(config.output_path) == EXPECTED


def test_a_user_served_two_arms_is_dead_lettered_not_guessed(run):
    config, report = run
    letters = [json.loads(line) for line in
               pathlib.Path(config.dead_letter_path).read_text().splitlines()]
    changed = [letter for letter in letters if letter["reason"] == "arm_changed"]
    assert len(changed) == 1 and changed[0]["user_id"] == "u5"
    assert [(e["day"], e["arm"], e["line"]) for e in changed[0]["exposures"]] == [
        ("2026-01-10", "control", 2), ("2026-01-13", "treatment", 1)]
    assert "day=2026-01-13" in changed[0]["exposures"][1]["file"]
    assert report.dead_lettered_by_input["served"]["arm_changed"] == 1


def test_malformed_lines_and_records_are_dead_lettered_and_counted(run):
    config, report = run
    assert report.dead_lettered_by_input == {
        "served": {"arm_changed": 1, "malformed_json": 1, "not_an_object": 1,
                   "undecodable_bytes": 1, "wrong_type": 1},
        "records": {"missing_field": 1, "undecodable_bytes": 1},
        "subscriptions": {"malformed_json": 1, "not_an_object": 1, "undecodable_bytes": 1,
                          "unknown_subscription_event": 1, "wrong_type": 1}}
    assert report.dead_lettered == {"arm_changed": 1, "malformed_json": 2, "missing_field": 1,
                                    "not_an_object": 2, "undecodable_bytes": 3,
                                    "unknown_subscription_event": 1, "wrong_type": 2}
    letters = [json.loads(line) for line in
               pathlib.Path(config.dead_letter_path).read_text().splitlines()]
    assert len(letters) == 12  # One per count above: 5 + 2 + 5.
    undecodable = [letter for letter in letters if letter["reason"] == "undecodable_bytes"
                   and letter["input"] == "served"][0]
    # The bytes as delivered, where they were: replayable.
    assert undecodable["record_b64"] == "//4gbm90IHV0Zi04" and undecodable["line"] == 3
    assert "day=2026-01-10" in undecodable["file"]
    typed = [letter for letter in letters if letter["reason"] == "wrong_type"
             and letter["input"] == "served"][0]
    assert typed["detail"] == "user_id=42" and json.loads(typed["record"])["user_id"] == 42


def test_dead_letters_are_the_contracts_records_counted_as_the_report_counts(run):
    from recs.contract.dead_letters import count_by_input, read_dead_letters

    config, report = run
    assert count_by_input(read_dead_letters(config.dead_letter_path)) == (
        report.dead_lettered_by_input)


def test_report_counts_what_was_read_skipped_and_written(run):
    config, report = run
    assert report.users_by_arm == {"control": 2, "treatment": 2} and report.users == 4
    # Served partitions 10, 11, 12, 13, 15, 16 (9 and 21 are outside the window): 6 + 1 +
    # 2 + 1 + 2 + 2 lines. Example partitions [2, 21]: 10 files, 16 records. Subscription
    # partitions [10, 20]: 6 files, 1 + 1 + 1 + 5 + 2 + 1 lines.
    assert report.read == {"served_files": 6, "served_lines": 14, "example_files": 10,
                           "records": 16, "subscription_files": 6, "subscription_lines": 11}
    # Records of days 2 and 21; u6 and u7; served 9 and 21, examples 22, subscriptions 21.
    assert report.skipped == {"blank_lines": 1, "records_outside_window": 2,
                              "users_not_exposed": 2, "files_outside_window": 4}
    written = json.loads(pathlib.Path(config.report_path).read_text())
    assert written == report.to_dict()
    assert config.report_path.endswith("out/outcomes.report.json")
    assert config.dead_letter_path.endswith("out/outcomes.dead_letter.jsonl")


def test_without_subscriptions_every_renewed_is_null(tmp_path):
    for day, lines in ((10, [_served("u1", ["t1"], "control")]),
                       (11, [_served("u2", ["t1"], "treatment")])):
        _write_lines(tmp_path / "served", day, lines)
    _write_records(tmp_path / "examples", 10, [_record("u1", "t1", 11, 60.0, 1)])
    config = OutcomesConfig(served_path=str(tmp_path / "served" / "day=*" / "*.jsonl"),
                            examples_dir=str(tmp_path / "examples"),
                            output_path=str(tmp_path / "rows.jsonl"), experiment=EXPERIMENT,
                            start_day=START, end_day=END, attribution_days=0)
    report = run_outcomes(config)
    rows = _rows(config.output_path)
    # attribution_days=0: t1, served on day 10 and engaged on day 11, does not count.
    assert rows["u1"]["engaged"] == 0 and rows["u1"]["watch_seconds"] == 60.0
    assert rows["u1"]["returned"] == 1 and rows["u2"]["returned"] == 0
    assert {row["renewed"] for row in rows.values()} == {None}
    assert "subscription_files" not in report.read and report.dead_lettered == {}


def test_abtest_analyzes_the_rows_of_a_two_arm_test(tmp_path):
    from monitoring.abtest import run_abtest

    # Everyone is first exposed by day 11, so 11 + 7 <= 20: no null `returned` (the current
    # `analyze` counts every row of a metric). Pre-period records on day 5.
    users = {  # user: (arm, exposure day, pre watch, [(title, day, watch, engaged)])
        "c1": ("control", 10, 100.0, [("t1", 10, 400.0, 1), ("t2", 12, 50.0, 0)]),
        "c2": ("control", 10, 300.0, [("t2", 10, 200.0, 0)]),
        "c3": ("control", 11, 200.0, [("t1", 12, 300.0, 1)]),
        "x1": ("treatment", 10, 150.0, [("t1", 10, 500.0, 1), ("t2", 13, 100.0, 0)]),
        "x2": ("treatment", 10, 250.0, [("t1", 11, 600.0, 1)]),
        "x3": ("treatment", 11, 50.0, [("t2", 11, 100.0, 0)]),
    }
    served: dict[int, list[str]] = {10: [], 11: []}
    records = [_record(user, "t9", 5, pre, 0) for user, (_, _, pre, _) in users.items()]
    for user, (arm, day, _, plays) in users.items():
        served[day].append(_served(user, ["t1"], arm))
        records += [_record(user, title, d, watch, label) for title, d, watch, label in plays]
    for day, lines in served.items():
        _write_lines(tmp_path / "served", day, lines)
    _write_records(tmp_path / "examples", 14, records)
    config = OutcomesConfig(served_path=str(tmp_path / "served"),
                            examples_dir=str(tmp_path / "examples"),
                            output_path=str(tmp_path / "rows.jsonl"), experiment=EXPERIMENT,
                            start_day=START, end_day=END)
    run_outcomes(config)
    rows = _rows(config.output_path)
    # engaged: c1, c3 (next day), x1, x2 (next day); returned: active after the exposure day
    # (c1 day 12, c3 day 12, x1 day 13, x2 day 11); watch from the exposure day on.
    assert {u: (r["engaged"], r["returned"], r["watch_seconds"], r["pre_watch_seconds"])
            for u, r in rows.items()} == {
        "c1": (1, 1, 450.0, 100.0), "c2": (0, 0, 200.0, 300.0), "c3": (1, 1, 300.0, 200.0),
        "x1": (1, 1, 600.0, 150.0), "x2": (1, 1, 600.0, 250.0), "x3": (0, 0, 100.0, 50.0)}
    analysis = run_abtest(config.output_path, EXPERIMENT, "control=1,treatment=1",
                          str(tmp_path / "report")).analysis
    by_metric = {c.metric: c for c in analysis.comparisons}
    assert set(by_metric) == {"engaged", "returned", "watch_seconds", "watch_seconds (CUPED)"}
    assert analysis.sample_ratio.observed == (3, 3)
    assert by_metric["engaged"].control == pytest.approx(2 / 3)
    assert by_metric["returned"].treatment == pytest.approx(2 / 3)
    # Means: (450 + 200 + 300) / 3 and (600 + 600 + 100) / 3.
    assert by_metric["watch_seconds"].control == pytest.approx(950 / 3)
    assert by_metric["watch_seconds"].treatment == pytest.approx(1300 / 3)


def test_cli_writes_the_rows(run, tmp_path, capsys):
    from recs_cli.main import main

    config, _ = run
    root = pathlib.Path(config.served_path).parent
    out = tmp_path / "cli" / "rows.jsonl"
    code = main(["outcomes", "--served", str(root / "served"), "--examples",
                 str(root / "examples"), "--subscriptions", str(root / "subscriptions"),
                 "--experiment", EXPERIMENT, "--start", START, "--end", END,
                 "--out", str(out)])
    assert code == 0
    assert _rows(str(out)) == EXPECTED
    printed = capsys.readouterr().out
    assert "arm control" in printed and str(out) in printed
    assert (tmp_path / "cli" / "rows.report.json").is_file()


def test_cli_reports_a_bad_argument(tmp_path, capsys):
    from recs_cli.main import main

    code = main(["outcomes", "--served", str(tmp_path), "--examples", str(tmp_path),
                 "--experiment", EXPERIMENT, "--start", "2026-02-30", "--end", END,
                 "--out", str(tmp_path / "rows.jsonl")])
    assert code == 2
    assert "start_day must be an ISO date" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    ({"end_day": "2026-01-09"}, r"end_day must be >= start_day \(2026-01-10\)"),
    ({"start_day": "10/01/2026"}, "start_day must be an ISO date"),
    ({"return_horizon_days": 0}, "return_horizon_days must be > 0"),
    ({"pre_period_days": -1}, "pre_period_days must be >= 0"),
    ({"attribution_days": -1}, "attribution_days must be >= 0"),
    ({"output_path": "out/"}, "output_path must be a file path"),
    ({"experiment": ""}, "experiment must be a non-empty string"),
    ({"beam_args": ["--runner=DirectRunner"]}, "beam_args must be a tuple of strings"),
])
def test_config_refuses_bad_values(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **options)


def test_config_round_trips(tmp_path):
    config = _config(tmp_path, beam_args=("--direct_num_workers=1",))
    assert OutcomesConfig.from_json(config.to_json()) == config


def test_inputs_outside_the_layout_are_refused(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "served.jsonl").write_text(_served("u1", ["t1"], "control") + "\n")
    _write_records(tmp_path / "examples", 10, [_record("u1", "t1", 10, 1.0, 1)])
    with pytest.raises(ValueError, match=r"served_path: file .*served.jsonl' is not inside a "
                                         r"day partition; expected <served_path>/day="):
        run_outcomes(_config(tmp_path, served_path=str(flat / "*.jsonl")))
    with pytest.raises(ValueError, match="served_path .* matches no served-list files"):
        run_outcomes(_config(tmp_path))  # No served folder at all.
    _write_lines(tmp_path / "served", 25, [_served("u1", ["t1"], "control")])
    with pytest.raises(ValueError, match=r"no day partition in the window \[2026-01-10, "
                                         r"2026-01-20\]; it holds 2026-01-25 to 2026-01-25"):
        run_outcomes(_config(tmp_path))
    _write_lines(tmp_path / "served", 10, [_served("u1", ["t1"], "control")])
    with pytest.raises(ValueError, match="subscriptions_dir .* holds no files; expected "
                                         "<subscriptions_dir>/day=YYYY-MM-DD/"):
        run_outcomes(_config(tmp_path))
    with pytest.raises(ValueError, match="examples_dir .* holds no files"):
        run_outcomes(_config(tmp_path, examples_dir=str(tmp_path / "nothing"),
                             subscriptions_dir=""))
