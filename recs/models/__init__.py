"""Towers, the two-tower retrieval model and the deep sigmoid ranker."""

from recs.models.encoders import FeatureEncoder, FeatureSizes
from recs.models.ranker import DeepRanker
from recs.models.retrieval import Tower, TwoTowerModel, candidate_tower, query_tower

__all__ = ["DeepRanker", "FeatureEncoder", "FeatureSizes", "Tower", "TwoTowerModel",
           "candidate_tower", "query_tower"]
