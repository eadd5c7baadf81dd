"""RankerTrainer: TFX's Trainer with one more input, the retrieval model of the same run.

The ranker reads the retrieval towers' embeddings (`RankerConfig.tower_features`), so its
Trainer needs the retrieval Trainer's model beside the `base_model` it warm-starts from. The
stock Trainer takes one model input; this component is the stock Trainer (same spec, same
executor, same `run_fn` contract) plus an optional `retrieval_model` channel, whose serving
directory reaches `run_fn` as `fn_args.custom_config[RETRIEVAL_MODEL_KEY]`. The lineage in
ML-Metadata records which retrieval model each ranker was built on.
"""

from typing import Any

from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.components.trainer import fn_args_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, component_spec, standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import json_utils, path_utils

RETRIEVAL_MODEL_KEY = "retrieval_model"


class RankerTrainerSpec(standard_component_specs.TrainerSpec):
    """TrainerSpec with the optional `retrieval_model` input."""

    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        RETRIEVAL_MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model,
                                                             optional=True),
    }


class RankerTrainerExecutor(trainer_executor.GenericExecutor):
    """The stock Trainer executor; `custom_config` also carries the retrieval model's path."""

    def _GetFnArgs(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
                   exec_properties: dict[str, Any]) -> fn_args_utils.FnArgs:
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        if input_dict.get(RETRIEVAL_MODEL_KEY):
            uri = artifact_utils.get_single_uri(input_dict[RETRIEVAL_MODEL_KEY])
            fn_args.custom_config = {**(fn_args.custom_config or {}),
                                     RETRIEVAL_MODEL_KEY: path_utils.serving_model_path(uri)}
        return fn_args


class RankerTrainer(base_component.BaseComponent):
    """A Trainer whose `run_fn` also gets the retrieval model (see the module docstring).

    Args:
        run_fn: dotted path of the training function (`tfx_pipeline.trainer.run_ranker`).
        examples: transformed examples.
        transform_graph: the Transform component's graph.
        schema: the schema.
        custom_config: JSON-serializable settings handed to `run_fn`.
        base_model: the model to warm-start from, if any.
        retrieval_model: the retrieval Trainer's model, if the ranker reads its towers.
    """

    SPEC_CLASS = RankerTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(RankerTrainerExecutor)

    def __init__(self, *, run_fn: str, examples: tfx.dsl.Channel,
                 transform_graph: tfx.dsl.Channel, schema: tfx.dsl.Channel,
                 custom_config: dict[str, Any], base_model: tfx.dsl.Channel | None = None,
                 retrieval_model: tfx.dsl.Channel | None = None) -> None:
        spec = RankerTrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema,
            base_model=base_model, retrieval_model=retrieval_model,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(),
            run_fn=run_fn, custom_config=json_utils.dumps(custom_config),
            model=tfx.dsl.Channel(type=standard_artifacts.Model),
            model_run=tfx.dsl.Channel(type=standard_artifacts.ModelRun))
        super().__init__(spec=spec)
