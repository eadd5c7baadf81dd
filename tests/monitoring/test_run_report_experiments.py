"""The run report's A/B section: beside the verdict, the lift table, the Kaplan-Meier
retention curves and table, and the sequential looks against their boundary, from what
`recs abtest` wrote into a hand-made work directory (the page in a browser is
tests/e2e/test_report_in_browser.py)."""

import base64
import json
import re

from monitoring.run_report import write_run_report
from recs.contract.layout import RunLayout
from recs_cli.main import main

PNG = b"\x89PNG\r\n\x1a\n"


def _daily_rows(days: int) -> list[dict]:
    """50 users an arm join each day; engagement 0.2 (control) against 0.6 (treatment); one
    user in five churns on the day after joining."""
    rows = []
    for day in range(1, days + 1):
        for joined in range(1, day + 1):
            for arm, rate in (("control", 2), ("treatment", 6)):
                for i in range(50):
                    churned = int(i % 5 == 0 and day > joined)
                    rows.append({"user_id": f"{arm}-{joined}-{i}", "experiment_day": day,
                                 "as_of_day": f"2026-01-{9 + day:02d}", "arm": arm,
                                 "engaged": int(i % 10 < rate),
                                 "days_observed": 1 if churned else day - joined,
                                 "churned": churned})
    return rows


def _section(page: str) -> str:
    return page[page.index("<h2>A/B experiments</h2>"):]


def _images(html: str) -> list[bytes]:
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_the_page_shows_lifts_retention_curves_and_the_sequential_boundary(tmp_path):
    workdir = RunLayout(tmp_path)
    outcomes = tmp_path / "rows.daily.jsonl"
    outcomes.write_text("".join(json.dumps(row) + "\n" for row in _daily_rows(4)))
    assert main(["abtest", "--outcomes", str(outcomes), "--experiment", "ranker-v2",
                 "--metric", "engaged", "--sequential", "--looks", "8",
                 "--out", str(tmp_path / "ab")]) == 0
    report = json.loads((tmp_path / "ab" / "abtest_ranker-v2.json").read_text())
    stop = report["sequential"]["stop_day"]

    section = _section(write_run_report(workdir).read_text())
    assert "<b>Verdict: ship</b>" in section
    # The lift table, then retention (the rows of the stop day: at most 2 days observed, so
    # D7 is not identified), then the looks up to the stop.
    lifts, rest = section.split("<h4>Retention (Kaplan-Meier)</h4>")
    assert "<th>lift</th>" in lifts and "<td>engaged</td>" in lifts
    retention, looks = rest.split("<h4>Sequential boundary</h4>")
    assert "<th>control</th>" in retention and "<th>treatment</th>" in retention
    assert "<td>retention_d7</td>" in retention and "<td>not identified</td>" in retention
    assert "log-rank p = " in retention
    assert (f"stopped on day {stop} (boundary): ship" in looks
            and f"rows as of day {stop}" in looks)
    rows = re.findall(r"<tr><td class=\"n\">(\d+)</td>.*?<td>(True|False)</td>", looks)
    assert [int(day) for day, _ in rows] == list(range(1, stop + 1))
    assert [crossed for _, crossed in rows] == ["False"] * (stop - 1) + ["True"]
    # Three figures, inline: the lifts, the retention curves, the boundary.
    images = _images(section)
    assert len(images) == 3 and all(png[:8] == PNG for png in images)
    assert ['alt="ranker-v2 lifts"', 'alt="retention curves"', 'alt="sequential boundary"'] == (
        re.findall(r'alt="[^"]+"', section))


def test_a_fixed_horizon_analysis_without_survival_shows_neither_part(tmp_path):
    workdir = RunLayout(tmp_path)
    rows = [{"user_id": f"{arm}{i}", "arm": arm, "engaged": int(i % 10 < rate)}
            for arm, rate in (("control", 3), ("treatment", 4)) for i in range(100)]
    outcomes = tmp_path / "rows.jsonl"
    outcomes.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["abtest", "--outcomes", str(outcomes), "--experiment", "plain", "--metric",
                 "engaged", "--out", str(tmp_path / "ab")]) == 0
    section = _section(write_run_report(workdir).read_text())
    assert "<td>engaged</td>" in section and "Verdict: keep" in section
    assert "Retention (Kaplan-Meier)" not in section and "Sequential boundary" not in section
    assert len(_images(section)) == 1
