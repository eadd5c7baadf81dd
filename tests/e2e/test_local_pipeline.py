"""The whole product on LocalDagRunner (slow): generated logs or MovieLens -> ingestion ->
the TFX pipeline -> pushed models -> recommendations over REST and gRPC; a warm retrain."""

import dataclasses
import json
import pathlib

import pytest

from recs.config import IndexConfig, ItemItemConfig, RankerConfig, RetrievalConfig, TrainingConfig
from recs.contract.layout import RunLayout
from recs.contract.models import SERVED_MODELS
from tests.tfx_pipeline.test_pipeline import COMPONENTS
from tfx_pipeline.workdir import pipeline_config


@pytest.mark.slow
def test_local_pipeline_end_to_end_serves_recommendations(tmp_path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from recs.data.synthetic import GeneratorConfig, generate
    from tfx_pipeline import run_local
    from tfx_pipeline.pipeline import metadata_store_config
    from transforms.ingestion import IngestionConfig, run_ingestion

    workdir = RunLayout(tmp_path)
    generate(GeneratorConfig(num_users=700, num_titles=80, days=4, seed=7), workdir.raw)
    assert run_ingestion(IngestionConfig.for_raw(workdir.raw, workdir.ingested)).balanced
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
    # The Evaluator's (ranker), the IndexBuilder's and the RecommenderBuilder's (both inputs).
    assert len(blessings) == 3
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

    items = _recommend(workdir, "u000001", k=5, device_type="tv", hour=21)
    assert len(items) == 5
    assert all(0.0 < item.score < 1.0 for item in items)
    via_grpc = _recommend(workdir, "u000001", k=5, device_type="tv", hour=21, protocol="grpc")
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


def _recommend(workdir: RunLayout, user_id: str, protocol: str = "rest", **ask):
    """`recs recommend` on the run's pushed models, after loading its profile store."""
    from serving.app import recommend_once
    from serving.config import ServiceConfig
    from serving.online.store import fresh_store

    fresh_store(str(workdir.store), str(workdir.users), workdir.examples_glob).close()
    config = ServiceConfig(protocol=protocol, serving_dir=str(workdir.serving),
                           store=str(workdir.store))
    return recommend_once(config, user_id, embedded_model_server=True, **ask)


@pytest.mark.slow
def test_local_pipeline_trains_and_serves_on_movielens_100k(tmp_path, shared_data):
    from recs.data.movielens import write_movielens
    from tfx_pipeline import run_local

    workdir = RunLayout(tmp_path)
    # A seeded 20k-rating subset keeps the run near the synthetic end-to-end test's size.
    assert write_movielens("ml-100k", str(shared_data / "movielens-100k"), str(workdir.raw),
                           str(workdir.examples_dir), max_ratings=20_000) == 20_000
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
    # Picked by the default selection metric, over every weight tried.
    selection = RetrievalConfig().selection
    assert metrics[f"{selection}_item_item_weight_{metrics['item_item_weight']:g}"] == \
        max(tried.values())
    # Then the cold-start prior, fitted on the eval split too; `recall_at_100` is the
    # exported model's, prior included when any weight won.
    assert all(f"cold_start_weight_{row}_{bucket}" in metrics
               for row in ("new", "known") for bucket in range(8))
    run, = (tmp_path / "pipeline" / "RankerTrainer" / "model_run").iterdir()
    towers = json.loads((run / "metrics.json").read_text())["towers"]
    assert "/RetrievalTrainer/model/" in towers["retrieval_model"]
    for tower in ("query_tower", "candidate_tower"):  # Same transform: every row found.
        assert towers[tower]["skipped"] == [] and towers[tower]["copied"] > 0, tower
        assert set(towers[tower]["remapped"].values()) == {1.0}, tower
    titles = {json.loads(line)["title_id"]
              for line in (workdir.raw / "titles.jsonl").read_text().splitlines()}
    items = _recommend(workdir, "u1", k=10, device_type="web", hour=20)
    assert len(items) == 10 and {item.title_id for item in items} <= titles
    assert all(0.0 < item.score < 1.0 for item in items)
