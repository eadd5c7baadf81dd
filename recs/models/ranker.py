"""The deep sigmoid ranker: P(engaged | user, title, context).

Fully connected ReLU layers (default 128 -> 64) over the encoded user, title and context
features, then one sigmoid unit, trained with binary cross-entropy on every logged play
(engaged or not), so its output is a calibrated engagement probability under the logging
distribution.
"""

import tensorflow as tf

from recs import features as F
from recs.config import RankerConfig
from recs.models.encoders import FeatureEncoder, FeatureSizes


class DeepRanker(tf.keras.Model):
    """Encoder -> [Dense(relu) -> Dropout] * len(hidden_layers) -> Dense(1, sigmoid).

    Args:
        sizes: vocabulary sizes from tf.Transform.
        config: layer sizes, dropout, embedding width.

    Call args:
        features: transformed features of `recs.features.RANKER_FEATURES`.

    Returns:
        `[batch_size, 1]` engagement probabilities.
    """

    def __init__(self, sizes: FeatureSizes, config: RankerConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = sizes
        self.config = config
        self.encoder = FeatureEncoder(F.RANKER_FEATURES + F.DERIVED_FEATURES, sizes,
                                      config.embedding_dim)
        self.hidden = []
        for width in config.hidden_layers:
            self.hidden.append(tf.keras.layers.Dense(width, activation="relu"))
            self.hidden.append(tf.keras.layers.Dropout(config.dropout))
        self.output_layer = tf.keras.layers.Dense(1, activation="sigmoid", name="probability")

    def call(self, features: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        x = self.encoder(features)
        for layer in self.hidden:
            x = layer(x, training=training)
        return self.output_layer(x)

    def get_config(self) -> dict:
        return {"sizes": self.sizes.to_dict(), "config": self.config.to_dict(),
                "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "DeepRanker":
        return cls(sizes=FeatureSizes.from_dict(config["sizes"]),
                   config=RankerConfig.from_dict(config["config"]), name=config.get("name"))
