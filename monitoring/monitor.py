"""One monitoring step: measure a span under the served model, decide, record, report.

    recs monitor --workdir W --span 8

Reads the span's ingested examples, the served ranker (the newest version under the serving
directory), the training spans' TFDV statistics and the served-list log; appends the decision
with every number behind it to `decisions.jsonl` and writes the span's HTML report.
"""

import dataclasses
import json
import pathlib

import numpy as np
import tensorflow as tf

from monitoring import outcomes
from monitoring.config import MonitorConfig
from monitoring.decision import Decision, DriftMeasurement, Signals, decide
from monitoring.drift import Statistics, compare
from monitoring.report import write_report
from recs import features as F
from recs.contract.layout import DECISIONS_FILE, REPORTS_DIR
from recs.contract.signatures import SERVING_DEFAULT


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """The ranker being monitored and what it knew when it was trained."""

    ranker_dir: str
    baseline_auc: float | None
    known_titles: tuple[bytes, ...]
    pushed_span: int | None = None


def monitor_span(span: int, examples_glob: str, model: ServedModel, reference: Statistics,
                 current: Statistics, config: MonitorConfig, decisions_log: str,
                 report_dir: str, served_lines: list[str] | None = None,
                 next_records: outcomes.Records | None = None,
                 baseline_served_rate: float | None = None) -> tuple[Decision, dict]:
    """Measures one span, decides, appends the decision to `decisions_log`, writes the report.

    Returns:
        The decision and the span's prediction-quality figures.
    """
    records = outcomes.read_records(examples_glob)
    ranker = tf.saved_model.load(model.ranker_dir).signatures[SERVING_DEFAULT]
    probabilities = outcomes.score(ranker, records)
    returning = np.where(np.char.str_len(records[F.HISTORY].astype(str)) > 0, "returning",
                         "new")
    quality = outcomes.prediction_quality(
        probabilities, records[F.LABEL],
        {"device_type": records[F.DEVICE_TYPE], "country": records[F.COUNTRY],
         "user": returning})
    served = (outcomes.served_engagement(served_lines, next_records)
              if served_lines is not None and next_records is not None else None)
    signals = Signals(
        span=span, auc=quality["auc"],
        ece=quality["ece"], baseline_auc=model.baseline_auc,
        drift=tuple(compare(current, reference, config)),
        unseen_title_share=outcomes.unseen_share(records, model.known_titles),
        served_engagement_rate=served["engagement_rate"] if served is not None else None,
        baseline_served_engagement_rate=baseline_served_rate,
        spans_since_retrain=None if model.pushed_span is None else span - model.pushed_span)
    decision = decide(signals, config)
    previous = _read_decisions(decisions_log)
    with open(decisions_log, "a") as handle:
        handle.write(decision.to_json() + "\n")
    write_report(report_dir, previous + [decision], quality)
    return decision, {key: quality[key] for key in ("auc", "log_loss", "ece", "deciles",
                                                     "slices")}


def _read_decisions(path: str) -> list[Decision]:
    if not pathlib.Path(path).exists():
        return []
    decisions = []
    for line in pathlib.Path(path).read_text().splitlines():
        entry = json.loads(line)
        raw = entry["signals"]
        raw["drift"] = tuple(DriftMeasurement(**m) for m in raw["drift"])
        decisions.append(Decision(span=entry["span"], action=entry["action"],
                                  reasons=tuple(entry["reasons"]), signals=Signals(**raw)))
    return decisions


def monitor_workdir(serving_dir: str, out_dir: str, span: int, examples: str, reference: str,
                    config: MonitorConfig, baseline_auc: float | None = None,
                    pushed_span: int | None = None, served_log: str = "",
                    next_examples: str = "") -> Decision:
    """`recs monitor`: one span measured under the newest pushed ranker; the decision is
    appended to `<out_dir>/decisions.jsonl` and the report written to `<out_dir>/reports/`.

    Args:
        serving_dir: the Pushers' base directory.
        out_dir: where decisions and reports go.
        span: the span's number.
        examples / reference: the span's and the training spans' examples (globs).
        config: the thresholds.
        baseline_auc: the served ranker's AUC over its baseline spans.
        pushed_span: the span it was pushed at (cooldown).
        served_log: the span's served lists (JSON lines).
        next_examples: the following span's examples, for served-title engagement.
    """
    from monitoring.drift import span_statistics
    from recs.contract.models import RANKER, newest_version_dir

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reference_records = outcomes.read_records(reference)
    model = ServedModel(ranker_dir=newest_version_dir(serving_dir, RANKER),
                        baseline_auc=baseline_auc,
                        known_titles=tuple(sorted(set(reference_records[F.TITLE_ID].tolist()))),
                        pushed_span=pushed_span)
    served = pathlib.Path(served_log).read_text().splitlines() if served_log else None
    reference_stats = span_statistics(reference)
    current = reference_stats if examples == reference else span_statistics(examples)
    decision, _ = monitor_span(
        span, examples, model, reference_stats, current, config, str(out / DECISIONS_FILE),
        str(out / REPORTS_DIR), served_lines=served,
        next_records=outcomes.read_records(next_examples) if next_examples else None)
    return decision
