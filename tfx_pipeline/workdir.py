"""The layout of one local end-to-end run under a single directory, and the pipeline config
that reads and writes it (`recs demo`, `recs pipeline`, `recs serve --workdir`)."""

import dataclasses
import pathlib
import shutil
from typing import Any


@dataclasses.dataclass(frozen=True)
class Workdir:
    """Where one run's data, pipeline, models and online state live."""

    root: pathlib.Path

    @property
    def raw(self) -> pathlib.Path:
        return self.root / "raw"

    @property
    def ingested(self) -> pathlib.Path:
        return self.root / "ingested"

    @property
    def examples_dir(self) -> pathlib.Path:
        return self.ingested / "examples"

    @property
    def examples_glob(self) -> str:
        return str(self.examples_dir / "*" / "*.tfrecord.gz")

    @property
    def pipeline_root(self) -> pathlib.Path:
        return self.root / "pipeline"

    @property
    def metadata(self) -> pathlib.Path:
        return self.root / "metadata.db"

    @property
    def serving(self) -> pathlib.Path:
        return self.root / "serving"

    @property
    def store(self) -> pathlib.Path:
        return self.root / "profiles.db"

    @property
    def users(self) -> pathlib.Path:
        return self.raw / "users.jsonl"

    @property
    def titles(self) -> pathlib.Path:
        return self.raw / "titles.jsonl"

    @property
    def served_log(self) -> pathlib.Path:
        return self.root / "served.jsonl"

    @property
    def monitoring(self) -> pathlib.Path:
        return self.root / "monitoring"

    def clean(self) -> None:
        """Removes the outputs of an earlier run, so that runs never mix."""
        for directory in (self.raw, self.ingested, self.pipeline_root, self.serving):
            shutil.rmtree(directory, ignore_errors=True)
        for path in (self.metadata, self.store, self.served_log):
            path.unlink(missing_ok=True)


def pipeline_config(workdir: Workdir, **overrides: Any):
    """The `PipelineConfig` of a local run in `workdir`; `overrides` replace any field.

    Returns:
        A `tfx_pipeline.config.PipelineConfig`.
    """
    from tfx_pipeline.config import PipelineConfig

    paths = dict(pipeline_root=str(workdir.pipeline_root),
                 examples_dir=str(workdir.examples_dir), catalogue_path=str(workdir.titles),
                 serving_base_dir=str(workdir.serving), metadata_path=str(workdir.metadata))
    return PipelineConfig(**{**paths, **overrides})
