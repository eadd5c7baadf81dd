"""The run report without a pipeline run: hand-made work directories (ingestion counters,
a hand-written ML-Metadata store, monitoring decisions, an A/B analysis) rendered to one page;
the warnings that must stand out, at their thresholds. The page in a real browser, on a real
LocalDagRunner run, is tests/e2e/test_report_in_browser.py."""

import base64
import json
import pathlib
import re

import pytest

from monitoring.run_report import (INGESTION_REPORT, RunMetadata, ingestion_warnings,
                                   save_ingestion_report, summarize_run, write_run_report)
from recs.contract.layout import RunLayout


def _ingestion(workdir: RunLayout, dead: dict[str, int], read: int = 1000,
               unbalanced: bool = False) -> pathlib.Path:
    from transforms.ingestion import FileCounts, IngestionReport

    lost = 1 if unbalanced else 0
    accepted = read - sum(dead.values()) - lost
    report = IngestionReport(
        events_read=read, events_accepted=accepted, dead_lettered=dead, records_written=400,
        records_per_span={"2026-01-05": 150, "2026-01-06": 250},
        files={"events/day=2026-01-05/part-0.jsonl": FileCounts(read, accepted,
                                                                  sum(dead.values()))})
    return save_ingestion_report(report, workdir.ingested)


def test_ingestion_warnings_flag_dead_letters_above_the_threshold_and_lost_events(tmp_path):
    workdir = RunLayout(tmp_path)
    # 50 of 1,000 events = 5.0%: at the 5% threshold, not above it.
    at = json.loads(_ingestion(workdir, {"malformed_json": 45, "unknown_user": 5}).read_text())
    assert at["balanced"] and ingestion_warnings(at) == []
    # 51 of 1,000 = 5.1%: flagged, with the biggest reasons first.
    above = json.loads(_ingestion(workdir, {"malformed_json": 45, "unknown_user": 6})
                       .read_text())
    warning, = ingestion_warnings(above)
    assert warning.startswith("5.1% of the events were dead-lettered (51 of 1,000")
    assert "malformed_json 45, unknown_user 6" in warning
    assert ingestion_warnings(above, threshold=0.06) == []
    assert len(ingestion_warnings(at, threshold=0.02)) == 1
    lost = json.loads(_ingestion(workdir, {}, unbalanced=True).read_text())
    assert not lost["balanced"]
    assert ingestion_warnings(lost)[0].startswith("ingestion is NOT balanced")
    with pytest.raises(ValueError, match=r"threshold must be a share in \[0, 1\]; received 2"):
        ingestion_warnings(above, threshold=2)


def test_report_refuses_a_missing_workdir_and_metadata_file(tmp_path):
    with pytest.raises(ValueError, match="workdir .*missing.* does not exist"):
        write_run_report(RunLayout(tmp_path / "missing"))
    with pytest.raises(ValueError, match="holds no ML-Metadata file; run the pipeline first"):
        RunMetadata(tmp_path / "metadata.db")
    assert not (tmp_path / "metadata.db").exists()  # Read-only: nothing was created.


def test_report_command_refuses_a_missing_workdir_without_creating_it(tmp_path, capsys):
    from recs_cli.main import main

    assert main(["report", "--workdir", str(tmp_path / "missing")]) == 2
    assert f"error: workdir '{tmp_path / 'missing'}' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


class _Store:
    """Writes ML-Metadata the way a TFX run does: one run context, one node context per
    component, an execution per component with OUTPUT events naming each artifact's key."""

    def __init__(self, path: pathlib.Path) -> None:
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as pb

        self.pb = pb
        self.store = metadata_store.MetadataStore(pb.ConnectionConfig(
            sqlite=pb.SqliteMetadataSourceConfig(
                filename_uri=str(path),
                connection_mode=pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)))
        self.types = {name: self.store.put_context_type(pb.ContextType(name=name))
                      for name in ("pipeline_run", "node")}
        self.execution_type = self.store.put_execution_type(pb.ExecutionType(name="component"))
        self.run = self._context("pipeline_run", "2026-01-07T06:00:00")

    def _context(self, kind: str, name: str):
        context_id, = self.store.put_contexts([self.pb.Context(type_id=self.types[kind],
                                                               name=name)])
        return self.store.get_contexts_by_id([context_id])[0]

    def output(self, component: str, key: str, uri: pathlib.Path, **properties) -> None:
        pb = self.pb
        uri.mkdir(parents=True, exist_ok=True)
        type_id = self.store.put_artifact_type(pb.ArtifactType(name=f"{component}_{key}"))
        artifact = pb.Artifact(type_id=type_id, uri=str(uri))
        for name, value in properties.items():
            field = {int: "int_value", float: "double_value", str: "string_value"}[type(value)]
            setattr(artifact.custom_properties[name], field, value)
        node = self._context("node", f"recs.{component}")
        execution = pb.Execution(type_id=self.execution_type,
                                 last_known_state=pb.Execution.COMPLETE)
        event = pb.Event(type=pb.Event.OUTPUT)
        event.path.steps.add().key = key
        self.store.put_execution(execution, [(artifact, event)], [self.run, node])


def _png(path: pathlib.Path) -> pathlib.Path:
    from recs.plots import plot_training_curves

    plot_training_curves({"auc": [0.6, 0.7], "val_auc": [0.6, 0.65]}, "curves", str(path),
                         {"auc": "AUC"})
    return path


def _images(page: str) -> list[bytes]:
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_page_of_a_refused_run_shows_the_gates_data_and_versions(tmp_path):
    workdir = RunLayout(tmp_path)
    _ingestion(workdir, {"duplicate_event_id": 10, "malformed_json": 1})
    store = _Store(workdir.metadata)
    runs = workdir.pipeline_root
    ranker_run = runs / "RankerTrainer" / "model_run" / "8"
    ranker_run.mkdir(parents=True)
    (ranker_run / "metrics.json").write_text(json.dumps({
        "metrics": {"auc": 0.5731, "log_loss": 0.6612}, "history": {},
        "warm_start": {"base_model": None}}))
    _png(ranker_run / "training_curves.png")
    store.output("RankerTrainer", "model_run", ranker_run)
    store.output("Evaluator", "blessing", runs / "Evaluator" / "blessing" / "10", blessed=0,
                 current_model=str(runs / "RankerTrainer" / "model" / "8"))
    index_blessing = runs / "IndexBuilder" / "blessing" / "11"
    trial = {"num_leaves": 4, "num_leaves_to_search": 2, "num_reordering_candidates": 20,
             "recall": 0.91, "standard_error": 0.01, "ms_per_query": 0.02}
    index_blessing.mkdir(parents=True)
    (index_blessing / "index_report.json").write_text(json.dumps({
        "num_candidates": 60, "num_queries": 100, "k": 20, "recall_at_k": 0.8123,
        "scann_ms_per_query": 0.5, "exact_ms_per_query": 1.5, "blessed": False,
        "config": {"num_leaves": 4, "num_leaves_to_search": 2,
                   "num_reordering_candidates": 20, "min_recall": 0.95,
                   "tuning_margin": 0.02},
        "tuning": [trial, {**trial, "num_leaves_to_search": 1, "recall": 0.7,
                           "ms_per_query": None}],
        "rejected": []}))
    store.output("IndexBuilder", "blessing", index_blessing, blessed=0, recall_at_k=0.8123,
                 current_model=str(runs / "RetrievalTrainer" / "model" / "9"))
    store.output("Pusher_ranker", "pushed_model", runs / "Pusher_ranker" / "pushed_model" / "12",
                 pushed=0)
    store.output("Pusher_towers", "pushed_model", runs / "Pusher_towers" / "pushed_model" / "13",
                 pushed=1, pushed_version="1767765600")

    summary = summarize_run(workdir)
    assert summary.warnings[0].startswith("the ranker was NOT blessed by the Evaluator")
    assert summary.warnings[1] == ("the index was REFUSED: recall@20 0.812 < min_recall 0.95; "
                                   "no retrieval model was pushed")
    assert dict(summary.figures)["pushed"] == "ranker (not pushed), towers v1767765600"
    assert dict(summary.figures)["ranker eval AUC / log loss"] == "0.573 / 0.661"

    page = write_run_report(workdir).read_text()
    assert "Needs attention" in page and "NOT blessed" in page and "REFUSED" in page
    assert "Every gate passed" not in page
    assert "<td>duplicate_event_id</td><td class=\"n\">10</td><td>1.00%</td>" in page
    assert "<td>2026-01-06</td><td class=\"n\">250</td>" in page
    assert "1767765600" in page and "RetrievalTrainer/model/9" in page
    # The ranker's model and SchemaGen's outputs are not in this store: named, not fatal.
    assert "No RankerTrainer model or ImportExampleGen examples in ML-Metadata." in page
    assert "No SchemaGen or StatisticsGen output in ML-Metadata." in page
    assert "Pipeline run 2026-01-07T06:00:00" in page
    # The ranker's curves and the index's recall-latency plot, redrawn with the chosen point.
    images = _images(page)
    assert len(images) == 2 and all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in images)
    assert "data-images-loaded" in page and 'src="http' not in page


def test_page_of_an_ingestion_only_workdir_with_monitoring_and_an_experiment(tmp_path):
    import numpy as np

    from monitoring.abtest import run_abtest
    from monitoring.decision import Decision, DriftMeasurement, Signals

    workdir = RunLayout(tmp_path)
    _ingestion(workdir, {"unknown_title": 3})
    workdir.monitoring.mkdir()
    drift = (DriftMeasurement("device_type", "L_INFTY", 0.4, 0.3),
             DriftMeasurement("hour", "JENSEN_SHANNON_DIVERGENCE", 0.05, 0.1))
    decisions = [Decision(span=8, action="nothing", reasons=(),
                          signals=Signals(span=8, auc=0.71, ece=0.02)),
                 Decision(span=9, action="alert", reasons=("1 feature drifted: device_type",),
                          signals=Signals(span=9, auc=0.69, ece=0.03, drift=drift))]
    (workdir.monitoring / "decisions.jsonl").write_text(
        "".join(d.to_json() + "\n" for d in decisions))
    (workdir.monitoring / "reports").mkdir()
    _png(workdir.monitoring / "reports" / "span-9-trends.png")
    rng = np.random.default_rng(3)
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text("".join(json.dumps({
        "arm": arm, "engaged": int(rng.random() < rate), "returned": int(rng.random() < 0.5),
        "watch_seconds": float(rng.gamma(2.0, 600.0))}) + "\n"
        for arm, rate in (("control", 0.3), ("treatment", 0.4)) for _ in range(400)))
    run_abtest(str(outcomes), "ranker-v2", "control=1,treatment=1", str(tmp_path / "ab"))

    page = write_run_report(workdir).read_text()
    assert "No ML-Metadata at" in page and "the pipeline has not run" in page
    assert "Every gate passed" in page  # 3 dead letters of 1,000: nothing flagged.
    # Span 9's row: its decision, AUC, one of two features over its threshold, the reason.
    assert ("<td class=\"n\">9</td><td>alert</td><td class=\"n\">0.69</td><td class=\"n\">"
            "0.03</td><td class=\"n\">1</td><td>1 feature drifted: device_type</td>") in page
    assert "ranker-v2: control vs treatment" in page and "<td>engaged</td>" in page
    assert len(_images(page)) == 2  # The monitoring trends and the A/B lifts.
    assert "src=\"http" not in page and "href=" not in page  # Self-contained.
    assert (workdir.root / "report.html").is_file()
    assert json.loads((workdir.ingested / INGESTION_REPORT).read_text())["events_read"] == 1000
