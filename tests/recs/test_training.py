"""The Trainers' curves: per-epoch means of the in-batch loss (not each epoch's last batch),
and validation Recall@K per epoch (their plot: tests/recs/test_plots.py)."""

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import ColdStartConfig, ItemItemConfig, RetrievalConfig, TrainingConfig
from recs.models.retrieval import TwoTowerModel
from recs.training import EpochMeans, engaged_only, train_retrieval
from tests.recs._helpers import SIZES, _dataset, _features


def test_epoch_means_replace_the_last_batch_by_the_mean_of_the_epoch():
    means = EpochMeans()
    means.on_epoch_begin(0)
    for loss in (3.0, 1.0, 0.5):  # Mean 1.5; Keras would keep the last batch's 0.5.
        means.on_train_batch_end(0, {"loss": loss, "regularization_loss": 0.0})
    means.on_test_begin()
    for loss in (4.0, 2.0):  # Mean 3.0.
        means.on_test_batch_end(0, {"loss": loss})
    logs = {"loss": 0.5, "regularization_loss": 0.0, "val_loss": 2.0, "val_recall_at_5": 0.4}
    means.on_epoch_end(0, logs)
    assert logs == {"loss": 1.5, "regularization_loss": 0.0, "val_loss": 3.0,
                    "val_recall_at_5": 0.4}
    # The next epoch starts from nothing: one batch of 2.0 means 2.0.
    means.on_epoch_begin(1)
    means.on_train_batch_end(0, {"loss": 2.0})
    logs = {"loss": 2.0}
    means.on_epoch_end(1, logs)
    assert logs == {"loss": 2.0}


class _BatchLosses(tf.keras.callbacks.Callback):
    """Records every training batch's loss, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[list[float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append([])

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.epochs[-1].append(float(logs["loss"]))


def _retrieval_config(epochs: int, k: int) -> RetrievalConfig:
    # The towers alone: the parts attached after training would make the returned model
    # differ from the one each epoch's validation recall measured.
    return RetrievalConfig(embedding_dim=8, tower_layers=(16,), eval_k=k,
                           item_item=ItemItemConfig(enabled=False),
                           cold_start=ColdStartConfig(enabled=False),
                           training=TrainingConfig(batch_size=64, epochs=epochs,
                                                   learning_rate=0.1, optimizer="adagrad"))


@pytest.mark.parametrize("with_means", [True, False])
def test_the_history_holds_the_epoch_mean_of_the_retrieval_loss(with_means):
    # 200 engaged rows in batches of 64: 64, 64, 64 and a partial 8, whose loss over 8
    # in-batch candidates is far from the others'. Without EpochMeans the history keeps it.
    features = _features(200, seed=4)
    data = _dataset(features, np.ones(200, dtype=np.int64)).map(engaged_only)
    config = _retrieval_config(epochs=2, k=3)
    tf.keras.utils.set_random_seed(0)
    model = TwoTowerModel(SIZES, config)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    batches = _BatchLosses()
    history = model.fit(data, epochs=2, verbose=0,
                        callbacks=[EpochMeans(), batches] if with_means else [batches])
    assert [len(losses) for losses in batches.epochs] == [4, 4]
    means = [float(np.mean(losses)) for losses in batches.epochs]
    last = [losses[-1] for losses in batches.epochs]
    assert abs(means[0] - last[0]) > 1e-3  # The test can tell the two apart.
    expected = means if with_means else last
    assert history.history["loss"] == pytest.approx(expected, rel=1e-5)


def test_retrieval_training_writes_validation_recall_per_epoch():
    # As in test_retrieval: user u always engages with title (u + 1) % 6.
    features = _features(1200, seed=3)
    user = features[F.transformed_name(F.USER_ID)]
    features[F.transformed_name(F.TITLE_ID)] = (user + 1) % 6
    data = _dataset(features, np.ones(1200, dtype=np.int64))
    result = train_retrieval(data, data, SIZES, _retrieval_config(epochs=3, k=1))
    recall = result.history["val_recall_at_1"]
    assert len(recall) == 3 and all(0.0 <= value <= 1.0 for value in recall)
    # The last epoch's validation recall is the returned model's: the same exact search.
    assert recall[-1] == pytest.approx(result.metrics["recall_at_1"])
    assert len(result.history["loss"]) == len(result.history["val_loss"]) == 3
