"""Towers, the two-tower retrieval model, its item-to-item part and the deep sigmoid ranker."""

from recs.models.encoders import FeatureEncoder, FeatureSizes
from recs.models.item_item import (ItemItemCandidate, ItemItemFactors, ItemItemQuery,
                                   fit_item_item)
from recs.models.ranker import DeepRanker
from recs.models.retrieval import Tower, TwoTowerModel, candidate_tower, query_tower

__all__ = ["DeepRanker", "FeatureEncoder", "FeatureSizes", "ItemItemCandidate",
           "ItemItemFactors", "ItemItemQuery", "Tower", "TwoTowerModel", "candidate_tower",
           "fit_item_item", "query_tower"]
