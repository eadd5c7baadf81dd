"""`recs pipeline`: run the TFX pipeline locally on a workdir, or compile it for Kubeflow v2."""

import argparse
import dataclasses
import json
import pathlib
from typing import TYPE_CHECKING

from recs.contract.layout import DEMO_ROOT
from recs_cli.commands._base import Command, add_runner_config, beam_args

if TYPE_CHECKING:  # Annotations only: the command's parser does not load the pipeline.
    from tfx_pipeline.config import PipelineConfig
    from recs.contract.layout import RunLayout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path(DEMO_ROOT))
    parser.add_argument("--kubeflow-out", default="",
                        help="compile a Kubeflow Pipelines v2 spec here instead of running")
    parser.add_argument("--image", default="recs-pipeline:latest")
    parser.add_argument("--window-spans", type=int, default=0,
                        help="train on the newest N day spans only (a retrain's rolling "
                             "window); 0 reads every span")
    add_runner_config(parser)
    parser.add_argument("--config", type=pathlib.Path, default=None,
                        help="PipelineConfig fields as JSON (tfx_pipeline/config.py), e.g. "
                             "{\"min_ranker_auc\": 0.65}; the paths it leaves out are the "
                             "workdir's")


class ConfigFileError(ValueError):
    """`--config` names a file that does not hold a valid PipelineConfig."""


def read_config(workdir: "RunLayout", path: pathlib.Path | None) -> "PipelineConfig":
    """The run's `PipelineConfig`: the fields the JSON object in `path` sets, the workdir's
    paths (`tfx_pipeline.workdir.pipeline_config`) for the ones it leaves out.

    Raises:
        ConfigFileError: `path` cannot be read or does not hold a JSON object of valid
            PipelineConfig fields; the message names the file.
    """
    from tfx_pipeline.workdir import pipeline_config

    if path is None:
        return pipeline_config(workdir)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigFileError(f"--config {path}: {error}") from error
    try:
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object of PipelineConfig fields "
                             f"(tfx_pipeline/config.py); received {type(values).__name__}")
        return pipeline_config(workdir, **values)
    except ValueError as error:  # json.JSONDecodeError is one too.
        raise ConfigFileError(f"--config {path}: {error}") from error


def run(workdir: pathlib.Path, kubeflow_out: str, image: str, window_spans: int,
        beam_runner_config: pathlib.Path | None, config: pathlib.Path | None,
        verbose: bool = False) -> int:
    """Runs the pipeline on `workdir` with LocalDagRunner, or compiles it for Kubeflow when
    `kubeflow_out` is set; the libraries' output goes to `workdir/recs.log`.

    Args:
        window_spans: train on the newest N day spans only; 0 reads every span.
        beam_runner_config: a `BeamRunnerConfig` JSON file; its options replace the config's
            `beam_args`.
        config: PipelineConfig fields as JSON (`read_config`).

    Returns:
        0.

    Raises:
        ConfigFileError: `config` cannot be read or is not a JSON object of valid
            PipelineConfig fields.
    """
    from monitoring.run_report import summarize_run
    from recs_cli.console import LOG_FILE, session
    from recs_cli.demo import run_pipeline
    from recs.contract.layout import RunLayout

    run_dir = RunLayout(workdir)
    settings = read_config(run_dir, config)  # Refused before anything is written.
    options = beam_args(beam_runner_config) if beam_runner_config else []
    if options:
        settings = dataclasses.replace(settings, beam_args=tuple(options))
    with session(run_dir.root / LOG_FILE, verbose) as console:
        if window_spans:
            from tfx_pipeline.windows import rolling_window  # TensorFlow: loaded when needed.

            settings = dataclasses.replace(settings, examples_dir=rolling_window(
                settings.examples_dir, str(run_dir.windows), window_spans))
            console.detail(f"training window: {settings.examples_dir}")
        if kubeflow_out:
            from tfx_pipeline.runners import compile_for_kubeflow  # TFX: loaded when needed.

            with console.stage("compiling for Kubeflow Pipelines v2"):
                spec = compile_for_kubeflow(settings, kubeflow_out, image)
            console.detail(spec)
            return 0
        run_pipeline(console, settings, "TFX pipeline (LocalDagRunner)")
        # The warnings were shown at their stage; the summary repeats them once.
        console.summary(summarize_run(run_dir).figures,
                        (("models", str(run_dir.serving)),
                         ("report", f"recs report --workdir {run_dir.root}"),
                         ("log", str(run_dir.root / LOG_FILE))))
    return 0


COMMAND = Command("pipeline", "run the TFX pipeline or compile it", run, add_arguments,
                  # Only the command line's own mistakes: an error inside the run keeps its
                  # traceback.
                  refused=(ConfigFileError,))
