"""The TFX pipeline: components wired along the data flow, a Kubeflow v2 compile, and clear
errors (the Evaluator's champion gate: tests/integration/tfx_pipeline/; the LocalDagRunner runs
are in tests/e2e/)."""

import json
import pathlib

import pytest

from recs.config import RankerConfig, RetrievalConfig
from recs.contract.layout import RunLayout
from tfx_pipeline import compile_for_kubeflow, create_pipeline
from tfx_pipeline.workdir import pipeline_config

COMPONENTS = ["ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
              "RetrievalTrainer", "RankerTrainer", "LatestBlessedRanker",
              "LatestBlessedRetrieval", "Evaluator", "IndexBuilder", "RecommenderBuilder",
              "Pusher_ranker", "Pusher_retrieval", "Pusher_retrieval_exact", "Pusher_towers",
              "Pusher_recommender", "Pusher_recommender_exact"]


def test_components_are_wired_along_the_data_flow(tmp_path):
    pipeline = create_pipeline(pipeline_config(RunLayout(tmp_path)))
    by_id = {component.id: component for component in pipeline.components}
    assert sorted(by_id) == sorted(COMPONENTS)

    def upstream(name: str) -> set[str]:
        return {node.id for node in by_id[name].upstream_nodes}

    # Each Trainer warm-starts from the last blessed model of its kind.
    assert upstream("RetrievalTrainer") == {"Transform", "SchemaGen", "LatestBlessedRetrieval"}
    assert upstream("RankerTrainer") == {"Transform", "SchemaGen", "LatestBlessedRanker"}
    assert "retrieval_model" not in by_id["RankerTrainer"].inputs
    assert upstream("IndexBuilder") == {"RetrievalTrainer", "ImportExampleGen"}
    assert upstream("Pusher_ranker") == {"RankerTrainer", "Evaluator"}
    assert upstream("Evaluator") == {"ImportExampleGen", "RankerTrainer", "LatestBlessedRanker"}
    assert upstream("Pusher_retrieval") == {"IndexBuilder"}
    # The one-call recommenders join a blessed ranker and a blessed index.
    assert upstream("RecommenderBuilder") == {"Transform", "RankerTrainer", "Evaluator",
                                              "IndexBuilder"}
    assert upstream("Pusher_recommender") == {"RecommenderBuilder"}
    cold = create_pipeline(pipeline_config(RunLayout(tmp_path), warm_start=False))
    trainers = {c.id: c for c in cold.components if c.id.endswith("Trainer")}
    assert all("base_model" not in c.inputs for c in trainers.values())
    # A ranker that reads the towers' embeddings trains after the retrieval model.
    towers = create_pipeline(pipeline_config(RunLayout(tmp_path),
                                             ranker=RankerConfig(tower_features=True)))
    ranker_trainer = next(c for c in towers.components if c.id == "RankerTrainer")
    assert {node.id for node in ranker_trainer.upstream_nodes} == {
        "Transform", "SchemaGen", "LatestBlessedRanker", "RetrievalTrainer"}
    assert "retrieval_model" in ranker_trainer.inputs


def test_compiles_for_kubeflow_v2(tmp_path):
    ranker = RankerConfig(hidden_layers=(32, 16), tower_features=True)
    config = pipeline_config(RunLayout(tmp_path), ranker=ranker)
    path = compile_for_kubeflow(config, str(tmp_path / "spec.json"),
                                image="registry.example/recs:1")
    spec = json.loads(pathlib.Path(path).read_text())
    assert spec["pipelineSpec"]["pipelineInfo"]["name"] == "recs"
    # On Kubeflow each latest-blessed resolver compiles to two resolver tasks (blessing,
    # then model).
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    latest = ("LatestBlessedRanker", "LatestBlessedRetrieval")
    resolvers = [f"{name}-{step}-resolver" for name in latest
                 for step in ("model-blessing", "model")]
    assert sorted(tasks) == sorted(set(COMPONENTS) - set(latest) | set(resolvers))

    def producer(task: str, key: str) -> str:
        return tasks[task]["inputs"]["artifacts"][key]["taskOutputArtifact"]["producerTask"]

    assert producer("Evaluator", "baseline_model") == "LatestBlessedRanker-model-resolver"
    assert producer("RankerTrainer", "base_model") == "LatestBlessedRanker-model-resolver"
    assert producer("RetrievalTrainer", "base_model") == "LatestBlessedRetrieval-model-resolver"
    assert producer("RankerTrainer", "retrieval_model") == "RetrievalTrainer"
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"].values()
    images = {e["container"]["image"] for e in executors if "container" in e}
    assert images == {"registry.example/recs:1"}
    assert sum("resolver" in e for e in executors) == 4  # Run by the orchestrator itself.
    text = json.dumps(spec)
    assert "transforms.preprocessing.preprocessing_fn" in text
    assert "tfx_pipeline.trainer.run_ranker" in text and "[32, 16]" in text


def test_a_ranker_trainer_without_the_retrieval_model_is_a_clear_error():
    from tfx.components.trainer.fn_args_utils import FnArgs

    from tfx_pipeline import trainer

    fn_args = FnArgs(custom_config={
        trainer.RANKER_CONFIG_KEY: RankerConfig(tower_features=True).to_dict(),
        trainer.RETRIEVAL_CONFIG_KEY: RetrievalConfig().to_dict()})
    with pytest.raises(ValueError, match="the RankerTrainer got no retrieval_model"):
        trainer._retrieval_towers(fn_args, transform_output=None, strategy=None, batch={},
                                  reports={})
