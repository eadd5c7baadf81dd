"""Multi-worker training on TensorFlow's own distribution strategies.

A trainer finds its cluster in `TF_CONFIG`, the variable every TensorFlow launcher sets
(Kubeflow's TFJob, Vertex AI custom jobs, a hand-written script):

    {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}

With more than one worker in it, training runs under `tf.distribute.MultiWorkerMirroredStrategy`:
every worker holds a full copy of the variables, each step splits the global batch across the
workers and sums the gradients with collective all-reduce, so the update equals the one-worker
update on the same global batch. Without it (or with a one-task cluster), the default strategy.

The two-tower model's in-batch softmax then draws its negatives from each worker's share of
the batch, not from the whole global batch: multiply `TrainingConfig.batch_size` by the number of
workers to keep the negatives per positive unchanged.

For embedding tables too large for one machine's memory (hundreds of millions of ids),
`tf.distribute.ParameterServerStrategy` shards variables over parameter servers instead; Keras
2's `fit` drives it with a `ClusterCoordinator`. This module does not choose it automatically:
its datasets must be built per worker inside a `DatasetCreator`.
"""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping

import tensorflow as tf

TF_CONFIG = "TF_CONFIG"


def cluster_size(environ: Mapping[str, str] | None = None) -> int:
    """Number of training tasks (chief and workers) in `TF_CONFIG`; 1 when unset.

    Raises:
        ValueError: `TF_CONFIG` is set but is not JSON with a `cluster` mapping.
    """
    raw = (os.environ if environ is None else environ).get(TF_CONFIG, "")
    if not raw:
        return 1
    try:
        cluster = json.loads(raw)["cluster"]
        return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{TF_CONFIG} must be JSON like {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
            f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}; received {raw!r} ({error}).") \
            from error


def strategy_from_environment(environ: Mapping[str, str] | None = None
                              ) -> tf.distribute.Strategy:
    """The strategy `TF_CONFIG` asks for: multi-worker mirrored, or the default one.

    Create it first thing in the process: `MultiWorkerMirroredStrategy` starts the worker's
    collective-ops server and must exist before other TensorFlow ops run.
    """
    if cluster_size(environ) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True where the model is saved for real: the chief, else worker 0, else single-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shards across workers by element, not by file.

    TFX hands each split over as a few files; file sharding would leave workers without data
    when there are fewer files than workers, so each worker takes its part of every batch.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


@contextlib.contextmanager
def save_target(path: str, strategy: tf.distribute.Strategy) -> Iterator[str]:
    """Where this worker saves a model: `path` on the chief, a discarded directory elsewhere.

    Under a multi-worker strategy every worker must take part in saving (variables are read
    with collective ops), but only the chief's copy is kept.
    """
    if is_chief(strategy):
        yield path
        return
    scratch = tempfile.mkdtemp(prefix="recs-worker-save-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
