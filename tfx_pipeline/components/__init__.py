"""Custom TFX components."""

from tfx_pipeline.components.index_builder import IndexBuilder

__all__ = ["IndexBuilder"]
