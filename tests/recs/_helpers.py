"""Tiny, seeded model inputs shared by the model and training tests: feature sizes, random
transformed features, a labelled dataset, and a query tower carrying item-to-item factors."""

import numpy as np
import tensorflow as tf

from recs import features as F
from recs.config import ItemItemConfig, RetrievalConfig
from recs.models.encoders import FeatureSizes
from recs.models.item_item import ItemItemFactors, fit_item_item, item_item_layers
from recs.models.retrieval import Tower, query_tower

SIZES = FeatureSizes(users=5, titles=6, countries=3, subscription_tiers=3, genres=4,
                     description_tokens=10)


def _features(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = F.transformed_name
    return {
        t(F.USER_ID): rng.integers(0, 5, n), t(F.TITLE_ID): rng.integers(0, 6, n),
        t(F.COUNTRY): rng.integers(0, 3, n), t(F.SUBSCRIPTION_TIER): rng.integers(0, 3, n),
        t(F.GENRE): rng.integers(0, 4, n), t(F.AGE): rng.integers(0, F.AGE_BUCKETS, n),
        t(F.HOUR): rng.integers(0, 24, n),
        t(F.PREFERRED_GENRES): rng.integers(0, 4, (n, F.MAX_PREFERRED_GENRES)),
        t(F.HISTORY): rng.integers(0, 6, (n, F.MAX_HISTORY)),
        F.WATCHED: rng.integers(0, 6, (n, F.MAX_WATCHED)),
        t(F.DESCRIPTION): rng.integers(0, 10, (n, F.MAX_DESCRIPTION_TOKENS)),
        t(F.DEVICE_TYPE): np.eye(len(F.DEVICE_TYPES) + 1, dtype=np.float32)[
            rng.integers(0, len(F.DEVICE_TYPES) + 1, n)],
        t(F.POPULARITY): rng.normal(size=n).astype(np.float32),
        t(F.RELEASE_YEAR): rng.normal(size=n).astype(np.float32),
        t(F.GENRE_MATCH): rng.integers(0, 2, n).astype(np.float32),
        F.WATCH_TIME_Z: rng.normal(size=n).astype(np.float32),
    }


def _fitted_factors() -> ItemItemFactors:
    rng = np.random.default_rng(1)
    return fit_item_item(rng.integers(0, 5, 60), rng.integers(0, 5, 60), SIZES.titles,
                         ItemItemConfig(rank=3, l2=1.0))


def hybrid_query_tower() -> Tower:
    """A query tower carrying rank-3 item-to-item factors (blend weight 0.25)."""
    tower = query_tower(SIZES, RetrievalConfig())
    tower.attach_item_item(item_item_layers(_fitted_factors(), weight=0.25)[0])
    return tower


def _dataset(features: dict[str, np.ndarray], label: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {**features, F.transformed_name(F.LABEL): label}).batch(64)
