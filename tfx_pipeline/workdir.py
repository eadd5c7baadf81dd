"""The pipeline config of a local end-to-end run under a single directory (`recs demo`,
`recs pipeline`, `recs serve --workdir`); the directory's layout is the contract's
`recs.contract.layout.RunLayout`."""

from typing import Any

from recs.contract.layout import RunLayout


def pipeline_config(workdir: RunLayout, **overrides: Any):
    """The `PipelineConfig` of a local run in `workdir`; `overrides` replace any field, as
    values or as their JSON form (a nested config as a dict, a tuple as a list).

    Returns:
        A `tfx_pipeline.config.PipelineConfig`.

    Raises:
        ValueError: an override is not a PipelineConfig field, or holds an invalid value.
    """
    from tfx_pipeline.config import PipelineConfig

    paths = dict(pipeline_root=str(workdir.pipeline_root),
                 examples_dir=str(workdir.examples_dir), catalogue_path=str(workdir.titles),
                 serving_base_dir=str(workdir.serving), metadata_path=str(workdir.metadata))
    return PipelineConfig.from_dict({**paths, **overrides})
