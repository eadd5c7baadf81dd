"""The TFX pipeline: a fast Kubeflow v2 compile, and a slow LocalDagRunner run end to end."""

import dataclasses
import json
import pathlib

import pytest

from recs.config import (IndexConfig, ItemItemConfig, RankerConfig, RetrievalConfig,
                         TrainingConfig)
from recs_cli.main import Workdir, pipeline_config
from tfx_pipeline import compile_for_kubeflow, create_pipeline
from tfx_pipeline.config import SERVED_MODELS

COMPONENTS = ["ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
              "RetrievalTrainer", "RankerTrainer", "LatestBlessedRanker",
              "LatestBlessedRetrieval", "Evaluator", "IndexBuilder",
              "Pusher_ranker", "Pusher_retrieval", "Pusher_retrieval_exact", "Pusher_towers"]


def test_components_are_wired_along_the_data_flow(tmp_path):
    pipeline = create_pipeline(pipeline_config(Workdir(tmp_path)))
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
    cold = create_pipeline(pipeline_config(Workdir(tmp_path), warm_start=False))
    trainers = {c.id: c for c in cold.components if c.id.endswith("Trainer")}
    assert all("base_model" not in c.inputs for c in trainers.values())
    # A ranker that reads the towers' embeddings trains after the retrieval model.
    towers = create_pipeline(pipeline_config(Workdir(tmp_path),
                                             ranker=RankerConfig(tower_features=True)))
    ranker_trainer = next(c for c in towers.components if c.id == "RankerTrainer")
    assert {node.id for node in ranker_trainer.upstream_nodes} == {
        "Transform", "SchemaGen", "LatestBlessedRanker", "RetrievalTrainer"}
    assert "retrieval_model" in ranker_trainer.inputs


def test_compiles_for_kubeflow_v2(tmp_path):
    ranker = RankerConfig(hidden_layers=(32, 16), tower_features=True)
    config = pipeline_config(Workdir(tmp_path), ranker=ranker)
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


def _flipped_ranker(ranker_dir: str, out: str) -> str:
    """The ranker with its scores turned around (1 - p): AUC becomes 1 - AUC."""
    import tensorflow as tf

    from recs.contract.signatures import EXAMPLES, PROBABILITY, SERVING_TF_EXAMPLE

    module = tf.Module()
    module.ranker = tf.saved_model.load(ranker_dir)
    score = module.ranker.signatures[SERVING_TF_EXAMPLE]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES)])
    def flipped(examples):
        return {PROBABILITY: 1.0 - score(**{EXAMPLES: examples})[PROBABILITY]}

    module.flipped = flipped
    tf.saved_model.save(module, out, signatures={SERVING_TF_EXAMPLE: flipped})
    return out


def test_evaluator_refuses_a_challenger_worse_than_the_champion(tiny_world, tmp_path):
    # The pipeline's own EvalConfig, run by TFMA as the Evaluator runs it: with the absolute
    # gate at 0, only the comparison with the champion (the last blessed ranker) can refuse.
    import tensorflow_model_analysis as tfma

    from tfx_pipeline.pipeline import BASELINE, CANDIDATE, eval_config

    config = eval_config(pipeline_config(Workdir(tmp_path), min_ranker_auc=0.0,
                                         max_auc_drop=0.005))
    good = str(tiny_world.serving_dir / "ranker" / "1")
    bad = _flipped_ranker(good, str(tmp_path / "flipped"))

    def blessed(candidate: str, champion: str, out: str) -> bool:
        models = [tfma.default_eval_shared_model(path, model_name=name, eval_config=config)
                  for name, path in ((CANDIDATE, candidate), (BASELINE, champion))]
        tfma.run_model_analysis(eval_shared_model=models, eval_config=config,
                                data_location=tiny_world.examples_glob, output_path=out)
        return tfma.load_validation_result(out).validation_ok

    assert blessed(good, bad, str(tmp_path / "better"))
    assert not blessed(bad, good, str(tmp_path / "worse"))


@pytest.mark.slow
def test_local_pipeline_end_to_end_serves_recommendations(tmp_path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from recs_cli.main import generate, ingest, load_profile_store, recommend
    from tfx_pipeline import run_local
    from tfx_pipeline.pipeline import metadata_store_config

    workdir = Workdir(tmp_path)
    generate(workdir.raw, users=700, titles=80, days=4, seed=7)
    assert ingest(workdir.raw, workdir.ingested, []).balanced
    fast = TrainingConfig(batch_size=128, epochs=2, learning_rate=0.05, optimizer="adagrad")
    config = pipeline_config(
        workdir,
        # Gates above chance with room for run-to-run noise on ~6k interactions: the demo's
        # 20k interactions reach AUC ~0.64 and index recall 1.0.
        min_ranker_auc=0.53, index=IndexConfig(k=20, min_recall=0.7),
        retrieval=RetrievalConfig(training=fast),
        ranker=RankerConfig(tower_features=True,
                            training=TrainingConfig(batch_size=128, epochs=8,
                                                    learning_rate=0.01)))
    run_local(config)

    store = metadata_store.MetadataStore(metadata_store_config(config.metadata_path))
    nodes = {context.name.split(".", 1)[1]: context
             for context in store.get_contexts_by_type("node")}
    assert sorted(nodes) == sorted(COMPONENTS)
    for name, context in nodes.items():
        states = [e.last_known_state for e in store.get_executions_by_context(context.id)]
        assert states == [metadata_store_pb2.Execution.COMPLETE], name
    blessings = store.get_artifacts_by_type("ModelBlessing")
    assert len(blessings) == 2  # The Evaluator's (ranker) and the IndexBuilder's.
    for blessing in blessings:
        assert blessing.custom_properties["blessed"].int_value == 1, blessing.custom_properties
    index_blessing = next(b for b in blessings if "recall_at_k" in b.custom_properties)
    assert index_blessing.custom_properties["recall_at_k"].double_value >= 0.7
    # The tuner chose the settings; they and its recall-vs-latency plot are on record.
    assert index_blessing.custom_properties["num_leaves_to_search"].int_value >= 1
    assert (pathlib.Path(index_blessing.uri) / "index_tuning.png").stat().st_size > 0

    for name in SERVED_MODELS:
        versions = list((tmp_path / "serving" / name).iterdir())
        assert len(versions) == 1 and (versions[0] / "saved_model.pb").exists(), name

    load_profile_store(workdir).close()
    items = recommend(workdir, "u000001", k=5, device_type="tv", hour=21)
    assert len(items) == 5
    assert all(0.0 < item.score < 1.0 for item in items)
    via_grpc = recommend(workdir, "u000001", k=5, device_type="tv", hour=21, protocol="grpc")
    assert [i.title_id for i in via_grpc] == [i.title_id for i in items]

    # A retrain (one short epoch each) on the same data: the execution cache reuses the
    # data components' outputs, and both Trainers warm-start from the blessed models.
    one_epoch = TrainingConfig(batch_size=128, epochs=1, learning_rate=0.01)
    run_local(dataclasses.replace(config, enable_cache=True,
                                  retrieval=RetrievalConfig(training=one_epoch),
                                  ranker=RankerConfig(tower_features=True,
                                                      training=one_epoch)))
    states = {name: [e.last_known_state for e in sorted(
        store.get_executions_by_context(context.id), key=lambda e: e.id)]
        for name, context in nodes.items()}
    for name in ("ImportExampleGen", "StatisticsGen", "SchemaGen", "Transform"):
        assert states[name] == [metadata_store_pb2.Execution.COMPLETE,
                                metadata_store_pb2.Execution.CACHED], name
    for name in ("RankerTrainer", "RetrievalTrainer", "Evaluator", "IndexBuilder"):
        assert states[name] == [metadata_store_pb2.Execution.COMPLETE] * 2, name
    for trainer, first in (("RankerTrainer", "ranker"), ("RetrievalTrainer", "query_tower")):
        runs = sorted((tmp_path / "pipeline" / trainer / "model_run").iterdir(),
                      key=lambda path: int(path.name))
        reports = [json.loads((run / "metrics.json").read_text())["warm_start"] for run in runs]
        assert reports[0] == {"base_model": None}, trainer
        assert f"/{trainer}/model/" in reports[1]["base_model"], trainer
        # Same data, same vocabularies: every row found, nothing skipped.
        assert reports[1][first]["remapped"]["user_id"] == 1.0, trainer
        assert reports[1][first]["skipped"] == [] and reports[1][first]["copied"] > 0, trainer
    # The retrained ranker read this run's towers, not the ones frozen in its base model.
    ranker_runs = sorted((tmp_path / "pipeline" / "RankerTrainer" / "model_run").iterdir(),
                         key=lambda path: int(path.name))
    outputs = [json.loads((run / "metrics.json").read_text()) for run in ranker_runs]
    assert outputs[1]["warm_start"]["ranker"]["frozen"] > 0
    assert outputs[0]["towers"]["retrieval_model"] != outputs[1]["towers"]["retrieval_model"]


@pytest.mark.slow
def test_local_pipeline_trains_and_serves_on_movielens_100k(tmp_path, shared_data):
    from recs_cli.main import import_movielens, load_profile_store, recommend
    from tfx_pipeline import run_local

    workdir = Workdir(tmp_path)
    # A seeded 20k-rating subset keeps the run near the synthetic end-to-end test's size.
    assert import_movielens("ml-100k", shared_data / "movielens-100k", workdir,
                            max_ratings=20_000) == 20_000
    fast = TrainingConfig(batch_size=256, epochs=3, learning_rate=0.1, optimizer="adagrad")
    config = pipeline_config(
        workdir,
        # Liked (rating >= 4) is predictable from user and film: the benchmark's ranker reaches
        # AUC 0.78 on the full data; 0.6 leaves room for the small subset.
        min_ranker_auc=0.6, index=IndexConfig(k=50, min_recall=0.9, tuning_margin=0.05),
        # The towers also carry the item-to-item factors: the index and the services then
        # work on the wider (32 + 16) embeddings.
        retrieval=RetrievalConfig(training=fast,
                                  item_item=ItemItemConfig(enabled=True, rank=16)),
        # The ranker reads the retrieval towers' embeddings: the RankerTrainer takes the
        # RetrievalTrainer's model.
        ranker=RankerConfig(tower_features=True,
                            training=TrainingConfig(batch_size=256, epochs=6,
                                                    learning_rate=0.003)))
    run_local(config)

    for name in SERVED_MODELS:
        versions = list((tmp_path / "serving" / name).iterdir())
        assert len(versions) == 1 and (versions[0] / "saved_model.pb").exists(), name
    retrieval_run, = (tmp_path / "pipeline" / "RetrievalTrainer" / "model_run").iterdir()
    metrics = json.loads((retrieval_run / "metrics.json").read_text())["metrics"]
    tried = {key: value for key, value in metrics.items() if "_item_item_weight_" in key}
    assert len(tried) == len(ItemItemConfig().weights)
    assert metrics["recall_at_100"] == max(tried.values())
    assert metrics[f"recall_at_100_item_item_weight_{metrics['item_item_weight']:g}"] == \
        metrics["recall_at_100"]
    run, = (tmp_path / "pipeline" / "RankerTrainer" / "model_run").iterdir()
    towers = json.loads((run / "metrics.json").read_text())["towers"]
    assert "/RetrievalTrainer/model/" in towers["retrieval_model"]
    for tower in ("query_tower", "candidate_tower"):  # Same transform: every row found.
        assert towers[tower]["skipped"] == [] and towers[tower]["copied"] > 0, tower
        assert set(towers[tower]["remapped"].values()) == {1.0}, tower
    titles = {json.loads(line)["title_id"]
              for line in (workdir.raw / "titles.jsonl").read_text().splitlines()}
    load_profile_store(workdir).close()
    items = recommend(workdir, "u1", k=10, device_type="web", hour=20)
    assert len(items) == 10 and {item.title_id for item in items} <= titles
    assert all(0.0 < item.score < 1.0 for item in items)


def test_a_ranker_trainer_without_the_retrieval_model_is_a_clear_error():
    from tfx.components.trainer.fn_args_utils import FnArgs

    from tfx_pipeline import trainer

    fn_args = FnArgs(custom_config={
        trainer.RANKER_CONFIG_KEY: RankerConfig(tower_features=True).to_dict(),
        trainer.RETRIEVAL_CONFIG_KEY: RetrievalConfig().to_dict()})
    with pytest.raises(ValueError, match="the RankerTrainer got no retrieval_model"):
        trainer._retrieval_towers(fn_args, transform_output=None, strategy=None, batch={},
                                  reports={})
