"""Beam runner configurations: the options each runner gets (the multi-process DirectRunner
against the single-process one: tests/integration/transforms/test_runners.py)."""

import pytest
from apache_beam.options.pipeline_options import (DebugOptions, DirectOptions,
                                                  GoogleCloudOptions, PipelineOptions,
                                                  PortableOptions, SetupOptions, StandardOptions,
                                                  WorkerOptions)

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
