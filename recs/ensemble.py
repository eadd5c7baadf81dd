"""A gradient-boosted tree ranker (TensorFlow Decision Forests) and its blend with the deep one.

The trees read the same transformed features as `recs.models.ranker.DeepRanker`: ids as
categorical features, dense features as numerical ones (multi-column ones such as the
one-hot device type are split into columns by TF-DF). Bags of ids (watch history, preferred
genres, description tokens) are left to the deep ranker: trees split on one column at a time,
and a bag's columns are positions, not features.

Two blends of the probabilities:
- "average": the mean of both models' probabilities.
- "stacked": logistic regression on both models' logits, fitted on a held-out split the
  models were not trained on (so the weights reflect how each generalizes, and the output
  is recalibrated).

Serving: a tree model's SavedModel holds TF-DF's inference ops (`SimpleML*`).
Stock TF Serving lacks them; it needs a model server built with TF-DF's ops, or the
project's local model server (which imports `tensorflow_decision_forests` to load it).
"""

import time

import numpy as np
import tensorflow as tf

from recs import features as F
from recs.config import BLENDS, TreeRankerConfig, require

TREE_CATEGORICAL = (F.USER_ID, F.TITLE_ID, F.COUNTRY, F.SUBSCRIPTION_TIER, F.GENRE, F.AGE,
                    F.HOUR)
TREE_NUMERICAL = (F.DEVICE_TYPE, F.POPULARITY, F.RELEASE_YEAR, F.GENRE_MATCH)
_LABEL = F.transformed_name(F.LABEL)


def tree_features(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The transformed columns the trees read, ids as `[batch_size]` int64."""
    out = {}
    for key in TREE_CATEGORICAL:
        out[key] = tf.reshape(tf.cast(batch[F.transformed_name(key)], tf.int64), [-1])
    for key in TREE_NUMERICAL:
        value = tf.cast(batch[F.transformed_name(key)], tf.float32)
        out[key] = value if value.shape.rank == 2 else tf.reshape(value, [-1])
    return out


def _with_label(batch: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    return tree_features(batch), tf.reshape(tf.cast(batch[_LABEL], tf.int64), [-1])


def train_tree_ranker(train: tf.data.Dataset, evaluation: tf.data.Dataset,
                      config: TreeRankerConfig) -> tuple["TreeRanker", float]:
    """Fits gradient-boosted trees on the engagement label.

    Args:
        train: batches of transformed features, label included (one pass is read).
        evaluation: held-out batches of the same form: TF-DF's early stopping watches them.
        config: tree settings.

    Returns:
        (the fitted trees, training seconds).
    """
    import tensorflow_decision_forests as tfdf

    usage = ([tfdf.keras.FeatureUsage(key, semantic=tfdf.keras.FeatureSemantic.CATEGORICAL,
                                      max_vocab_count=config.max_categories)
              for key in TREE_CATEGORICAL]
             + [tfdf.keras.FeatureUsage(key, semantic=tfdf.keras.FeatureSemantic.NUMERICAL)
                for key in TREE_NUMERICAL])
    model = tfdf.keras.GradientBoostedTreesModel(
        task=tfdf.keras.Task.CLASSIFICATION, features=usage,
        exclude_non_specified_features=True, num_trees=config.num_trees,
        max_depth=config.max_depth, shrinkage=config.shrinkage, random_seed=config.seed,
        verbose=0)
    start = time.perf_counter()
    model.fit(train.map(_with_label), validation_data=evaluation.map(_with_label), verbose=0)
    return TreeRanker(model), time.perf_counter() - start


class TreeRanker(tf.keras.Model):
    """Fitted TF-DF trees that read transformed features, like the deep ranker.

    Call args:
        features: transformed features (the columns `tree_features` picks are read).

    Returns:
        `[batch_size, 1]` engagement probabilities.
    """

    def __init__(self, trees: tf.keras.Model, **kwargs) -> None:
        super().__init__(**kwargs)
        self.trees = trees

    def call(self, features: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        return tf.reshape(self.trees(tree_features(features)), [-1, 1])


def _logit(probability: tf.Tensor) -> tf.Tensor:
    clipped = tf.clip_by_value(probability, 1e-6, 1 - 1e-6)
    return tf.math.log(clipped / (1 - clipped))


class BlendedRanker(tf.keras.Model):
    """The deep ranker and the trees blended: `sigmoid(w_deep * logit(p_deep) +
    w_trees * logit(p_trees) + bias)` when stacked, the mean of the probabilities otherwise.

    Call args:
        features: transformed features (what the deep ranker reads).

    Returns:
        `[batch_size, 1]` engagement probabilities.
    """

    def __init__(self, deep: tf.keras.Model, trees: TreeRanker, blend: str,
                 weights: tuple[float, float, float] = (1.0, 1.0, 0.0), **kwargs) -> None:
        super().__init__(**kwargs)
        require(blend in BLENDS, "blend", f"one of {BLENDS}", blend)
        self.deep = deep
        self.trees = trees
        self.blend = blend
        self.blend_weights = tuple(float(w) for w in weights)

    def call(self, features: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        deep = tf.reshape(self.deep(features, training=False), [-1, 1])
        trees = self.trees(features)
        if self.blend == "average":
            return (deep + trees) / 2.0
        w_deep, w_trees, bias = self.blend_weights
        return tf.sigmoid(w_deep * _logit(deep) + w_trees * _logit(trees) + bias)


def predict(model: tf.keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of `model` over every batch of `dataset`."""
    scores, labels = [], []
    for batch in dataset:
        scores.append(np.asarray(model(batch, training=False)).ravel())
        labels.append(batch[_LABEL].numpy().ravel())
    return np.concatenate(scores), np.concatenate(labels)


def blend(deep: tf.keras.Model, trees: TreeRanker, held_out: tf.data.Dataset,
          config: TreeRankerConfig) -> BlendedRanker:
    """Blends the two rankers; a stacked blend is fitted on `held_out` (logistic regression
    on both logits, as sklearn's default L2-regularized solver fits it)."""
    if config.blend == "average":
        return BlendedRanker(deep, trees, "average")
    from sklearn.linear_model import LogisticRegression

    deep_p, labels = predict(deep, held_out)
    trees_p, _ = predict(trees, held_out)
    stack = LogisticRegression().fit(_logit(np.stack([deep_p, trees_p], axis=1)).numpy(),
                                     labels)
    (w_deep, w_trees), bias = stack.coef_[0], stack.intercept_[0]
    return BlendedRanker(deep, trees, "stacked", (w_deep, w_trees, bias))
