"""Beam runner configurations, and the multi-process DirectRunner against the single-process one."""

import pathlib

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import (DebugOptions, DirectOptions,
                                                  GoogleCloudOptions, PipelineOptions,
                                                  PortableOptions, SetupOptions, StandardOptions,
                                                  WorkerOptions)
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from recs import features as F
from transforms.preprocessing import preprocessing_fn
from transforms.runners import BeamRunnerConfig

DATAFLOW = BeamRunnerConfig(runner="dataflow", project="p", region="europe-west4",
                            temp_location="gs://b/tmp", max_num_workers=20,
                            machine_type="n2-highmem-4", setup_file="./setup.py")
FLINK = BeamRunnerConfig(runner="flink", flink_master="flink-jobmanager:8081", parallelism=8,
                         environment_config="registry.example/recs-pipeline:1")
SPARK = BeamRunnerConfig(runner="spark", spark_master_url="spark://spark-master:7077",
                         environment_config="registry.example/recs-pipeline:1")


def _options(config: BeamRunnerConfig) -> PipelineOptions:
    return PipelineOptions(config.args())


def test_direct_defaults_to_every_core_in_processes():
    options = _options(BeamRunnerConfig())
    direct = options.view_as(DirectOptions)
    assert options.view_as(StandardOptions).runner == "DirectRunner"
    assert (direct.direct_running_mode, direct.direct_num_workers) == ("multi_processing", 2)


def test_dataflow_options_carry_project_staging_and_workers():
    options = _options(DATAFLOW)
    cloud = options.view_as(GoogleCloudOptions)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert (cloud.project, cloud.region, cloud.temp_location) == ("p", "europe-west4",
                                                                  "gs://b/tmp")
    workers = options.view_as(WorkerOptions)
    assert (workers.max_num_workers, workers.machine_type) == (20, "n2-highmem-4")
    assert options.view_as(SetupOptions).setup_file == "./setup.py"


def test_dataflow_custom_container_turns_on_runner_v2():
    options = _options(BeamRunnerConfig(runner="dataflow", project="p", region="r",
                                        temp_location="gs://b/t",
                                        sdk_container_image="registry.example/recs:1"))
    assert options.view_as(WorkerOptions).sdk_container_image == "registry.example/recs:1"
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments


@pytest.mark.parametrize("config, runner, master", [
    (FLINK, "FlinkRunner", ("flink_master", "flink-jobmanager:8081")),
    (SPARK, "SparkRunner", ("spark_master_url", "spark://spark-master:7077")),
])
def test_portable_runners_run_the_sdk_harness_in_the_project_image(config, runner, master):
    options = _options(config)
    assert options.view_as(StandardOptions).runner == runner
    portable = options.view_as(PortableOptions)
    assert (portable.environment_type, portable.environment_config) == (
        "DOCKER", "registry.example/recs-pipeline:1")
    assert options.get_all_options()[master[0]] == master[1]


def test_extra_args_pass_through_last():
    config = BeamRunnerConfig(extra_args=("--direct_num_workers=4",))
    assert config.args()[-1] == "--direct_num_workers=4"
    assert _options(config).view_as(DirectOptions).direct_num_workers == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"runner": "samza"}, "runner must be one of"),
    ({"runner": "dataflow", "project": "p", "region": "r"}, "temp_location must be set"),
    ({"runner": "flink"}, "flink_master must be set"),
    ({"runner": "spark", "spark_master_url": "spark://m:7077"},
     "environment_config must be the SDK harness image"),
    ({"direct_running_mode": "threads"}, "direct_running_mode must be"),
])
def test_incomplete_runner_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BeamRunnerConfig(**kwargs)


def test_runner_config_round_trips():
    assert BeamRunnerConfig.from_json(FLINK.to_json()) == FLINK


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
