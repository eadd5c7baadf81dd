"""Local and Kubeflow Pipelines v2 runners of the same pipeline."""

import dataclasses
import os

from tfx import v1 as tfx

from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.pipeline import create_pipeline

DEFAULT_IMAGE = "recs-pipeline:latest"


def run_local(config: PipelineConfig) -> None:
    """Runs every component in this process with `LocalDagRunner` and SQLite ML-Metadata.

    Raises:
        ValueError: `config.metadata_path` is empty (a local run needs an ML-Metadata file).
    """
    if not config.metadata_path:
        raise ValueError("metadata_path is empty; a local run needs an ML-Metadata SQLite file, "
                         "e.g. PipelineConfig(..., metadata_path='runs/metadata.db').")
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))


def compile_for_kubeflow(config: PipelineConfig, output_path: str,
                         image: str = DEFAULT_IMAGE) -> str:
    """Compiles the pipeline to a Kubeflow Pipelines v2 JSON spec at `output_path`.

    Components given a `module_file` make TFX build a wheel of the user module at compile time
    and write it to `<pipeline_root>/_wheels` (so the compiling machine then needs write access
    to the pipeline root, object storage included). This pipeline names its functions by import
    path instead (`transforms.preprocessing.preprocessing_fn`, `tfx_pipeline.trainer.run_ranker`)
    and finds them installed in `image` (`deploy/pipeline/Dockerfile`): compilation writes
    nothing under the root, and the image, not a wheel, decides which code runs.

    Returns:
        `output_path`.
    """
    kubeflow_config = dataclasses.replace(config, metadata_path="")
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
        output_filename=os.path.basename(output_path))
    runner.run(create_pipeline(kubeflow_config))
    return output_path
