"""tf.Transform on record lists in memory, for offline evaluation and the benchmarks.

`analyze_and_transform` does what TFX's Transform component does, on Python lists instead of
an ExampleGen's output: the records are written as tf.Examples, the project's
`preprocessing_fn` analyzers run on Beam's DirectRunner over a TFXIO source of the first list
(the training split), and the resulting graph, the one embedded in served models, transforms
every list. What comes back is NumPy columns of transformed features, ready for
`tf.data.Dataset.from_tensor_slices`.

Example:
    with tempfile.TemporaryDirectory() as workdir:
        result = analyze_and_transform(train_records, [test_records, title_records], workdir)
        sizes = FeatureSizes.from_transform_output(result.output)
"""

import dataclasses
import os
import pathlib
import time
from collections.abc import Sequence

import numpy as np

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.features import to_example
from recs.types import JsonDict
from transforms.preprocessing import preprocessing_fn

# Rows transformed per call of the transform graph: bounds the memory of one batch of the
# 300-wide watched ids.
_BATCH = 8192


@dataclasses.dataclass(frozen=True)
class OfflineTransform:
    """Transformed record lists and the analysis that produced them.

    Attributes:
        output: the written transform graph and vocabularies (`tft.TFTransformOutput`,
            under the work directory: valid while it exists).
        columns: per input list, in order (the analyzed one first), transformed feature name
            -> `[rows, ...]` NumPy column.
        seconds: wall time of writing, analyzing and transforming.
    """

    output: object
    columns: list[dict[str, np.ndarray]]
    seconds: float


def analyze_and_transform(train: Sequence[JsonDict], others: Sequence[Sequence[JsonDict]],
                          workdir: str | os.PathLike) -> OfflineTransform:
    """Analyzes `train` with the project's `preprocessing_fn` and transforms it and `others`.

    Args:
        train: raw interaction records (`recs.features.RAW_FEATURE_DTYPES` keys); the
            analyzers (vocabularies, quantiles, means) see only these.
        others: further record lists transformed with the same graph (test pairs, query
            rows, one row per candidate title).
        workdir: receives the tf.Examples, Beam's temporary files and the transform graph
            (`workdir/transform`).

    Returns:
        The transform output and the transformed columns of `train` and of each of `others`.

    Raises:
        ValueError: `train` is empty (there is nothing to analyze).
    """
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.tfxio import tf_example_record

    if not len(train):
        raise ValueError("train must hold at least one record: the analyzers learn the "
                         "vocabularies and statistics from it; received none.")
    start = time.perf_counter()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, rows in enumerate([train, *others]):
        path = str(workdir / f"part-{number}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for row in rows:
                writer.write(to_example(row))
        paths.append(path)
    spec = F.raw_feature_spec()
    source = tf_example_record.TFExampleRecord(
        file_pattern=paths[0], schema=schema_utils.schema_from_feature_spec(spec),
        telemetry_descriptors=["recs", "offline"])
    # Analyzed over a TFXIO source, as TFX's Transform reads ExampleGen's output.
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(workdir / "tmp")):
        transform_fn = ((pipeline | source.BeamSource(), source.TensorAdapterConfig())
                        | tft_beam.AnalyzeDataset(preprocessing_fn))
        _ = transform_fn | tft_beam.WriteTransformFn(str(workdir / "transform"))
    output = tft.TFTransformOutput(str(workdir / "transform"))
    layer = output.transform_features_layer()

    @tf.function
    def apply(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return layer(tf.io.parse_example(serialized, spec))

    columns = []
    for path in paths:
        parts: dict[str, list[np.ndarray]] = {}
        for batch in tf.data.TFRecordDataset(path).batch(_BATCH):
            for key, value in apply(batch).items():
                parts.setdefault(key, []).append(value.numpy())
        columns.append({key: np.concatenate(value) for key, value in parts.items()})
    return OfflineTransform(output=output, columns=columns,
                            seconds=time.perf_counter() - start)
