"""Outcome metrics of a span: engagement, retention, and predicted against observed engagement.

Everything here is computed from a span's interaction records (ingestion's tf.Examples), the
served lists the service logged, and the scores the served ranker gives those records.
"""

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from sklearn import metrics as sk

from recs import features as F
from recs.contract.served import json_object, read_titles
from recs.evaluation import calibration


@dataclasses.dataclass(frozen=True)
class Records:
    """A span's interaction records as columns (raw features, `[n]` each)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns[F.LABEL])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.columns[key]


def read_records(examples_glob: str) -> Records:
    """Reads ingested tf.Examples (gzip TFRecord) into columns of the raw feature contract.

    Raises:
        ValueError: no file matches `examples_glob`.
    """
    files = sorted(tf.io.gfile.glob(examples_glob))
    if not files:
        raise ValueError(f"no examples match {examples_glob!r}; pass the span's "
                         "ingested examples, e.g. ingested/examples/day=2026-01-08/*.tfrecord.gz")
    spec = F.raw_feature_spec()
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
               .map(lambda x: tf.io.parse_example(x, spec)))
    parts: dict[str, list[np.ndarray]] = {key: [] for key in spec}
    for batch in dataset:
        for key, value in batch.items():
            parts[key].append(value.numpy().reshape(-1))
    return Records({key: np.concatenate(values) for key, values in parts.items()})


def score(ranker: tf.types.experimental.ConcreteFunction, records: Records,
          batch_size: int = 2048) -> np.ndarray:
    """P(engaged) of every record from a ranker signature that takes raw features.

    Args:
        ranker: the served ranker's `serving_default` signature.
        records: the span's records.

    Returns:
        `[n]` probabilities.
    """
    inputs = ranker.structured_input_signature[1]
    out = []
    for start in range(0, len(records), batch_size):
        batch = {name: tf.constant(records[name][start:start + batch_size],
                                   dtype=spec.dtype) for name, spec in inputs.items()}
        result = ranker(**batch)
        out.append(np.asarray(next(iter(result.values()))).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def prediction_quality(probabilities: np.ndarray, labels: np.ndarray,
                       slices: Mapping[str, np.ndarray] | None = None) -> dict:
    """AUC, log loss, calibration (equal-width bins and deciles), overall and by slice.

    Args:
        probabilities: `[n]` predicted P(engaged).
        labels: `[n]` observed 0/1.
        slices: slice name -> `[n]` slice value of every record (e.g. device type).

    Returns:
        {"auc", "log_loss", "ece", "reliability", "deciles", "slices": {name: {value:
        {"count", "ece", "mean_predicted", "observed", "auc"}}}}; AUC is None where a slice
        holds one class only.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    table = calibration(probabilities, labels)
    order = np.argsort(probabilities, kind="stable")
    deciles = [{"mean_predicted": float(probabilities[part].mean()),
                "observed": float(labels[part].mean()), "count": int(len(part))}
               for part in np.array_split(order, 10) if len(part)]
    result = {"auc": _auc(labels, probabilities),
              "log_loss": float(sk.log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7),
                                            labels=[0, 1])),
              "ece": table["ece"], "reliability": table, "deciles": deciles, "slices": {}}
    for name, values in (slices or {}).items():
        values = np.asarray(values)
        result["slices"][name] = {
            str(value.decode() if isinstance(value, bytes) else value): {
                "count": int(members.sum()),
                "ece": calibration(probabilities[members], labels[members])["ece"],
                "mean_predicted": float(probabilities[members].mean()),
                "observed": float(labels[members].mean()),
                "auc": _auc(labels[members], probabilities[members])}
            for value in np.unique(values) for members in [values == value]}
    return result


def _auc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    if len(np.unique(labels)) < 2:
        return None
    return float(sk.roc_auc_score(labels, probabilities))


def engagement(records: Records) -> dict[str, float]:
    """Engagement of a span: rate, watch time per active user, completion, like rate."""
    users = np.unique(records[F.USER_ID])
    return {"interactions": float(len(records)), "active_users": float(len(users)),
            "engagement_rate": float(records[F.LABEL].mean()),
            "watch_minutes_per_active_user": float(records[F.WATCH_SECONDS].sum() / 60
                                                   / max(1, len(users))),
            "completion_rate": float(records[F.COMPLETED].mean()),
            "like_rate": float(records[F.LIKED].mean())}


def return_rate(active_by_span: Mapping[int, set], span: int, horizon: int = 7) -> float | None:
    """Share of the users active in `span` who are active again within the next `horizon` spans.

    The retention proxy; None until all `horizon` later spans are known.
    """
    later = [active_by_span.get(span + d) for d in range(1, horizon + 1)]
    if any(spans is None for spans in later) or not active_by_span.get(span):
        return None
    returned = set().union(*later) & active_by_span[span]
    return len(returned) / len(active_by_span[span])


def served_engagement(served_lines: Iterable[str], next_records: Records) -> dict[str, float]:
    """How often served titles were then engaged with.

    Args:
        served_lines: the service's served-list log (JSON lines, `recs.contract.served`) of
            a span; only the user, the titles and their scores are read.
        next_records: the records of the following span(s).

    Returns:
        {"served": served (user, title) pairs, "engaged": of those engaged next,
        "engagement_rate": their ratio (None when nothing was served: no rate, not a rate
        of 0), "mean_predicted": mean ranker score of the served titles, for comparison}.

    Raises:
        ValueError: a line is not a served list (`recs.contract.dead_letters.Refused`: its
            reason and the field).
    """
    engaged = {(u, t) for u, t, label in zip(next_records[F.USER_ID], next_records[F.TITLE_ID],
                                             next_records[F.LABEL]) if label}
    served = hits = 0
    scores: list[float] = []
    for line in served_lines:
        user, items = read_titles(json_object(line))
        for title, score in items:
            served += 1
            hits += (user.encode(), title.encode()) in engaged
            if score is not None:
                scores.append(float(score))
    return {"served": float(served), "engaged": float(hits),
            "engagement_rate": hits / served if served else None,
            "mean_predicted": float(np.mean(scores)) if scores else 0.0}


def unseen_share(records: Records, known_titles: Sequence[bytes]) -> float:
    """Share of a span's interactions on titles outside `known_titles` (e.g. new launches)."""
    if not len(records):
        return 0.0
    return float((~np.isin(records[F.TITLE_ID], np.asarray(known_titles))).mean())
