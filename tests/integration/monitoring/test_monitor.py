"""Monitoring a span of the tiny world: its ranker scored, the span compared with the
reference, the decision recorded and reported."""

import pytest

from monitoring import RETRAIN, MonitorConfig


@pytest.fixture(scope="module")
def tiny_stats(tiny_world):
    from monitoring.drift import span_statistics

    return span_statistics(tiny_world.examples_glob)


def test_monitor_span_scores_compares_decides_records_and_reports(tiny_world, tiny_stats,
                                                                  tmp_path):
    from monitoring.monitor import ServedModel, _read_decisions, monitor_span
    from recs.contract.models import newest_version_dir

    stats = tiny_stats
    model = ServedModel(ranker_dir=newest_version_dir(str(tiny_world.serving_dir), "ranker"),
                        baseline_auc=0.99, known_titles=(b"t000001",))
    config = MonitorConfig(min_auc=0.0, max_auc_drop=0.05)
    log = tmp_path / "decisions.jsonl"
    decision, quality = monitor_span(3, tiny_world.examples_glob, model, stats, stats, config,
                                     str(log), str(tmp_path / "reports"))
    # The same statistics on both sides: nothing drifted, every distance is 0.
    assert decision.signals.drift and all(m.value == 0.0 for m in decision.signals.drift)
    # Far below the 0.99 baseline, and almost every title unknown to the model: retrain.
    assert decision.action == RETRAIN
    assert decision.signals.unseen_title_share > 0.9
    assert 0.0 <= quality["auc"] <= 1.0 and set(quality["slices"]) == {"device_type", "country",
                                                                      "user"}
    assert _read_decisions(str(log)) == [decision]
    page = (tmp_path / "reports" / "span-3.html").read_text()
    assert "Span 3: retrain" in page
    for suffix in ("trends", "reliability", "drift"):
        assert (tmp_path / "reports" / f"span-3-{suffix}.png").stat().st_size > 1000
