"""Turns a dict of transformed features into one dense vector per example."""

import dataclasses
from typing import Any

import tensorflow as tf

from recs import features as F
from recs.config import Config, require


@dataclasses.dataclass(frozen=True)
class FeatureSizes(Config):
    """Vocabulary sizes learned by tf.Transform, out-of-vocabulary or padding slot included.

    Attributes:
        users: user-id vocabulary + 1 OOV bucket.
        titles: title-id vocabulary + 1 OOV bucket.
        countries: country vocabulary + 1 OOV bucket.
        subscription_tiers: tier vocabulary + 1 OOV bucket.
        genres: genre vocabulary + 1 (the OOV bucket of `genre`, the padding id of
            `preferred_genres`).
        description_tokens: description word vocabulary + 1 padding id.
    """

    users: int
    titles: int
    countries: int
    subscription_tiers: int
    genres: int
    description_tokens: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            require(isinstance(value, int) and value > 0, field.name, "a positive int", value)

    @classmethod
    def from_transform_output(cls, transform_output: Any) -> "FeatureSizes":
        """Reads the vocabulary sizes of a `tft.TFTransformOutput`, adding the OOV/padding
        slot."""
        size = transform_output.vocabulary_size_by_name
        return cls(users=size(F.USER_ID) + 1, titles=size(F.TITLE_ID) + 1,
                   countries=size(F.COUNTRY) + 1,
                   subscription_tiers=size(F.SUBSCRIPTION_TIER) + 1,
                   genres=size(F.GENRE_VOCABULARY) + 1,
                   description_tokens=size(F.DESCRIPTION_VOCABULARY) + 1)

    def vocabulary_size(self, key: str) -> int:
        """Returns the embedding table size of categorical raw feature `key`."""
        sizes = {
            F.USER_ID: self.users, F.TITLE_ID: self.titles, F.COUNTRY: self.countries,
            F.SUBSCRIPTION_TIER: self.subscription_tiers, F.GENRE: self.genres,
            F.PREFERRED_GENRES: self.genres, F.DESCRIPTION: self.description_tokens,
            # Title-vocabulary ids + 1 with 0 as padding: the same range as title ids + OOV.
            F.HISTORY: self.titles,
            F.AGE: F.AGE_BUCKETS, F.HOUR: F.HOURS_PER_DAY,
        }
        return sizes[key]


_BAG_FEATURES = frozenset({F.PREFERRED_GENRES, F.DESCRIPTION, F.HISTORY})
_DENSE_FEATURES = frozenset({F.DEVICE_TYPE, F.POPULARITY, F.RELEASE_YEAR, F.GENRE_MATCH})


class FeatureEncoder(tf.keras.layers.Layer):
    """Embeds categorical features, mean-pools bags of ids, passes dense features through.

    Args:
        keys: raw feature keys to encode; their transformed forms are read.
        sizes: vocabulary sizes from tf.Transform.
        embedding_dim: width of every embedding.

    Call args:
        features: transformed features, `[batch_size]` ids, `[batch_size, length]` id bags
            (0 = padding), `[batch_size, n]` or `[batch_size]` floats.

    Returns:
        `[batch_size, output_dim]` float32, the concatenation in `keys` order.
    """

    def __init__(self, keys: tuple[str, ...], sizes: FeatureSizes, embedding_dim: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(keys) - set(F.RANKER_FEATURES) - set(F.DERIVED_FEATURES))
        if unknown:
            raise ValueError(f"keys {unknown} are not model input features; expected a subset "
                             f"of {F.RANKER_FEATURES + F.DERIVED_FEATURES}.")
        self.keys = tuple(keys)
        self.sizes = sizes
        self.embedding_dim = embedding_dim
        self.embeddings = {
            key: tf.keras.layers.Embedding(sizes.vocabulary_size(key), embedding_dim,
                                           name=f"{key}_embedding")
            for key in self.keys if key not in _DENSE_FEATURES
        }

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = []
        for key in self.keys:
            value = features[F.transformed_name(key)]
            if key in _DENSE_FEATURES:
                parts.append(tf.reshape(tf.cast(value, tf.float32),
                                        [-1, value.shape[-1] if value.shape.rank == 2 else 1]))
            elif key in _BAG_FEATURES:
                parts.append(self._mean_of_bag(self.embeddings[key], value))
            else:
                parts.append(self.embeddings[key](tf.reshape(value, [-1])))
        return tf.concat(parts, axis=1)

    @staticmethod
    def _mean_of_bag(embedding: tf.keras.layers.Embedding, ids: tf.Tensor) -> tf.Tensor:
        vectors = embedding(ids)  # [batch_size, length, dim]
        mask = tf.cast(tf.not_equal(ids, 0), tf.float32)[..., tf.newaxis]
        return tf.reduce_sum(vectors * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1),
                                                                  1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "keys": list(self.keys),
                "sizes": self.sizes.to_dict(), "embedding_dim": self.embedding_dim}

    @classmethod
    def from_config(cls, config: dict) -> "FeatureEncoder":
        config = dict(config)
        config["keys"] = tuple(config["keys"])
        config["sizes"] = FeatureSizes.from_dict(config["sizes"])
        return cls(**config)
