"""TFX wiring: components in data-flow order, run_fn adapters, the index component, runners,
rolling training windows; the pipeline's stages in one process for the offline protocols on
interaction tables (`evaluate_tables`)."""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "PipelineConfig": "tfx_pipeline.config", "create_pipeline": "tfx_pipeline.pipeline",
    "compile_for_kubeflow": "tfx_pipeline.runners", "run_local": "tfx_pipeline.runners",
    "rolling_window": "tfx_pipeline.windows",
})
