"""Data drift and training/serving skew with TensorFlow Data Validation.

Statistics are computed per span (one day of ingested interactions) with TFDV's Beam pipeline,
then compared with the training spans' statistics through TFDV's drift comparators set on a
schema: L-infinity distance for categorical features, approximate Jensen-Shannon divergence for
numeric ones. TFDV reports both the anomalies and every measured value, so a feature below its
threshold still shows how close it came.
"""

import dataclasses

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from monitoring.config import MonitorConfig

Statistics = statistics_pb2.DatasetFeatureStatisticsList


@dataclasses.dataclass(frozen=True)
class DriftMeasurement:
    """One feature's distance between the current span and the reference."""

    feature: str
    comparator: str  # "L_INFTY" or "JENSEN_SHANNON_DIVERGENCE"
    value: float
    threshold: float
    kind: str = "drift"  # "drift" (against training spans) or "skew" (against serving)

    @property
    def exceeded(self) -> bool:
        return self.value > self.threshold


def span_statistics(examples_glob: str, beam_args: list[str] | None = None) -> Statistics:
    """TFDV statistics of one span's tf.Examples (TFRecord, gzip detected by suffix)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return tfdv.generate_statistics_from_tfrecord(
        data_location=examples_glob,
        pipeline_options=PipelineOptions(beam_args or []))


def comparator_schema(reference: Statistics, config: MonitorConfig,
                      skew: bool = False) -> schema_pb2.Schema:
    """A schema inferred from the reference statistics with the configured comparators set.

    Raises:
        ValueError: a configured feature is not in the reference statistics.
    """
    schema = tfdv.infer_schema(reference)
    known = {feature.name for feature in schema.feature}
    missing = sorted((set(config.categorical_features) | set(config.numeric_features)) - known)
    if missing:
        raise ValueError(f"features {missing} are not in the reference statistics (known: "
                         f"{sorted(known)}); fix MonitorConfig's feature lists.")
    for name in config.categorical_features:
        comparator = tfdv.get_feature(schema, name)
        (comparator.skew_comparator if skew else comparator.drift_comparator
         ).infinity_norm.threshold = config.linf_threshold
    for name in config.numeric_features:
        comparator = tfdv.get_feature(schema, name)
        (comparator.skew_comparator if skew else comparator.drift_comparator
         ).jensen_shannon_divergence.threshold = config.js_threshold
    return schema


def _measurements(anomalies: anomalies_pb2.Anomalies) -> list[DriftMeasurement]:
    found = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for kind, measurements in (("drift", info.drift_measurements),
                                   ("skew", info.skew_measurements)):
            for m in measurements:
                found.append(DriftMeasurement(
                    feature=feature,
                    comparator=anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                    value=float(m.value), threshold=float(m.threshold), kind=kind))
    return sorted(found, key=lambda m: (m.kind, m.feature))


def compare(current: Statistics, reference: Statistics, config: MonitorConfig,
            serving: Statistics | None = None) -> list[DriftMeasurement]:
    """Measures drift of `current` from `reference` (and skew against `serving`, if given).

    Args:
        current: statistics of the monitored span.
        reference: statistics of the training spans.
        config: features and thresholds.
        serving: statistics of the features the service saw, for training/serving skew.

    Returns:
        One measurement per configured feature and comparison; `exceeded` marks the ones
        above their threshold.
    """
    schema = comparator_schema(reference, config)
    measurements = _measurements(tfdv.validate_statistics(
        current, schema, previous_statistics=reference))
    if serving is not None:
        skew_schema = comparator_schema(reference, config, skew=True)
        measurements += [m for m in _measurements(tfdv.validate_statistics(
            reference, skew_schema, serving_statistics=serving)) if m.kind == "skew"]
    return measurements
