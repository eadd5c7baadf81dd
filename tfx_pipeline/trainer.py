"""Thin `run_fn` adapters: TFX FnArgs in, recs training and export, artifacts out.

Both warm-start from the Trainer's `base_model` when the pipeline hands one over (the last
blessed model: incremental learning across retrains). Both run on one worker or many: a
launcher that starts several Trainer processes with a `TF_CONFIG` cluster (Vertex AI's
training extension, a Kubeflow TFJob) gets multi-worker mirrored training, and only the chief
writes the model and the run outputs.
"""

import json
import logging
import os
from collections.abc import Callable

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.config import RankerConfig, RetrievalConfig, TrainingConfig
from recs.contract.components import METRICS_FILE, TRAINING_CURVES_FILE
from recs.distribute import is_chief, save_target, strategy_from_environment
from recs.assembly import export_ranker, export_towers
from recs.models.encoders import FeatureSizes
from recs.models.retrieval import Tower, candidate_tower, query_tower
from recs.plots import plot_training_curves
from recs.training import TrainingResult, train_ranker, train_retrieval
from recs.warm_start import WarmStartReport, load_frozen, warm_start
from tfx_pipeline.components import RETRIEVAL_MODEL_KEY

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

RETRIEVAL_CONFIG_KEY = "retrieval"
RANKER_CONFIG_KEY = "ranker"


def _inputs(fn_args: tfx.components.FnArgs, training: TrainingConfig
            ) -> tuple[tft.TFTransformOutput, tf.data.Dataset, tf.data.Dataset]:
    """The transform output and one pass each over the (shuffled) train and eval splits."""
    transform_output = tft.TFTransformOutput(fn_args.transform_output)

    def dataset(files: list[str], shuffle: bool) -> tf.data.Dataset:
        options = tfxio.TensorFlowDatasetOptions(batch_size=training.batch_size, num_epochs=1,
                                                 shuffle=shuffle, shuffle_seed=training.seed)
        return fn_args.data_accessor.tf_dataset_factory(
            files, options, transform_output.transformed_metadata.schema)
    return (transform_output, dataset(fn_args.train_files, True),
            dataset(fn_args.eval_files, False))


def _write_run_outputs(fn_args: tfx.components.FnArgs, result: TrainingResult, title: str,
                       panels: dict[str, str], warm_started: dict[str, WarmStartReport],
                       towers: dict[str, WarmStartReport] | None = None) -> None:
    """Writes `metrics.json` (held-out metrics, per-epoch history, warm start and tower loads)
    and `training_curves.png` (the `panels` of the history, one axis each) to the model run
    directory."""
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    def by_part(reports: dict[str, WarmStartReport]) -> dict[str, dict]:
        return {part: report.to_dict() for part, report in reports.items()}

    outputs = {"metrics": result.metrics, "history": result.history,
               "warm_start": {"base_model": fn_args.base_model, **by_part(warm_started)}}
    if towers:
        outputs["towers"] = {"retrieval_model": fn_args.custom_config[RETRIEVAL_MODEL_KEY],
                             **by_part(towers)}
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, METRICS_FILE), "w") as handle:
        json.dump(outputs, handle, indent=2)
    plot_training_curves(result.history, title,
                         os.path.join(fn_args.model_run_dir, TRAINING_CURVES_FILE), panels)


def _warm_start(fn_args: tfx.components.FnArgs, transform_output: tft.TFTransformOutput,
                parts: Callable[[tf.keras.Model], dict[str, tf.keras.Model]],
                reports: dict[str, WarmStartReport]) -> Callable[[tf.keras.Model], None] | None:
    """The initializer that loads the base model (the last blessed one), if the Trainer got
    one; each part's report lands in `reports`."""
    if not fn_args.base_model:
        return None

    def initialize(model: tf.keras.Model) -> None:
        for prefix, part in parts(model).items():
            reports[prefix] = warm_start(part, fn_args.base_model, prefix,
                                         transform_output.vocabulary_by_name)
            logging.info("warm start of %s from %s: %s", prefix, fn_args.base_model,
                         reports[prefix])
    return initialize


def run_retrieval(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point of the two-tower retrieval model."""
    strategy = strategy_from_environment()
    config = RetrievalConfig.from_dict(fn_args.custom_config[RETRIEVAL_CONFIG_KEY])
    transform_output, train, evaluation = _inputs(fn_args, config.training)
    reports: dict[str, WarmStartReport] = {}
    initialize = _warm_start(fn_args, transform_output, lambda model: {
        "query_tower": model.query_tower, "candidate_tower": model.candidate_tower}, reports)
    sizes = FeatureSizes.from_transform_output(transform_output)
    result = train_retrieval(train, evaluation, sizes, config, strategy, initialize)
    with save_target(fn_args.serving_model_dir, strategy) as target:
        export_towers(transform_output, result.model, target)
    if is_chief(strategy):
        # The towers' own recall by epoch; metrics.json's final Recall@K also counts the
        # item-to-item part when `config.item_item` is on.
        _write_run_outputs(fn_args, result, "two-tower retrieval",
                           {"loss": "in-batch softmax loss (epoch mean)",
                            f"recall_at_{config.eval_k}": f"Recall@{config.eval_k}, exact "
                                                          "search (validation)"}, reports)


def _ranker_prefix(base_model: str) -> str:
    """The deep ranker's path in a base export: `ranker`, or `ranker/deep` when the base
    was a blend with trees (`RankerConfig.trees`)."""
    reader = tf.train.load_checkpoint(os.path.join(base_model, "variables", "variables"))
    blended = reader.has_tensor("ranker/deep/variables/0/.ATTRIBUTES/VARIABLE_VALUE")
    return "ranker/deep" if blended else "ranker"


def _retrieval_towers(fn_args: tfx.components.FnArgs, transform_output: tft.TFTransformOutput,
                      strategy: tf.distribute.Strategy, batch: dict[str, tf.Tensor],
                      reports: dict[str, WarmStartReport]) -> tuple[Tower, Tower]:
    """The retrieval model's towers, rebuilt from its config and loaded from its export;
    each tower's load report lands in `reports`.

    Raises:
        ValueError: the RankerTrainer got no retrieval model.
    """
    if not fn_args.custom_config.get(RETRIEVAL_MODEL_KEY):
        raise ValueError("RankerConfig.tower_features is on but the RankerTrainer got no "
                         "retrieval_model; wire the RetrievalTrainer's model into it "
                         "(tfx_pipeline.pipeline does when tower_features is on).")
    config = RetrievalConfig.from_dict(fn_args.custom_config[RETRIEVAL_CONFIG_KEY])
    sizes = FeatureSizes.from_transform_output(transform_output)
    with strategy.scope():
        towers = query_tower(sizes, config), candidate_tower(sizes, config)
        for tower in towers:
            tower(batch)  # Builds the variables, under the strategy that will train with them.
    for tower in towers:
        reports[tower.name] = load_frozen(tower, fn_args.custom_config[RETRIEVAL_MODEL_KEY],
                                          tower.name, transform_output.vocabulary_by_name)
        logging.info("%s loaded from %s: %s", tower.name,
                     fn_args.custom_config[RETRIEVAL_MODEL_KEY], reports[tower.name])
    return towers


def run_ranker(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point of the deep sigmoid ranker (blended with gradient-boosted trees
    when `RankerConfig.trees.enabled`; reading the retrieval towers' embeddings when
    `RankerConfig.tower_features`, from the RankerTrainer's `retrieval_model`)."""
    strategy = strategy_from_environment()
    config = RankerConfig.from_dict(fn_args.custom_config[RANKER_CONFIG_KEY])
    transform_output, train, evaluation = _inputs(fn_args, config.training)
    towers, loaded = None, {}
    if config.tower_features:
        towers = _retrieval_towers(fn_args, transform_output, strategy, next(iter(train)),
                                   loaded)
    reports: dict[str, WarmStartReport] = {}
    initialize = _warm_start(fn_args, transform_output,
                             lambda model: {_ranker_prefix(fn_args.base_model): model}, reports)
    sizes = FeatureSizes.from_transform_output(transform_output)
    result = train_ranker(train, evaluation, sizes, config, strategy, initialize, towers)
    with save_target(fn_args.serving_model_dir, strategy) as target:
        export_ranker(transform_output, result.model, target)
    if is_chief(strategy):
        _write_run_outputs(fn_args, result, "deep sigmoid ranker",
                           {"auc": "AUC", "log_loss": "log loss"}, reports, loaded)
