"""The TFX pipeline, components in data-flow order.

    ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator
                     -> Transform -> RetrievalTrainer -> IndexBuilder -> Pushers (retrieval,
                                                                         retrieval_exact, towers)
                              \\-> RankerTrainer -> Evaluator (AUC gate) -> Pusher (ranker)
                                   LatestBlessedRanker -/ (champion: the last blessed ranker)

The RankerTrainer also takes the RetrievalTrainer's model when the ranker reads the towers'
embeddings (`RankerConfig.tower_features`).

The two Trainers warm-start from the last blessed model of their kind (LatestBlessedRanker,
LatestBlessedRetrieval: blessed by the IndexBuilder's recall gate) when `warm_start` is on.
"""

import recs  # noqa: F401  (selects Keras 2 before TFX imports TensorFlow)

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from ml_metadata.proto import metadata_store_pb2

from recs import features as F
from recs.contract import components as ids
from recs.contract import models as C
from recs.contract.signatures import PROBABILITY
from tfx_pipeline import trainer
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.components import IndexBuilder, RankerTrainer, RecommenderBuilder

PREPROCESSING_FN = "transforms.preprocessing.preprocessing_fn"


CANDIDATE = "candidate"
BASELINE = "baseline"


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """The ranker's evaluation: an absolute AUC gate, and no worse than the champion.

    The change threshold needs the baseline model (the last blessed ranker); without one
    (the first run) the Evaluator drops it and only the absolute gate applies.
    """
    auc_gate = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.min_ranker_auc}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.max_auc_drop}))
    spec = dict(signature_name="serving_tf_example", label_key=F.LABEL,
                prediction_key=PROBABILITY)
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name=CANDIDATE, **spec),
                     tfma.ModelSpec(name=BASELINE, is_baseline=True, **spec)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[F.DEVICE_TYPE])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # The gate applies to the overall slice; per-device AUCs are reported, not gated
            # (small slices are too noisy to block a push on).
            tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                             threshold=auc_gate)]),
            tfma.MetricConfig(class_name="BinaryCrossentropy"),
            tfma.MetricConfig(class_name="MeanLabel"),
            tfma.MetricConfig(class_name="MeanPrediction"),
            tfma.MetricConfig(class_name="CalibrationPlot"),
        ])])


def _latest_blessed(trainer_id: str, blesser_id: str, resolver_id: str) -> tfx.dsl.Resolver:
    """The newest model of `trainer_id` that `blesser_id` blessed (none on the first run)."""
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                              producer_component_id=trainer_id, output_key=ids.MODEL),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                       producer_component_id=blesser_id,
                                       output_key=ids.BLESSING)).with_id(resolver_id)


def _pusher(model: tfx.dsl.Channel, blessing: tfx.dsl.Channel, config: PipelineConfig,
            name: str) -> tfx.components.Pusher:
    destination = tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
        base_directory=config.serving_dir(name)))
    return tfx.components.Pusher(model=model, model_blessing=blessing,
                                 push_destination=destination).with_id(ids.pusher_id(name))


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """Builds the pipeline; the same object runs locally or compiles for Kubeflow v2."""
    train_buckets, eval_buckets = config.eval_buckets
    example_gen = tfx.components.ImportExampleGen(
        input_base=config.examples_dir,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="interactions", pattern=config.examples_pattern)]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=train_buckets),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=eval_buckets)]))
    ).with_id(ids.IMPORT_EXAMPLE_GEN)
    examples = example_gen.outputs[ids.EXAMPLES]
    statistics_gen = tfx.components.StatisticsGen(examples=examples).with_id(ids.STATISTICS_GEN)
    statistics = statistics_gen.outputs[ids.STATISTICS]
    schema_gen = tfx.components.SchemaGen(statistics=statistics, infer_feature_shape=True
                                          ).with_id(ids.SCHEMA_GEN)
    schema = schema_gen.outputs[ids.SCHEMA]
    example_validator = tfx.components.ExampleValidator(statistics=statistics, schema=schema
                                                        ).with_id(ids.EXAMPLE_VALIDATOR)
    transform = tfx.components.Transform(examples=examples, schema=schema,
                                         preprocessing_fn=PREPROCESSING_FN
                                         ).with_id(ids.TRANSFORM)

    champion = _latest_blessed(ids.RANKER_TRAINER, ids.EVALUATOR, ids.LATEST_BLESSED_RANKER)
    last_retrieval = _latest_blessed(ids.RETRIEVAL_TRAINER, ids.INDEX_BUILDER,
                                     ids.LATEST_BLESSED_RETRIEVAL)

    common = dict(examples=transform.outputs["transformed_examples"],
                  transform_graph=transform.outputs["transform_graph"], schema=schema)
    retrieval_trainer = tfx.components.Trainer(
        run_fn="tfx_pipeline.trainer.run_retrieval",
        custom_config={trainer.RETRIEVAL_CONFIG_KEY: config.retrieval.to_dict()},
        base_model=last_retrieval.outputs[ids.MODEL] if config.warm_start else None,
        **common).with_id(ids.RETRIEVAL_TRAINER)
    ranker_trainer = RankerTrainer(
        run_fn="tfx_pipeline.trainer.run_ranker",
        custom_config={trainer.RANKER_CONFIG_KEY: config.ranker.to_dict(),
                       trainer.RETRIEVAL_CONFIG_KEY: config.retrieval.to_dict()},
        base_model=champion.outputs[ids.MODEL] if config.warm_start else None,
        retrieval_model=(retrieval_trainer.outputs[ids.MODEL]
                         if config.ranker.tower_features else None),
        **common).with_id(ids.RANKER_TRAINER)
    evaluator = tfx.components.Evaluator(examples=examples,
                                         model=ranker_trainer.outputs[ids.MODEL],
                                         baseline_model=champion.outputs[ids.MODEL],
                                         eval_config=eval_config(config)).with_id(ids.EVALUATOR)
    index_builder = IndexBuilder(model=retrieval_trainer.outputs[ids.MODEL], examples=examples,
                                 catalogue_uri=config.catalogue_path,
                                 index_config=config.index.to_json()).with_id(ids.INDEX_BUILDER)
    index_blessing = index_builder.outputs[ids.BLESSING]
    recommender_builder = RecommenderBuilder(
        transform_graph=transform.outputs["transform_graph"],
        ranker_model=ranker_trainer.outputs[ids.MODEL],
        ranker_blessing=evaluator.outputs[ids.BLESSING],
        scann_model=index_builder.outputs["scann_model"],
        exact_model=index_builder.outputs["exact_model"], index_blessing=index_blessing,
        catalogue_uri=config.catalogue_path).with_id(ids.RECOMMENDER_BUILDER)
    recommender_blessing = recommender_builder.outputs[ids.BLESSING]
    pushers = [
        _pusher(ranker_trainer.outputs[ids.MODEL], evaluator.outputs[ids.BLESSING], config,
                C.RANKER),
        _pusher(index_builder.outputs["scann_model"], index_blessing, config, C.RETRIEVAL),
        _pusher(index_builder.outputs["exact_model"], index_blessing, config,
                C.RETRIEVAL_EXACT),
        _pusher(index_builder.outputs["towers_model"], index_blessing, config, C.TOWERS),
        _pusher(recommender_builder.outputs["recommender_model"], recommender_blessing, config,
                C.RECOMMENDER),
        _pusher(recommender_builder.outputs["recommender_exact_model"], recommender_blessing,
                config, C.RECOMMENDER_EXACT),
    ]
    metadata = None
    if config.metadata_path:
        metadata = metadata_store_config(config.metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                    champion, last_retrieval, retrieval_trainer, ranker_trainer, evaluator,
                    index_builder, recommender_builder, *pushers],
        metadata_connection_config=metadata, beam_pipeline_args=list(config.beam_args),
        enable_cache=config.enable_cache)


def metadata_store_config(path: str) -> metadata_store_pb2.ConnectionConfig:
    """The SQLite ML-Metadata connection of a local run (the runner's and for reading back)."""
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(path)
