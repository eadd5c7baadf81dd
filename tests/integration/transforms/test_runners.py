"""The multi-process DirectRunner against the single-process one on the tiny world's records:
the same vocabularies and the same transformed features."""

import pathlib

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from recs import features as F
from transforms.preprocessing import preprocessing_fn
from transforms.runners import BeamRunnerConfig


def _analyze(records: list[dict], args: list[str], out: pathlib.Path) -> tft.TFTransformOutput:
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(F.raw_feature_spec()))
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        with tft_beam.Context(temp_dir=str(out / "tmp")):
            rows = pipeline | beam.Create(records, reshuffle=True)
            transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
            _ = transform_fn | tft_beam.WriteTransformFn(str(out / "transform"))
    return tft.TFTransformOutput(str(out / "transform"))


@pytest.mark.slow
def test_transform_in_processes_equals_one_process(tiny_world, tmp_path):
    records = tiny_world.records
    one = _analyze(records, BeamRunnerConfig(direct_running_mode="in_memory",
                                             direct_num_workers=1).args(), tmp_path / "one")
    many = _analyze(records, BeamRunnerConfig().args(), tmp_path / "many")
    for name in (F.USER_ID, F.TITLE_ID, F.GENRE_VOCABULARY, F.DESCRIPTION_VOCABULARY):
        assert many.vocabulary_by_name(name) == one.vocabulary_by_name(name), name
    raw_spec = F.raw_feature_spec()
    batch = {key: tf.constant([record[key] for record in records[:200]], dtype=spec.dtype)
             for key, spec in raw_spec.items()}
    expected = one.transform_raw_features(batch)
    got = many.transform_raw_features(batch)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=key)
