"""The two-tower retrieval model (TensorFlow Recommenders).

The query tower embeds who asks and in which context; the candidate tower embeds a title from
its id, genre, description and popularity, so a title unseen in training still gets a useful
embedding from its metadata. Both outputs are L2-normalized; the retrieval loss is softmax
over in-batch negatives at a configured temperature, with accidental hits (the same title
twice in a batch) removed and, by default, the sampling bias of in-batch negatives corrected
(log-Q); optionally only the hardest in-batch negatives are kept (hard-negative mining).
"""

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recs import features as F
from recs.config import RetrievalConfig
from recs.models.cold_start import (ColdStartPrior, PriorCandidate, PriorQuery,
                                    prior_layers)
from recs.models.encoders import FeatureEncoder, FeatureSizes
from recs.models.item_item import (ItemItemCandidate, ItemItemFactors, ItemItemQuery,
                                   item_item_layers)


class Tower(tf.keras.Model):
    """Feature encoder -> ReLU Dense layers -> linear Dense -> L2 normalization.

    Args:
        keys: raw feature keys the tower reads.
        sizes: vocabulary sizes from tf.Transform.
        config: embedding width and layer sizes.

    Call args:
        features: transformed features.

    Returns:
        `[batch_size, tower_layers[-1]]` unit-norm embeddings; with item-to-item factors
        attached (`attach_item_item`), those `[batch_size, rank]` factors appended, then
        with the cold-start prior attached (`attach_cold_start`) its
        `[batch_size, AGE_BUCKETS]` columns.
    """

    def __init__(self, keys: tuple[str, ...], sizes: FeatureSizes, config: RetrievalConfig,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.keys = tuple(keys)
        self.sizes = sizes
        self.config = config
        self.encoder = FeatureEncoder(self.keys, sizes, config.embedding_dim)
        *hidden, last = config.tower_layers
        self.dense = [tf.keras.layers.Dense(width, activation="relu") for width in hidden]
        self.dense.append(tf.keras.layers.Dense(last))
        self.item_item: tf.keras.layers.Layer | None = None
        self.cold_start: tf.keras.layers.Layer | None = None

    def attach_item_item(self, layer: ItemItemQuery | ItemItemCandidate) -> None:
        """Appends `layer`'s output to the embeddings (`recs.models.item_item`).

        Its variables come after the tower's own, so a warm start or a frozen load of a
        plain tower from an export with the factors still finds every variable it has.
        """
        self.item_item = layer

    def attach_cold_start(self, layer: PriorQuery | PriorCandidate) -> None:
        """Appends `layer`'s output after everything else (`recs.models.cold_start`)."""
        self.cold_start = layer

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        x = self.encoder(features)
        for layer in self.dense:
            x = layer(x)
        parts = [tf.math.l2_normalize(x, axis=1)]
        for part in (self.item_item, self.cold_start):
            if part is not None:
                parts.append(part(features))
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)

    def get_config(self) -> dict:
        return {"keys": list(self.keys), "sizes": self.sizes.to_dict(),
                "config": self.config.to_dict(), "name": self.name,
                "item_item": (None if self.item_item is None
                              else tf.keras.layers.serialize(self.item_item)),
                "cold_start": (None if self.cold_start is None
                               else tf.keras.layers.serialize(self.cold_start))}

    @classmethod
    def from_config(cls, config: dict) -> "Tower":
        tower = cls(keys=tuple(config["keys"]), sizes=FeatureSizes.from_dict(config["sizes"]),
                    config=RetrievalConfig.from_dict(config["config"]), name=config.get("name"))
        if config.get("item_item"):
            tower.attach_item_item(tf.keras.layers.deserialize(
                config["item_item"], custom_objects={"ItemItemQuery": ItemItemQuery,
                                                     "ItemItemCandidate": ItemItemCandidate}))
        if config.get("cold_start"):
            tower.attach_cold_start(tf.keras.layers.deserialize(
                config["cold_start"], custom_objects={"PriorQuery": PriorQuery,
                                                      "PriorCandidate": PriorCandidate}))
        return tower


def query_tower(sizes: FeatureSizes, config: RetrievalConfig) -> Tower:
    return Tower(F.QUERY_FEATURES, sizes, config, name="query_tower")


def candidate_tower(sizes: FeatureSizes, config: RetrievalConfig) -> Tower:
    return Tower(F.CANDIDATE_FEATURES, sizes, config, name="candidate_tower")


class TwoTowerModel(tfrs.Model):
    """Query and candidate towers trained with `tfrs.tasks.Retrieval`.

    Each positive (engaged) interaction is one training pair; longer watches weigh more
    (weight = 0.5 + sigmoid(z-scored log watch time), in (0.5, 1.5)).
    """

    def __init__(self, sizes: FeatureSizes, config: RetrievalConfig) -> None:
        super().__init__()
        self.sizes = sizes
        self.config = config
        self.query_tower = query_tower(sizes, config)
        self.candidate_tower = candidate_tower(sizes, config)
        self.task = tfrs.tasks.Retrieval(temperature=config.temperature,
                                         remove_accidental_hits=True,
                                         num_hard_negatives=config.num_hard_negatives or None)

    def attach_item_item(self, factors: ItemItemFactors, weight: float = 1.0) -> None:
        """Appends fitted item-to-item factors to both towers: the retrieval score becomes
        tower score + `weight` * item-to-item score (`recs.models.item_item`). Call it after
        training; the loss never sees them."""
        query, candidate = item_item_layers(factors, weight)
        self.query_tower.attach_item_item(query)
        self.candidate_tower.attach_item_item(candidate)

    def attach_cold_start(self, prior: ColdStartPrior) -> None:
        """Appends a fitted popularity prior to both towers (`recs.models.cold_start`): the
        retrieval score gains w(user) * log p(title | user's segment). Call it after
        training and after `attach_item_item`."""
        query, candidate = prior_layers(prior, self.sizes.users)
        self.query_tower.attach_cold_start(query)
        self.candidate_tower.attach_cold_start(candidate)

    def _as_new_users(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """A random `cold_start_dropout` share of rows loses its user id (to the OOV id) and
        its watch history (to padding), as a user who just signed up has neither."""
        user_key, history_key = F.transformed_name(F.USER_ID), F.transformed_name(F.HISTORY)
        ids = features[user_key]
        drop = tf.random.uniform(tf.shape(ids)[:1]) < self.config.cold_start_dropout
        out = dict(features)

        def masked(value: tf.Tensor, replacement: tf.Tensor) -> tf.Tensor:
            shape = tf.concat([tf.shape(value)[:1], tf.ones([tf.rank(value) - 1], tf.int32)], 0)
            return tf.where(tf.reshape(drop, shape), replacement, value)

        out[user_key] = masked(ids, tf.fill(tf.shape(ids), tf.cast(self.sizes.users - 1,
                                                                   ids.dtype)))
        if history_key in features:
            out[history_key] = masked(features[history_key],
                                      tf.zeros_like(features[history_key]))
        return out

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if training and self.config.cold_start_dropout > 0:
            features = self._as_new_users(features)
        queries = self.query_tower(features)
        candidates = self.candidate_tower(features)
        weight = None
        if F.WATCH_TIME_Z in features:
            weight = 0.5 + tf.sigmoid(tf.reshape(features[F.WATCH_TIME_Z], [-1]))
        probability = None
        if self.config.logq_correction and F.SAMPLING_PROBABILITY in features:
            probability = tf.reshape(tf.cast(features[F.SAMPLING_PROBABILITY], tf.float32), [-1])
        return self.task(queries, candidates, sample_weight=weight,
                         candidate_sampling_probability=probability,
                         candidate_ids=tf.reshape(features[F.transformed_name(F.TITLE_ID)], [-1]),
                         compute_metrics=False)
