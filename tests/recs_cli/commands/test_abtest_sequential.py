"""`recs abtest` beyond the fixed-horizon test: Kaplan-Meier retention from the rows' survival
fields, the daily group-sequential looks (`--sequential`), the plots beside the report, and
the flags it refuses, through `recs_cli.main.main` on tiny hand-made rows."""

import json

import pytest

from recs_cli.main import main

PNG = b"\x89PNG\r\n\x1a\n"
REPORT_KEYS = {"experiment", "arms", "sample_ratio", "comparisons", "verdict", "mode",
               "rows_day", "survival", "sequential", "aa", "plots"}

# Four users an arm, observed up to 35 days. Control churns after 3 and 10 days, treatment
# after 20; the rest are censored at 35.
SURVIVAL_ROWS = [
    {"user_id": f"{arm[0]}{i}", "arm": arm, "engaged": engaged, "days_observed": days,
     "churned": churned}
    for arm, users in (("control", ((3, 1, 0), (10, 1, 1), (35, 0, 0), (35, 0, 1))),
                       ("treatment", ((20, 1, 1), (35, 0, 1), (35, 0, 0), (35, 0, 1))))
    for i, (days, churned, engaged) in enumerate(users)]


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _daily(days: int, treatment_rate: int, per_day: int = 100) -> list[dict]:
    """Daily rows: `per_day` users an arm join each day and keep a row every day after.
    A user engages when their index mod 10 is below 3 (control) or `treatment_rate`
    (treatment); one in five churns on the day after joining."""
    rows = []
    for day in range(1, days + 1):
        for joined in range(1, day + 1):
            for arm, rate in (("control", 3), ("treatment", treatment_rate)):
                for i in range(per_day):
                    churned = int(i % 5 == 0 and day > joined)
                    rows.append({"user_id": f"{arm}-{joined}-{i}",
                                 "as_of_day": f"2026-01-{9 + day:02d}", "experiment_day": day,
                                 "arm": arm, "engaged": int(i % 10 < rate),
                                 "days_observed": 1 if churned else day - joined,
                                 "churned": churned})
    return rows


def _report(out, name="exp") -> dict:
    return json.loads((out / f"abtest_{name}.json").read_text())


def test_survival_rows_get_retention_per_arm_and_can_be_the_primary_metric(tmp_path, capsys):
    outcomes = _write(tmp_path / "rows.jsonl", SURVIVAL_ROWS)
    out = tmp_path / "report"
    code = main(["abtest", "--outcomes", outcomes, "--experiment", "exp",
                 "--primary", "retention_d14", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.startswith("primary metric (pre-registered): retention_d14")
    report = _report(out)
    assert set(report) == REPORT_KEYS and report["mode"] == "fixed_horizon"
    retention = {c["metric"]: c for c in report["survival"]["retention"]}
    # Kaplan-Meier, control: S(7) = 3/4 (the churn on day 3); S(14) = 3/4 x 2/3 = 1/2 (day 10);
    # S(28) = 1/2. Treatment: 1, 1, then 3/4 after day 20. D28 is identified: every user
    # with no churn was observed for 35 days.
    assert [(c, round(retention[c]["control"], 4), round(retention[c]["treatment"], 4))
            for c in ("retention_d7", "retention_d14", "retention_d28")] == [
        ("retention_d7", 0.75, 1.0), ("retention_d14", 0.5, 1.0), ("retention_d28", 0.5, 0.75)]
    low, high = retention["retention_d14"]["control_ci"]
    assert low < 0.5 < high
    # Renewal at billing day 30: S(30) / S(0) = 1/2 and 3/4.
    (renewal,) = report["survival"]["renewal"]
    assert renewal["metric"] == "renewal_d30" and renewal["difference"] == pytest.approx(0.25)
    # Greenwood: Var S_c(14) = 1/4 (1/(4 x 3) + 1/(3 x 2)) = 1/16, Var S_t(14) = 0, so the
    # difference 1/2 has z = 2 and p = 0.0455 < 0.05: the pre-registered metric ships.
    assert retention["retention_d14"]["p_value"] == pytest.approx(0.0455, abs=1e-4)
    assert report["verdict"]["action"] == "ship"
    assert report["verdict"]["rule"]["metric"] == "retention_d14"
    # The lift table holds the 0/1 metric and the identified survival metrics.
    assert [c["metric"] for c in report["comparisons"]] == [
        "engaged", "retention_d7", "retention_d14", "retention_d28", "renewal_d30"]
    assert "log-rank p = " in printed and "renewal_d30" in printed
    assert report["plots"] == {"lifts": "abtest_exp.png", "retention": "abtest_exp_retention.png"}
    for name in report["plots"].values():
        assert (out / name).read_bytes()[:8] == PNG


def test_rows_without_survival_fields_get_no_retention(tmp_path, capsys):
    rows = [{k: v for k, v in row.items() if k not in ("days_observed", "churned")}
            for row in SURVIVAL_ROWS]
    out = tmp_path / "report"
    assert main(["abtest", "--outcomes", _write(tmp_path / "rows.jsonl", rows), "--experiment",
                 "exp", "--metric", "engaged", "--out", str(out)]) == 0
    report = _report(out)
    assert report["survival"] is None and "retention" not in report["plots"]
    assert "log-rank" not in capsys.readouterr().out


def test_sequential_stops_on_the_day_a_planted_effect_crosses_the_boundary(tmp_path, capsys):
    # Engagement 0.3 against 0.6, 100 users an arm a day. Day 1: pooled rate 0.45, z = 0.3 /
    # sqrt(0.45 x 0.55 x 2 / 100) = 4.264 < 6.991, O'Brien-Fleming's boundary at 1/10 of the
    # information. Day 2: 200 an arm, z = 6.030 >= 4.877: stop, ship. Days 3 to 5 are never
    # looked at.
    outcomes = _write(tmp_path / "rows.daily.jsonl", _daily(5, treatment_rate=6))
    out = tmp_path / "report"
    code = main(["abtest", "--outcomes", outcomes, "--experiment", "exp", "--metric",
                 "engaged", "--sequential", "--looks", "10", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = _report(out)
    assert set(report) == REPORT_KEYS and report["mode"] == "sequential"
    sequential = report["sequential"]
    assert (sequential["stop_day"], sequential["stopped_on"]) == (2, "boundary")
    assert [(look["day"], round(look["z"], 3), round(look["boundary"], 3), look["crossed"])
            for look in sequential["looks"]] == [(1, 4.264, 6.991, False),
                                                  (2, 6.030, 4.877, True)]
    assert report["verdict"]["action"] == "ship" and sequential["spending"] == "obrien_fleming"
    # The comparisons and retention are those of the rows on the stop day: 200 users an arm.
    assert report["rows_day"] == 2
    engaged = {c["metric"]: c for c in report["comparisons"]}["engaged"]
    assert (engaged["n_control"], engaged["n_treatment"]) == (200, 200)
    assert report["survival"]["curves"][0]["users"] == 200
    assert "stopped on day 2 (boundary): ship" in printed and "verdict: SHIP" in printed
    for name in ("abtest_exp.png", "abtest_exp_retention.png", "abtest_exp_sequential.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert report["plots"]["sequential"] == "abtest_exp_sequential.png"


def test_sequential_on_an_aa_test_never_stops(tmp_path, capsys):
    # Both arms engage at 0.3 exactly: z = 0 at every look. Five of ten days: still running.
    outcomes = _write(tmp_path / "rows.daily.jsonl", _daily(5, treatment_rate=3, per_day=40))
    out = tmp_path / "report"
    code = main(["abtest", "--outcomes", outcomes, "--experiment", "exp", "--metric",
                 "engaged", "--sequential", "--looks", "10", "--spending", "pocock",
                 "--aa-splits", "40", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = _report(out)
    sequential = report["sequential"]
    assert sequential["stop_day"] is None and sequential["stopped_on"] == "running"
    assert [look["z"] for look in sequential["looks"]] == [0.0] * 5
    assert report["verdict"]["action"] == "continue" and sequential["spending"] == "pocock"
    assert report["rows_day"] == 5  # The last day while it runs.
    aa = report["aa"]
    assert aa["splits"] == 40 and sum(aa["stopped_on"].values()) == 40
    # A/A re-splits of the same users stop on a boundary at about alpha (0.05), never at the
    # 0.14 or more that daily looks at 1.96 would give.
    assert aa["rate"] <= 0.1
    assert "still running: continue" in printed and "A/A: " in printed


def test_a_broken_split_exits_3_in_both_modes(tmp_path, capsys):
    daily = [row for row in _daily(3, treatment_rate=3, per_day=40)
             if row["arm"] == "control" or row["user_id"].endswith(("0", "1"))]
    outcomes = _write(tmp_path / "rows.daily.jsonl", daily)
    # Day 1: 40 control users, 8 treatment (indices ending in 0 or 1) on a 1:1 design:
    # chi-square 2 x 16^2 / 24 = 21.3, p = 4e-6 < 0.001.
    assert main(["abtest", "--outcomes", outcomes, "--experiment", "exp", "--metric",
                 "engaged", "--sequential", "--looks", "3", "--out",
                 str(tmp_path / "report")]) == 3
    report = _report(tmp_path / "report")
    assert report["sequential"]["stopped_on"] == "sample_ratio"
    assert report["verdict"]["action"] == "stop"
    assert "sample ratio mismatch" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--looks", "5"], "--looks only apply to the sequential test; add --sequential"),
    (["--spending", "pocock", "--aa-splits", "9"],
     "--spending, --aa-splits only apply to the sequential test"),
    (["--sequential"], "--sequential needs --looks N"),
    (["--sequential", "--looks", "0"], "looks must be a whole number of daily looks >= 1"),
    (["--sequential", "--looks", "5", "--spending", "linear"],
     "spending must be one of ('obrien_fleming', 'pocock')"),
    (["--sequential", "--looks", "5", "--aa-splits", "-1"], "aa_splits must be a whole number"),
    (["--primary", "clicks"], "metric must be one of"),
])
def test_bad_flags_are_refused_with_exit_2(tmp_path, capsys, flags, message):
    outcomes = _write(tmp_path / "rows.jsonl", SURVIVAL_ROWS)
    code = main(["abtest", "--outcomes", outcomes, "--experiment", "exp", "--out",
                 str(tmp_path / "report"), *flags])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: ") and message in error
    assert "Traceback" not in error and not (tmp_path / "report").exists()


@pytest.mark.parametrize("daily, flags, message", [
    (False, ["--sequential", "--looks", "5"], "rows must be daily outcome rows, each with an "
                                              "integer experiment_day"),
    (True, [], "these are daily rows (with experiment_day): pass --sequential --looks N"),
    (True, ["--sequential", "--looks", "2"], "looks must be an int >= the 3 days of values"),
    (True, ["--sequential", "--looks", "5", "--primary", "retention_d28"],
     "rule.metric must be a metric with a sequential test"),
])
def test_rows_that_do_not_fit_the_mode_are_refused_with_exit_2(tmp_path, capsys, daily, flags,
                                                                message):
    rows = _daily(3, treatment_rate=3, per_day=10) if daily else SURVIVAL_ROWS
    outcomes = _write(tmp_path / "rows.jsonl", rows)
    code = main(["abtest", "--outcomes", outcomes, "--experiment", "exp", "--metric",
                 "engaged", "--out", str(tmp_path / "report"), *flags])
    error = capsys.readouterr().err
    assert code == 2 and message in error, error


def test_a_missing_outcomes_file_is_refused_with_exit_2(tmp_path, capsys):
    code = main(["abtest", "--outcomes", str(tmp_path / "none.jsonl"), "--experiment", "exp",
                 "--out", str(tmp_path / "report")])
    assert code == 2 and "none.jsonl" in capsys.readouterr().err
