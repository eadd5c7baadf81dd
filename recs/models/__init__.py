"""Towers, the two-tower retrieval model, its item-to-item part and cold-start prior, and the
deep sigmoid ranker."""

from recs.models.cold_start import ColdStartPrior, PriorCandidate, PriorQuery
from recs.models.encoders import FeatureEncoder, FeatureSizes
from recs.models.item_item import (ItemItemCandidate, ItemItemFactors, ItemItemQuery,
                                   fit_item_item)
from recs.models.ranker import DeepRanker
from recs.models.retrieval import Tower, TwoTowerModel, candidate_tower, query_tower

__all__ = ["ColdStartPrior", "DeepRanker", "FeatureEncoder", "FeatureSizes", "ItemItemCandidate",
           "ItemItemFactors", "ItemItemQuery", "PriorCandidate", "PriorQuery", "Tower",
           "TwoTowerModel", "candidate_tower", "fit_item_item", "query_tower"]
