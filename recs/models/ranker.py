"""The deep sigmoid ranker: P(engaged | user, title, context).

Fully connected ReLU layers (default 128 -> 64) over the encoded user, title and context
features, then one sigmoid unit, trained with binary cross-entropy on every logged play
(engaged or not), so its output is a calibrated engagement probability under the logging
distribution. With `RankerConfig.tower_features` the layers also read what retrieval thinks
of the pair: the query and title embeddings of the two towers, frozen, and their dot product.
"""

import tensorflow as tf

from recs import features as F
from recs.config import RankerConfig
from recs.models.encoders import FeatureEncoder, FeatureSizes
from recs.models.retrieval import Tower


class DeepRanker(tf.keras.Model):
    """Encoder [+ frozen towers] -> [Dense(relu) -> Dropout] * len(hidden_layers) ->
    Dense(1, sigmoid).

    Args:
        sizes: vocabulary sizes from tf.Transform.
        config: layer sizes, dropout, embedding width, whether to read the towers.
        towers: the retrieval model's (query tower, candidate tower), needed exactly when
            `config.tower_features`; they are frozen here (not trained by the ranker's loss),
            so their weights are the ones loaded into them (`recs.warm_start.load_frozen`).

    Call args:
        features: transformed features of `recs.features.RANKER_FEATURES`.

    Returns:
        `[batch_size, 1]` engagement probabilities.

    Raises:
        ValueError: `towers` is given without `config.tower_features`, or missing with it.
    """

    def __init__(self, sizes: FeatureSizes, config: RankerConfig,
                 towers: tuple[Tower, Tower] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if config.tower_features != (towers is not None):
            raise ValueError(
                f"RankerConfig.tower_features is {config.tower_features} but towers "
                f"{'were' if towers is not None else 'were not'} given; pass the retrieval "
                "model's (query_tower, candidate_tower) exactly when tower_features is on.")
        self.sizes = sizes
        self.config = config
        self.encoder = FeatureEncoder(F.RANKER_FEATURES + F.DERIVED_FEATURES, sizes,
                                      config.embedding_dim)
        self.towers = list(towers or ())
        for tower in self.towers:
            tower.trainable = False
        self.hidden = []
        for width in config.hidden_layers:
            self.hidden.append(tf.keras.layers.Dense(width, activation="relu"))
            self.hidden.append(tf.keras.layers.Dropout(config.dropout))
        self.output_layer = tf.keras.layers.Dense(1, activation="sigmoid", name="probability")

    def call(self, features: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        x = self.encoder(features)
        if self.towers:
            query, title = (tower(features) for tower in self.towers)
            score = tf.reduce_sum(query * title, axis=1, keepdims=True)  # [batch_size, 1]
            x = tf.concat([x, query, title, score], axis=1)
        for layer in self.hidden:
            x = layer(x, training=training)
        return self.output_layer(x)

    def get_config(self) -> dict:
        return {"sizes": self.sizes.to_dict(), "config": self.config.to_dict(),
                "towers": [tower.get_config() for tower in self.towers], "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "DeepRanker":
        towers = tuple(Tower.from_config(tower) for tower in config.get("towers", ()))
        return cls(sizes=FeatureSizes.from_dict(config["sizes"]),
                   config=RankerConfig.from_dict(config["config"]), towers=towers or None,
                   name=config.get("name"))
