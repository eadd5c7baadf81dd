"""`recs pipeline --config`: PipelineConfig fields from a JSON file over the workdir's paths;
a file that is not one refused in one line, exit status 2, before anything is written."""

import json
import re

import pytest

from recs.config import RetrievalConfig
from recs.contract.layout import RunLayout
from recs_cli.commands.pipeline import read_config
from recs_cli.main import main
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.workdir import pipeline_config


def test_a_config_file_sets_its_fields_and_the_workdir_the_other_paths(tmp_path):
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"min_ranker_auc": 0.65, "eval_buckets": [9, 1],
                                "serving_base_dir": "gs://bucket/serving",
                                "retrieval": {"training": {"epochs": 5}}}))
    workdir = RunLayout(tmp_path / "run")
    config = read_config(workdir, path)
    assert isinstance(config, PipelineConfig)
    assert (config.min_ranker_auc, config.eval_buckets) == (0.65, (9, 1))
    assert config.serving_base_dir == "gs://bucket/serving"
    assert isinstance(config.retrieval, RetrievalConfig)
    assert config.retrieval.training.epochs == 5
    # What the file leaves out: the workdir's paths and the defaults.
    assert config.pipeline_root == str(workdir.pipeline_root)
    assert config.examples_dir == str(workdir.examples_dir)
    assert config.max_auc_drop == PipelineConfig.max_auc_drop
    assert read_config(workdir, None) == pipeline_config(workdir)


@pytest.mark.parametrize("text, message", [
    ("{\"min_ranker_auc\": 0.65,}", r"--config .*pipeline.json: Expecting property name"),
    ("[0.65]", r"--config .*pipeline.json: expected a JSON object of PipelineConfig fields "
               r"\(tfx_pipeline/config.py\); received list"),
    ("{\"min_auc\": 0.65}", r"--config .*pipeline.json: PipelineConfig got unknown keys "
                            r"\['min_auc'\]"),
    ("{\"min_ranker_auc\": 1.5}", r"--config .*pipeline.json: min_ranker_auc must be in "
                                  r"\[0, 1\]; received 1.5"),
])
def test_a_bad_config_file_is_refused_before_anything_is_written(text, message, tmp_path,
                                                                  capsys):
    path = tmp_path / "pipeline.json"
    path.write_text(text)
    workdir = tmp_path / "run"
    assert main(["pipeline", "--workdir", str(workdir), "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --config ") and error.count("\n") == 1
    assert re.search(message, error)
    assert not workdir.exists()


def test_a_missing_config_file_is_refused(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert main(["pipeline", "--workdir", str(tmp_path / "run"), "--config", str(missing)]) == 2
    assert (f"error: --config {missing}: [Errno 2] No such file or directory: '{missing}'"
            in capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_the_config_file_reaches_the_pipeline_run(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr("recs_cli.demo.run_pipeline",
                        lambda console, config, title: ran.append(config))
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"min_ranker_auc": 0.7, "warm_start": False}))
    workdir = tmp_path / "run"
    assert main(["pipeline", "--workdir", str(workdir), "--config", str(path)]) == 0
    assert ran == [pipeline_config(RunLayout(workdir), min_ranker_auc=0.7, warm_start=False)]
