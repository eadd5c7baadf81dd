"""The local runner's configuration: a local run needs a metadata path."""

import pytest

from tfx_pipeline import PipelineConfig, run_local


def test_local_run_needs_a_metadata_path(tmp_path):
    config = PipelineConfig(pipeline_root=str(tmp_path), examples_dir="e", catalogue_path="c",
                            serving_base_dir="s")
    with pytest.raises(ValueError, match="metadata_path is empty"):
        run_local(config)
