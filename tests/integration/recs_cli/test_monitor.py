"""`recs monitor` over the tiny world's ranker: its exit status is the action decided."""

import json

from monitoring import MonitorConfig


def test_monitor_command_exits_with_the_action(tiny_world, tmp_path):
    from recs_cli.main import main

    workdir = tmp_path / "w"
    (workdir / "serving").mkdir(parents=True)
    (workdir / "serving" / "ranker").symlink_to(tiny_world.serving_dir / "ranker")
    config = tmp_path / "monitor.json"
    config.write_text(MonitorConfig(min_auc=0.0, max_unseen_title_share=1.0).to_json())
    code = main(["monitor", "--workdir", str(workdir), "--span", "1", "--examples",
                 tiny_world.examples_glob, "--reference", tiny_world.examples_glob,
                 "--config", str(config)])
    decisions = (workdir / "monitoring" / "decisions.jsonl").read_text().splitlines()
    action = json.loads(decisions[-1])["action"]
    assert code == {"nothing": 0, "alert": 3, "retrain": 4}[action]
    assert action in ("nothing", "alert")  # Same data as the reference: no retrain reason.
