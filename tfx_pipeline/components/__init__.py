"""Custom TFX components."""

from tfx_pipeline.components.index_builder import IndexBuilder
from tfx_pipeline.components.ranker_trainer import RETRIEVAL_MODEL_KEY, RankerTrainer
from tfx_pipeline.components.recommender_builder import RecommenderBuilder

__all__ = ["IndexBuilder", "RETRIEVAL_MODEL_KEY", "RankerTrainer", "RecommenderBuilder"]
