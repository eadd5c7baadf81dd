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


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """The ranker being monitored and what it knew when it was trained."""

    ranker_dir: str
    baseline_auc: float | None
    known_titles: tuple[bytes, ...]
    pushed_span: int | None = None


def newest_version(model_dir: str) -> str:
    """The highest numbered version folder of a model in TF Serving's layout.

    Raises:
        ValueError: the folder holds no numbered version.
    """
    versions = [p for p in pathlib.Path(model_dir).iterdir() if p.name.isdigit()] \
        if pathlib.Path(model_dir).is_dir() else []
    if not versions:
        raise ValueError(f"no model version under {model_dir!r}; push a model first "
                         "(recs pipeline) or pass the serving directory.")
    return str(max(versions, key=lambda p: int(p.name)))


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
    ranker = tf.saved_model.load(model.ranker_dir).signatures["serving_default"]
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
        span=span, auc=quality["auc"] if quality["auc"] is not None else 0.0,
        ece=quality["ece"], baseline_auc=model.baseline_auc,
        drift=tuple(compare(current, reference, config)),
        unseen_title_share=outcomes.unseen_share(records, model.known_titles),
        served_engagement_rate=served["engagement_rate"] if served else None,
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
