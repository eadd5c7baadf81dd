"""`recs abtest`: lifts per arm, a broken split flagged, and the verdict printed."""

import json

import numpy as np

from recs_cli.main import main


def test_abtest_command_reports_lifts_and_flags_a_broken_split(tmp_path, capsys):
    rng = np.random.default_rng(5)
    rows = []
    for arm, users, rate, extra in (("control", 3000, 0.30, 0.0), ("treatment", 2600, 0.36, 60)):
        pre = rng.gamma(2.0, 600.0, users)
        for i in range(users):
            rows.append({"user_id": f"{arm}{i}", "arm": arm, "engaged": int(rng.random() < rate),
                         "returned": int(rng.random() < 0.6),
                         "watch_seconds": float(0.8 * pre[i] + rng.normal(0, 300) + extra),
                         "pre_watch_seconds": float(pre[i])})
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["abtest", "--outcomes", str(outcomes), "--experiment", "ranker-v2",
                 "--out", str(tmp_path / "report")])
    printed = capsys.readouterr().out
    assert code == 3 and "SAMPLE RATIO MISMATCH" in printed  # 3000 vs 2600 on a 50/50 design.
    report = json.loads((tmp_path / "report" / "abtest_ranker-v2.json").read_text())
    by_metric = {c["metric"]: c for c in report["comparisons"]}
    assert set(by_metric) == {"engaged", "returned", "watch_seconds", "watch_seconds (CUPED)"}
    assert by_metric["engaged"]["significant"] and by_metric["engaged"]["difference"] > 0.03
    assert by_metric["returned"]["ci_low"] < 0.0 < by_metric["returned"]["ci_high"]  # No effect.
    cuped_width = by_metric["watch_seconds (CUPED)"]["ci_high"] - by_metric[
        "watch_seconds (CUPED)"]["ci_low"]
    raw_width = by_metric["watch_seconds"]["ci_high"] - by_metric["watch_seconds"]["ci_low"]
    assert cuped_width < 0.6 * raw_width
    assert (tmp_path / "report" / "abtest_ranker-v2.png").read_bytes()[:4] == b"\x89PNG"


def test_recs_abtest_prints_the_verdict(tmp_path, capsys):
    from recs_cli.main import main

    path = tmp_path / "outcomes.jsonl"
    path.write_text("".join(json.dumps({"arm": arm, "engaged": i % 2, "returned": i % 2,
                                        "watch_seconds": float(i)}) + "\n"
                            for arm in ("control", "treatment") for i in range(50)))
    assert main(["abtest", "--outcomes", str(path), "--experiment", "same",
                 "--metric", "engaged", "--out", str(tmp_path / "out")]) == 0
    assert "verdict: KEEP" in capsys.readouterr().out
