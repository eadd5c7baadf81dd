"""TFX wiring: components in data-flow order, run_fn adapters, the index component, runners,
rolling training windows."""

import recs  # noqa: F401  (selects Keras 2 before TFX imports TensorFlow)

from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runners import compile_for_kubeflow, run_local
from tfx_pipeline.windows import rolling_window

__all__ = ["PipelineConfig", "compile_for_kubeflow", "create_pipeline", "rolling_window",
           "run_local"]
