"""One page per run: what a run left in its work directory, as one self-contained HTML file.

    recs report --workdir W      -> W/report.html (`recs demo` writes it at the end)

The page reads, and never changes: the ingestion report (`<ingested>/ingestion_report.json`,
saved by `recs ingest` and `recs demo`); ML-Metadata (`metadata.db`: which component produced
which artifact in which run, the blessings and the pushes); the artifacts it points to in the
pipeline root (SchemaGen's schema, StatisticsGen's statistics, ExampleValidator's anomalies,
the Trainers' `metrics.json` and `training_curves.png`, the IndexBuilder's
`index_report.json`); the newest ranker, scored on the eval split the Evaluator used, for its
reliability diagram and slices (with the monitoring code, so the figures compare with `recs
monitor`'s); and, when present, the monitoring decisions and A/B analyses. Images are inline
(base64), so the file can be mailed or attached to a ticket as it is. A part the work directory
does not hold is named on the page, never fatal. Where things are is the contract's: the run's
folders `recs.contract.layout.RunLayout`, the component ids, output keys and artifact files
`recs.contract.components`.

`summarize_run` gives the same run's headline figures and warnings without loading
TensorFlow: the terminal's summary after `recs demo` and `recs pipeline`.
"""

import base64
import dataclasses
import datetime
import html
import json
import pathlib
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from recs.contract import components as C
from recs.contract.layout import INGESTION_REPORT, RunLayout

REPORT_LOG = "report.log"
"""Where `recs report` puts the libraries' output (TensorFlow loads to score the ranker); not
the run's `recs.log`, which it would otherwise overwrite."""
DEAD_LETTER_WARNING_SHARE = 0.05
"""Dead letters above this share of the events read are flagged. The demo's injected faults
come to about 3% of its events (one bot account's burst is most of it); a feed past 5% points at
a broken producer or a changed event schema rather than at the usual strays."""

_TRAINERS = ((C.RETRIEVAL_TRAINER, "Retrieval: two towers"), (C.RANKER_TRAINER, "Ranker"))


def save_ingestion_report(report: Any, directory: str | pathlib.Path) -> pathlib.Path:
    """Writes an ingestion run's counters where the run report looks for them.

    Args:
        report: the `transforms.ingestion.IngestionReport` of the run.
        directory: the ingestion's output directory (`RunLayout.ingested`).

    Returns:
        The JSON file's path.
    """
    path = pathlib.Path(directory) / INGESTION_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**dataclasses.asdict(report), "balanced": report.balanced},
                               indent=2) + "\n")
    return path


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One ML-Metadata artifact: where it is and what was recorded on it."""

    id: int
    uri: str
    properties: dict[str, Any]
    created_ms: int

    @property
    def created(self) -> str:
        return _when(self.created_ms)


@dataclasses.dataclass(frozen=True)
class Execution:
    """One component's execution in a pipeline run."""

    component: str
    state: str
    seconds: float


class RunMetadata:
    """A read-only view of a local run's ML-Metadata (the SQLite file of `RunLayout.metadata`).

    Connects with ml_metadata alone, read-only: reading a run must neither pay TFX's import
    nor create a store where there is none.

    Raises:
        ValueError: there is no ML-Metadata file at `path`.
    """

    def __init__(self, path: str | pathlib.Path) -> None:
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as pb

        if not pathlib.Path(path).is_file():
            raise ValueError(f"path {str(path)!r} holds no ML-Metadata file; run the pipeline "
                             "first (recs pipeline --workdir W).")
        self._pb = pb
        self._store = metadata_store.MetadataStore(pb.ConnectionConfig(
            sqlite=pb.SqliteMetadataSourceConfig(
                filename_uri=str(path),
                connection_mode=pb.SqliteMetadataSourceConfig.READONLY)))
        # A node's context is named "<pipeline>.<component id>".
        self._nodes = {context.name.split(".", 1)[1]: context.id
                       for context in self._store.get_contexts_by_type("node")}

    @property
    def components(self) -> list[str]:
        return sorted(self._nodes)

    def outputs(self, component: str, key: str) -> list[Artifact]:
        """Every artifact `component` wrote under output `key`, in every run, oldest first."""
        if component not in self._nodes:
            return []
        executions = self._store.get_executions_by_context(self._nodes[component])
        events = self._store.get_events_by_execution_ids([e.id for e in executions])
        ids = sorted({event.artifact_id for event in events
                      if event.type == self._pb.Event.OUTPUT and event.path.steps
                      and event.path.steps[0].key == key})
        return [Artifact(id=a.id, uri=a.uri, properties=_properties(a.custom_properties),
                         created_ms=a.create_time_since_epoch)
                for a in self._store.get_artifacts_by_id(ids)]

    def latest_output(self, component: str, key: str) -> Artifact | None:
        """The newest artifact `component` wrote under `key`, or None."""
        found = self.outputs(component, key)
        return found[-1] if found else None

    def latest_run(self) -> tuple[str, list[Execution]]:
        """The newest pipeline run's name and its executions in the order they started."""
        runs = sorted(self._store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
        if not runs:
            return "", []
        node_names = {context_id: name for name, context_id in self._nodes.items()}
        executions = sorted(self._store.get_executions_by_context(runs[-1].id),
                            key=lambda e: e.id)
        found = []
        for execution in executions:
            contexts = self._store.get_contexts_by_execution(execution.id)
            name = next((node_names[c.id] for c in contexts if c.id in node_names), "?")
            state = self._pb.Execution.State.Name(execution.last_known_state)
            found.append(Execution(component=name, state=state, seconds=(
                execution.last_update_time_since_epoch - execution.create_time_since_epoch)
                / 1000))
        return runs[-1].name, found


def _properties(values: Any) -> dict[str, Any]:
    return {name: getattr(value, value.WhichOneof("value")) for name, value in values.items()
            if value.WhichOneof("value") in ("int_value", "double_value", "string_value")}


def _when(milliseconds: int) -> str:
    return datetime.datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _read_json(path: pathlib.Path) -> Any | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _metadata(workdir: RunLayout) -> RunMetadata | None:
    return RunMetadata(workdir.metadata) if workdir.metadata.is_file() else None


def _model_run(metadata: RunMetadata, trainer: str) -> tuple[dict | None, pathlib.Path | None]:
    """A Trainer's newest `metrics.json` (parsed) and its run directory."""
    run = metadata.latest_output(trainer, C.MODEL_RUN)
    if run is None:
        return None, None
    directory = pathlib.Path(run.uri)
    return _read_json(directory / C.METRICS_FILE), directory


def _index_report(metadata: RunMetadata) -> dict | None:
    blessing = metadata.latest_output(C.INDEX_BUILDER, C.BLESSING)
    return _read_json(pathlib.Path(blessing.uri) / C.INDEX_REPORT_FILE) if blessing else None


def _anomalies(metadata: RunMetadata) -> dict[str, list[tuple[str, str]]]:
    """ExampleValidator's newest anomalies per split: (feature, description) pairs."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    artifact = metadata.latest_output(C.EXAMPLE_VALIDATOR, C.ANOMALIES)
    found: dict[str, list[tuple[str, str]]] = {}
    if artifact is None:
        return found
    for path in sorted(pathlib.Path(artifact.uri).glob("Split-*/SchemaDiff.pb")):
        anomalies = anomalies_pb2.Anomalies.FromString(path.read_bytes())
        rows = [(feature, info.description)
                for feature, info in sorted(anomalies.anomaly_info.items())]
        if anomalies.HasField("dataset_anomaly_info"):
            rows.append(("(dataset)", anomalies.dataset_anomaly_info.description))
        found[path.parent.name.removeprefix("Split-")] = rows
    return found


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """A run's headline figures and the warnings a person must not miss.

    Attributes:
        figures: (label, formatted value) pairs, in reading order.
        warnings: one sentence each: a refused gate, an unbalanced or dirty ingestion,
            data anomalies.
    """

    figures: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]


def ingestion_warnings(report: dict, threshold: float = DEAD_LETTER_WARNING_SHARE
                       ) -> list[str]:
    """The warnings an ingestion's counters call for.

    Args:
        report: an ingestion report as `save_ingestion_report` writes it (or
            `dataclasses.asdict` of an `IngestionReport` plus its `balanced`).
        threshold: dead letters above this share of the events read are flagged.

    Raises:
        ValueError: `threshold` is outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a share in [0, 1]; received {threshold!r}.")
    warnings = []
    if not report["balanced"]:
        warnings.append("ingestion is NOT balanced: events read != accepted + dead-lettered; "
                        "something was lost (see the log)")
    dead = sum(report["dead_lettered"].values())
    share = dead / report["events_read"] if report["events_read"] else 0.0
    if share > threshold:
        top = sorted(report["dead_lettered"].items(), key=lambda item: -item[1])[:3]
        warnings.append(f"{share:.1%} of the events were dead-lettered ({dead:,} of "
                        f"{report['events_read']:,}; flagged above {threshold:.0%}), mostly "
                        + ", ".join(f"{reason} {count:,}" for reason, count in top))
    return warnings


def pipeline_warnings(metadata: RunMetadata) -> list[str]:
    """The warnings the newest pipeline run calls for: a ranker the Evaluator did not bless,
    an index the IndexBuilder refused, a Pusher that pushed nothing, data anomalies."""
    warnings = []
    evaluator = metadata.latest_output(C.EVALUATOR, C.BLESSING)
    if evaluator is not None and not evaluator.properties.get("blessed"):
        warnings.append("the ranker was NOT blessed by the Evaluator (AUC below min_ranker_auc "
                        "or below the champion's): no ranker was pushed, serving keeps the "
                        "last blessed one")
    index = _index_report(metadata)
    if index is not None and not index["blessed"]:
        warnings.append(f"the index was REFUSED: recall@{index['k']} "
                        f"{index['recall_at_k']:.3f} < min_recall "
                        f"{index['config']['min_recall']}; no retrieval model was pushed")
    for split, rows in _anomalies(metadata).items():
        if rows:
            warnings.append(f"ExampleValidator found {len(rows)} anomalies in the {split} "
                            "split: " + "; ".join(f"{f}: {d}" for f, d in rows[:3]))
    return warnings


def summarize_run(workdir: RunLayout) -> RunSummary:
    """The headline figures and warnings of the run in `workdir`, from its files and
    ML-Metadata alone (no TensorFlow): what the terminal shows at the end of a run."""
    figures: list[tuple[str, str]] = []
    warnings: list[str] = []
    ingestion = _read_json(workdir.ingestion_report)
    if ingestion is not None:
        dead = sum(ingestion["dead_lettered"].values())
        figures.append(("events read", f"{ingestion['events_read']:,} ({dead:,} dead-lettered)"))
        figures.append(("records written", f"{ingestion['records_written']:,} in "
                                           f"{len(ingestion['records_per_span'])} spans"))
        warnings += ingestion_warnings(ingestion)
    metadata = _metadata(workdir)
    if metadata is None:
        return RunSummary(tuple(figures), tuple(warnings))
    retrieval, _ = _model_run(metadata, C.RETRIEVAL_TRAINER)
    if retrieval:
        figures += [(f"retrieval {_metric_label(name)}", f"{value:.3f}")
                    for name, value in retrieval["metrics"].items()
                    if name.startswith("recall_at_") and "item_item" not in name]
    ranker, _ = _model_run(metadata, C.RANKER_TRAINER)
    if ranker:
        figures.append(("ranker eval AUC / log loss", f"{ranker['metrics']['auc']:.3f} / "
                                                      f"{ranker['metrics']['log_loss']:.3f}"))
    index = _index_report(metadata)
    if index is not None:
        figures.append((f"index recall@{index['k']} vs exact search",
                        f"{index['recall_at_k']:.3f} at {index['scann_ms_per_query']:.2f} ms "
                        "per query"))
    pushed = [(C.pushed_model(component), artifact)
              for component in metadata.components if C.pushed_model(component)
              for artifact in [metadata.latest_output(component, C.PUSHED_MODEL)] if artifact]
    if pushed:
        figures.append(("pushed", ", ".join(
            f"{name} v{artifact.properties['pushed_version']}" if artifact.properties.get(
                "pushed") else f"{name} (not pushed)" for name, artifact in pushed)))
    return RunSummary(tuple(figures), tuple(warnings + pipeline_warnings(metadata)))


def _metric_label(name: str) -> str:
    return f"Recall@{name.removeprefix('recall_at_')}" if name.startswith("recall_at_") else name


# ---- HTML ---------------------------------------------------------------------------------

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ddd;
     margin-top: 1.8em; padding-bottom: 0.2em; } h3 { margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f4f4f6; }
.note { color: #666; font-style: italic; } .muted { color: #666; }
.warn { background: #fff4e5; border-left: 4px solid #f0a030; padding: 0.5em 1em; }
.ok { background: #eaf7ea; border-left: 4px solid #3a3; padding: 0.5em 1em; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr));
           gap: 0.6em; } .figure { background: #f4f4f6; padding: 0.5em 0.8em; }
.figure b { display: block; font-size: 1.15em; } .figure.wide { grid-column: span 2; }
img { max-width: 100%; }
"""

# Records, once the page has loaded, how many images decoded: a headless browser's dumped DOM
# then tells a test (or a person) whether every figure rendered.
_IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images-total", String(images.length));
  document.body.setAttribute("data-images-loaded", String(decoded.length));
});
</script>"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{_e('n/a' if value is None else value)}</td>"
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    if isinstance(value, float):
        return f'<td class="n">{value:.4g}</td>'
    return f"<td>{_e(value)}</td>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _image(png: bytes, alt: str) -> str:
    return (f'<img alt="{_e(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode("ascii")}">')


def _image_file(path: pathlib.Path, alt: str) -> str:
    return _image(path.read_bytes(), alt) if path.is_file() else _note(f"{path} is missing")


def _plotted(plot: Any, *args: Any, **kwargs: Any) -> bytes:
    """The PNG bytes a `recs.plots` function writes to its path argument (the last one)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = pathlib.Path(scratch) / "plot.png"
        plot(*args, str(path), **kwargs)
        return path.read_bytes()


def _summary_section(summary: RunSummary, run: str, executions: list[Execution]) -> str:
    # A long value (the pushed versions) gets two columns rather than a narrow, tall box.
    figures = "".join(f'<div class="figure{" wide" if len(value) > 40 else ""}">{_e(label)}'
                      f"<b>{_e(value)}</b></div>" for label, value in summary.figures)
    verdict = ('<div class="warn"><b>Needs attention</b><ul>'
               + "".join(f"<li>{_e(w)}</li>" for w in summary.warnings) + "</ul></div>"
               if summary.warnings else
               '<div class="ok">Every gate passed: nothing needs attention.</div>')
    parts = [verdict, f'<div class="figures">{figures}</div>']
    if executions:
        parts.append(f"<h3>Pipeline run {_e(run)}</h3>")
        parts.append(_table(("component", "state", "seconds"),
                            [(e.component, e.state, round(e.seconds, 1)) for e in executions]))
    return "".join(parts)


def _data_section(workdir: RunLayout) -> str:
    report = _read_json(workdir.ingestion_report)
    if report is None:
        return _note(f"No ingestion report at {workdir.ingestion_report}: `recs "
                     "ingest` and `recs demo` write one.")
    dead = sum(report["dead_lettered"].values())
    read = report["events_read"]
    totals = _table(("events read", "accepted", "dead-lettered", "records written",
                     "balanced"),
                    [(read, report["events_accepted"], dead, report["records_written"],
                      report["balanced"])])
    reasons = _table(("dead-letter reason", "events", "share of read"),
                     [(reason, count, f"{count / read:.2%}" if read else "n/a")
                      for reason, count in sorted(report["dead_lettered"].items(),
                                                  key=lambda item: -item[1])])
    spans = _table(("span (delivery day)", "records"), sorted(report["records_per_span"].items()))
    refused = (_table(("refused profile / catalogue rows", "rows"),
                      sorted(report["reference_dead_lettered"].items()))
               if report.get("reference_dead_lettered") else "")
    return (totals + '<div style="display:flex;gap:2em;flex-wrap:wrap">'
            f"<div>{reasons}</div><div>{spans}</div><div>{refused}</div></div>")


def _schema_section(metadata: RunMetadata) -> str:
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

    schema_artifact = metadata.latest_output(C.SCHEMA_GEN, C.SCHEMA)
    statistics = metadata.latest_output(C.STATISTICS_GEN, C.STATISTICS)
    if schema_artifact is None or statistics is None:
        return _note("No SchemaGen or StatisticsGen output in ML-Metadata.")
    schema = text_format.Parse(
        (pathlib.Path(schema_artifact.uri) / "schema.pbtxt").read_text(), schema_pb2.Schema())
    splits = {}
    for path in sorted(pathlib.Path(statistics.uri).glob("Split-*/FeatureStats.pb")):
        listing = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
        splits[path.parent.name.removeprefix("Split-")] = listing.datasets[0]
    train = splits.get("train")
    by_name = {".".join(f.path.step) or f.name: f for f in train.features} if train else {}
    rows = []
    for feature in schema.feature:
        stats = by_name.get(feature.name)
        common = None
        summary = ""
        if stats is not None and stats.HasField("num_stats"):
            common = stats.num_stats.common_stats
            summary = f"mean {stats.num_stats.mean:.4g}, std {stats.num_stats.std_dev:.4g}"
        elif stats is not None and stats.HasField("string_stats"):
            common = stats.string_stats.common_stats
            top = stats.string_stats.top_values
            summary = (f"{stats.string_stats.unique:,} distinct"
                       + (f", top {top[0].value!r}" if top else ""))
        missing = (common.num_missing / (common.num_missing + common.num_non_missing)
                   if common and common.num_missing + common.num_non_missing else 0.0)
        rows.append((feature.name, schema_pb2.FeatureType.Name(feature.type),
                     f"{feature.presence.min_fraction:g}", f"{missing:.1%}", summary))
    examples = ", ".join(f"{name} {split.num_examples:,}" for name, split in splits.items())
    anomalies = _anomalies(metadata)
    found = [(split, feature, description) for split, items in anomalies.items()
             for feature, description in items]
    checks = (_table(("split", "feature", "anomaly (ExampleValidator)"), found) if found else
              f'<p class="ok">ExampleValidator: no anomalies in {", ".join(anomalies) or "any"}'
              " split against the schema.</p>")
    return (f"<p>Examples per split: {_e(examples)}. Schema inferred by SchemaGen; statistics "
            "of the train split by StatisticsGen.</p>" + checks
            + _table(("feature", "type", "min presence", "missing (train)", "train split"),
                     rows))


def _training_section(metadata: RunMetadata) -> str:
    parts = []
    for trainer, title in _TRAINERS:
        outputs, directory = _model_run(metadata, trainer)
        parts.append(f"<h3>{_e(title)} <span class=muted>({_e(trainer)})</span></h3>")
        if outputs is None or directory is None:
            parts.append(_note(f"No {trainer} run in ML-Metadata."))
            continue
        metrics = [(_metric_label(name), value) for name, value in outputs["metrics"].items()
                   if isinstance(value, (int, float))]
        base = outputs.get("warm_start", {}).get("base_model")
        parts.append(_table(("held-out metric", "value"), metrics))
        parts.append(f"<p>Warm start: {_e(base or 'none (trained from scratch)')}</p>")
        parts.append(_image_file(directory / C.TRAINING_CURVES_FILE, f"{trainer} curves"))
    return "".join(parts)


def _ranker_section(metadata: RunMetadata) -> str:
    """Reliability and slices of the newest ranker on the eval split the Evaluator scored."""
    import tensorflow as tf

    from monitoring import outcomes
    from recs import features as F
    from recs.contract.signatures import SERVING_DEFAULT
    from recs.export import serving_model_dir
    from recs.plots import plot_reliability

    model = metadata.latest_output(C.RANKER_TRAINER, C.MODEL)
    examples = metadata.latest_output(C.IMPORT_EXAMPLE_GEN, C.EXAMPLES)
    if model is None or examples is None:
        return _note(f"No {C.RANKER_TRAINER} model or {C.IMPORT_EXAMPLE_GEN} examples in "
                     "ML-Metadata.")
    blessing = metadata.latest_output(C.EVALUATOR, C.BLESSING)
    verdict = ("no Evaluator run" if blessing is None else
               "blessed by the Evaluator" if blessing.properties.get("blessed") else
               "NOT blessed by the Evaluator")
    records = outcomes.read_records(str(pathlib.Path(examples.uri) / "Split-eval" / "*"))
    ranker = tf.saved_model.load(serving_model_dir(model.uri)).signatures[SERVING_DEFAULT]
    quality = outcomes.prediction_quality(
        outcomes.score(ranker, records), records[F.LABEL],
        {F.DEVICE_TYPE: records[F.DEVICE_TYPE], F.COUNTRY: records[F.COUNTRY]})
    auc = "n/a (one class)" if quality["auc"] is None else f"{quality['auc']:.4f}"
    plot = _plotted(plot_reliability, quality["reliability"], "ranker on the eval split")
    slices = _table(("slice", "value", "records", "AUC", "mean predicted", "observed", "ECE"),
                    [(name, value, stats["count"], stats["auc"], stats["mean_predicted"],
                      stats["observed"], stats["ece"])
                     for name, values in quality["slices"].items()
                     for value, stats in sorted(values.items())])
    return (f"<p>The newest ranker ({_e(verdict)}), scored on the {len(records):,} records of "
            f"the eval split: AUC <b>{auc}</b>, log loss {quality['log_loss']:.4f}, expected "
            f"calibration error {quality['ece']:.4f} (10 equal-width bins).</p>"
            f'<div style="display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start">'
            f"<div>{_image(plot, 'reliability diagram')}</div><div>{slices}</div></div>")


def _index_section(metadata: RunMetadata) -> str:
    from recs.plots import plot_index_tuning

    report = _index_report(metadata)
    if report is None:
        return _note("No IndexBuilder blessing in ML-Metadata.")
    config = report["config"]
    settings = ("num_leaves", "num_leaves_to_search", "num_reordering_candidates")
    facts = _table(
        (f"recall@{report['k']} vs exact", "ScaNN ms/query", "exact ms/query", "candidates",
         "validation queries", "min_recall", "blessed"),
        [(report["recall_at_k"], report["scann_ms_per_query"], report["exact_ms_per_query"],
          report["num_candidates"], report["num_queries"], config["min_recall"],
          report["blessed"])])
    chosen = _table(("chosen setting", "value"), [(name, config[name]) for name in settings])
    rejected = (_table(("refused before", *settings, "recall"),
                       [("validation half", *(r.get(name) for name in settings),
                         r.get("recall")) for r in report["rejected"]])
                if report.get("rejected") else "")
    measured = [t for t in report.get("tuning", []) if t["ms_per_query"]]
    if not measured:
        return facts + chosen + rejected + _note("The index was not tuned (IndexConfig.tune "
                                                 "off): no recall-latency points.")
    target = min(1.0, config["min_recall"] + config["tuning_margin"])
    plot = _plotted(plot_index_tuning, report["tuning"], target, chosen=config)
    points = _table(("partitions", "probed", "re-ordered", "recall (tuning half)", "ms/query",
                     "chosen"),
                    [(*(t[name] for name in settings), t["recall"], t["ms_per_query"],
                      "yes" if all(t[name] == config[name] for name in settings) else "")
                     for t in sorted(measured, key=lambda t: t["ms_per_query"])])
    return (facts + f'<div style="display:flex;gap:1.5em;flex-wrap:wrap">'
            f"<div>{_image(plot, 'index recall against latency')}</div>"
            f"<div>{chosen}{rejected}{points}</div></div>")


def _versions_section(metadata: RunMetadata) -> str:
    pushes = [(C.pushed_model(component), artifact.properties.get("pushed_version", "-"),
               bool(artifact.properties.get("pushed")), artifact.created)
              for component in metadata.components if C.pushed_model(component)
              for artifact in metadata.outputs(component, C.PUSHED_MODEL)]
    blessings = []
    for component, gate in ((C.EVALUATOR, "ranker AUC gate"),
                            (C.INDEX_BUILDER, "index recall gate")):
        for artifact in metadata.outputs(component, C.BLESSING):
            recall = artifact.properties.get("recall_at_k")
            # ".../pipeline/RankerTrainer/model/8" -> "RankerTrainer/model/8"
            model = "/".join(pathlib.Path(str(artifact.properties.get("current_model", "")))
                             .parts[-3:])
            blessings.append((gate, bool(artifact.properties.get("blessed")), model,
                              "" if recall is None else f"recall@k {recall:.4f}",
                              artifact.created))
    return (_table(("model", "version", "pushed", "when"),
                   sorted(pushes, key=lambda row: (row[3], row[0])))
            + _table(("gate", "blessed", "model", "measured", "when"),
                     sorted(blessings, key=lambda row: row[4])))


def _monitoring_section(workdir: RunLayout) -> str:
    log = workdir.decisions_log
    if not log.is_file():
        return _note(f"No monitoring decisions at {log} (recs monitor writes them).")
    decisions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [(d["span"], d["action"], d["signals"]["auc"], d["signals"]["ece"],
             sum(m["value"] > m["threshold"] for m in d["signals"]["drift"]),
             "; ".join(d["reasons"]) or "-") for d in decisions]
    trends = workdir.monitoring_reports / f"span-{decisions[-1]['span']}-trends.png"
    return (_table(("span", "decision", "AUC", "ECE", "drifted features", "reasons"), rows)
            + (_image_file(trends, "monitoring trends") if trends.is_file() else ""))


def _experiments_section(workdir: RunLayout) -> str:
    found = sorted(path for path in workdir.root.rglob("abtest_*.json")
                   if workdir.pipeline_root not in path.parents)
    if not found:
        return _note("No A/B analyses (abtest_*.json, written by recs abtest) in the work "
                     "directory.")
    parts = []
    for path in found:
        analysis = json.loads(path.read_text())
        ratio = analysis["sample_ratio"]
        parts.append(f"<h3>{_e(analysis['experiment'])}: {_e(' vs '.join(analysis['arms']))}"
                     "</h3>")
        if ratio["mismatch"]:
            parts.append(f'<p class="warn">Sample ratio mismatch (p = {ratio["p_value"]:.3g}): '
                         "the split is broken, do not trust these results.</p>")
        if "verdict" in analysis:
            verdict = analysis["verdict"]
            parts.append(f"<p><b>Verdict: {_e(verdict['action'])}</b> "
                         f"(pre-registered on {_e(verdict['rule']['metric'])}, alpha "
                         f"{verdict['rule']['alpha']}, minimum effect "
                         f"{verdict['rule']['minimum_effect']}): {_e(verdict['reason'])}</p>")
        parts.append(_table(
            ("metric", "control", "treatment", "lift", "CI of difference", "p", "significant"),
            [(c["metric"], c["control"], c["treatment"], f"{100 * c['relative_lift']:.2f}%",
              f"[{c['ci_low']:.4g}, {c['ci_high']:.4g}]", c["p_value"], c["significant"])
             for c in analysis["comparisons"]]))
        plot = path.with_suffix(".png")
        if plot.is_file():
            parts.append(_image_file(plot, f"{analysis['experiment']} lifts"))
        plots = analysis.get("plots") or {}
        if analysis.get("survival"):
            parts.append(_retention_part(analysis["survival"], path.parent, plots))
        if analysis.get("sequential"):
            parts.append(_sequential_part(analysis, path.parent, plots))
    return "".join(parts)


def _interval(interval: Sequence[float] | None) -> str:
    return "n/a" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _retention_part(survival: dict, folder: pathlib.Path, plots: dict[str, str]) -> str:
    """Kaplan-Meier retention per arm at the day marks and billing days, and the curves."""
    control, treatment = survival["arms"]
    rows = [(c["metric"], c["control"], _interval(c["control_ci"]), c["treatment"],
             _interval(c["treatment_ci"]), c["difference"],
             _interval(None if c["ci_low"] is None else (c["ci_low"], c["ci_high"])),
             c["p_value"], c["significant"] if c["identified"] else "not identified")
            for c in (*survival["retention"], *survival["renewal"])]
    churned = ", ".join(f"{curve['arm']} {curve['churned']:,} of {curve['users']:,}"
                        for curve in survival["curves"])
    curves = (_image_file(folder / plots["retention"], "retention curves")
              if "retention" in plots else _note("No retention plot beside the analysis."))
    return (f"<h4>Retention (Kaplan-Meier)</h4><p>Churned: {_e(churned)}; log-rank p = "
            f"{survival['logrank']['p_value']:.3g}. Still subscribed after each day, with "
            f"{1 - survival['alpha']:.0%} intervals; renewal at each billing day (every "
            f"{survival['cycle_days']} days).</p>"
            + _table(("metric", control, "CI", treatment, "CI", "difference",
                      "CI of difference", "p", "significant"), rows) + curves)


def _sequential_part(analysis: dict, folder: pathlib.Path, plots: dict[str, str]) -> str:
    """The daily looks against the group-sequential boundary, where the test stopped, and
    the A/A stopping rate when it was measured."""
    sequential = analysis["sequential"]
    stop = ("still running" if sequential["stop_day"] is None else
            f"stopped on day {sequential['stop_day']} ({sequential['stopped_on']})")
    looks = _table(("day", "n control", "n treatment", "z", "boundary", "crossed",
                    "repeated CI of difference"),
                   [(look["day"], look["n_control"], look["n_treatment"], look["z"],
                     look["boundary"], look["crossed"],
                     _interval(None if look["ci_low"] is None else
                               (look["ci_low"], look["ci_high"])))
                    for look in sequential["looks"]])
    aa = analysis.get("aa")
    aa_line = (f"<p>A/A: {aa['rate']:.1%} of {aa['splits']:,} re-splits of the same users "
               f"stopped on a boundary (alpha {aa['alpha']}).</p>" if aa else "")
    boundary = (_image_file(folder / plots["sequential"], "sequential boundary")
                if "sequential" in plots else _note("No sequential plot beside the analysis."))
    return (f"<h4>Sequential boundary</h4><p>{_e(sequential['metric'])}: "
            f"{sequential['planned_looks']} daily looks, {_e(sequential['spending'])} "
            f"spending; <b>{_e(stop)}: {_e(sequential['verdict']['action'])}</b>. The tables "
            f"above read the rows as of day {_e(analysis.get('rows_day'))}.</p>"
            + looks + aa_line + boundary)


def write_run_report(workdir: RunLayout, out_path: str | pathlib.Path | None = None
                     ) -> pathlib.Path:
    """Writes the run's page: data, schema and anomalies, training curves, the ranker's
    calibration and slices, the index's recall and latency, pushed versions and blessings,
    and the monitoring and A/B results when the work directory has them.

    Args:
        workdir: the run's work directory (`recs.contract.layout.RunLayout`).
        out_path: where the HTML goes; default `<workdir>/report.html`.

    Returns:
        The HTML file's path.

    Raises:
        ValueError: `workdir` does not exist.

    Example:
        >>> write_run_report(RunLayout(pathlib.Path("demo_output")))  # doctest: +SKIP
        PosixPath('demo_output/report.html')
    """
    if not workdir.root.is_dir():
        raise ValueError(f"workdir {str(workdir.root)!r} does not exist; pass the directory "
                         "a run wrote (recs demo --workdir W, recs pipeline --workdir W).")
    out = pathlib.Path(out_path) if out_path is not None else workdir.report
    metadata = _metadata(workdir)
    run, executions = metadata.latest_run() if metadata else ("", [])
    no_pipeline = _note(f"No ML-Metadata at {workdir.metadata}: the pipeline has not run in "
                        "this work directory.")
    sections = [
        ("Summary", _summary_section(summarize_run(workdir), run, executions)),
        ("Data: ingestion", _data_section(workdir)),
        ("Schema and data checks", _schema_section(metadata) if metadata else no_pipeline),
        ("Training curves", _training_section(metadata) if metadata else no_pipeline),
        ("Ranker: calibration and slices", _ranker_section(metadata) if metadata
         else no_pipeline),
        ("Index: recall against latency", _index_section(metadata) if metadata
         else no_pipeline),
        ("Pushed versions and blessings (ML-Metadata)", _versions_section(metadata)
         if metadata else no_pipeline),
        ("Monitoring", _monitoring_section(workdir)),
        ("A/B experiments", _experiments_section(workdir)),
    ]
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    written = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>recs run report: {_e(workdir.root.name)}</title>"
            f"<style>{_STYLE}</style></head>\n<body>"
            f"<h1>recs run report</h1><p class=muted>{_e(workdir.root.resolve())} · written "
            f"{written}</p>{body}{_IMAGE_CHECK}</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
