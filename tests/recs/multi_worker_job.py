"""One training task of tests/recs/test_distribute.py: run alone, or as one worker of a cluster.

    python tests/recs/multi_worker_job.py OUT_DIR      # TF_CONFIG decides single or multi-worker

Trains the ranker (no dropout, so every replica computes the same function) and the two-tower
model on seeded data whose label has a learnable rule, then, on the chief only, writes the
ranker's weights (`ranker_weights.npz`) and both models' metrics (`metrics.json`). Every worker
saves the ranker as a SavedModel through `save_target`, as the TFX Trainer does.
"""

import json
import pathlib
import sys

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import distribute
from recs import features as F
from recs.config import RankerConfig, RetrievalConfig, TrainingConfig
from recs.models.encoders import FeatureSizes
from recs.training import train_ranker, train_retrieval

import numpy as np
import tensorflow as tf

SIZES = FeatureSizes(users=30, titles=20, countries=3, subscription_tiers=3, genres=4,
                     description_tokens=10)
GLOBAL_BATCH = 64


def _dataset(n: int, seed: int) -> tf.data.Dataset:
    """Rows whose label is 1 when the title's genre matches the user's first preferred one."""
    rng = np.random.default_rng(seed)
    t = F.transformed_name
    users = rng.integers(1, SIZES.users, n)
    titles = rng.integers(1, SIZES.titles, n)
    genre_of_title = np.arange(SIZES.titles) % (SIZES.genres - 1) + 1
    genre_of_user = np.arange(SIZES.users) % (SIZES.genres - 1) + 1
    match = (genre_of_title[titles] == genre_of_user[users]).astype(np.int64)
    columns = {
        t(F.USER_ID): users, t(F.TITLE_ID): titles,
        t(F.COUNTRY): rng.integers(0, 3, n), t(F.SUBSCRIPTION_TIER): rng.integers(0, 3, n),
        t(F.GENRE): genre_of_title[titles], t(F.AGE): rng.integers(0, F.AGE_BUCKETS, n),
        t(F.HOUR): rng.integers(0, 24, n),
        t(F.PREFERRED_GENRES): np.stack([genre_of_user[users]] + [
            np.zeros(n, np.int64)] * (F.MAX_PREFERRED_GENRES - 1), axis=1),
        t(F.HISTORY): rng.integers(0, SIZES.titles, (n, F.MAX_HISTORY)),
        t(F.DESCRIPTION): rng.integers(0, 10, (n, F.MAX_DESCRIPTION_TOKENS)),
        t(F.DEVICE_TYPE): np.eye(len(F.DEVICE_TYPES) + 1, dtype=np.float32)[
            rng.integers(0, len(F.DEVICE_TYPES) + 1, n)],
        t(F.POPULARITY): rng.normal(size=n).astype(np.float32),
        t(F.RELEASE_YEAR): rng.normal(size=n).astype(np.float32),
        t(F.GENRE_MATCH): match.astype(np.float32),
        F.WATCH_TIME_Z: rng.normal(size=n).astype(np.float32),
        t(F.SAMPLING_PROBABILITY): np.full(n, 0.05, np.float32),
        t(F.LABEL): match,
    }
    return tf.data.Dataset.from_tensor_slices(columns).batch(GLOBAL_BATCH)


def main(out: pathlib.Path) -> None:
    strategy = distribute.strategy_from_environment()
    train, evaluation = _dataset(2048, seed=1), _dataset(512, seed=2)
    training = TrainingConfig(batch_size=GLOBAL_BATCH, epochs=3, learning_rate=0.01, seed=5)
    ranker = train_ranker(train, evaluation, SIZES,
                          RankerConfig(dropout=0.0, hidden_layers=(32, 16), training=training),
                          strategy)
    retrieval = train_retrieval(train, evaluation, SIZES,
                                RetrievalConfig(embedding_dim=8, tower_layers=(16,), eval_k=5,
                                                training=training), strategy)
    with distribute.save_target(str(out / "ranker_model"), strategy) as target:
        tf.saved_model.save(ranker.model, target)
    if distribute.is_chief(strategy):
        np.savez(out / "ranker_weights.npz", *ranker.model.get_weights())
        (out / "metrics.json").write_text(json.dumps({
            "replicas": strategy.num_replicas_in_sync,
            "ranker": ranker.metrics, "ranker_history": ranker.history,
            "retrieval": retrieval.metrics, "retrieval_history": retrieval.history}))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
