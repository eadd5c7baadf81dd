"""Beam runner configurations: the same ingestion and TFX Beam stages on any Beam runner.

Every Beam job of the project (ingestion here; tf.Transform, TFDV and TFMA inside the TFX
pipeline through `PipelineConfig.beam_args`) takes its runner from pipeline options. This module
writes those options from one typed config per runner, so that the arguments that must travel
together (a runner and its staging, a portable runner and its SDK harness) are never half set.

Staging the project's code on remote workers:
* Dataflow: `setup_file` (the repository's `setup.py`; Beam builds an sdist and installs it on
  each worker) or, faster to start and the only way with pinned native wheels, a custom SDK
  container (`sdk_container_image`) built from `deploy/pipeline/Dockerfile`.
* Flink and Spark (portable runners): the SDK harness runs in `environment_config`, a container
  image that must hold this package and the lock file's libraries (the same image); `setup_file`
  would reinstall TensorFlow on every worker start.
"""

import dataclasses

from recs.config import Config, require

RUNNERS = ("direct", "dataflow", "flink", "spark", "portable")
ENVIRONMENT_TYPES = ("DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK")


@dataclasses.dataclass(frozen=True)
class BeamRunnerConfig(Config):
    """Where a Beam job runs and how the project's code reaches the workers.

    Attributes:
        runner: "direct" (this machine), "dataflow", "flink", "spark" or "portable" (any job
            service, e.g. a Flink or Spark job server already running).
        direct_num_workers: DirectRunner worker count (0 = one per core).
        direct_running_mode: "in_memory", "multi_threading" or "multi_processing" (the
            mode that uses every core: workers are processes, so no GIL contention).
        project, region, temp_location, staging_location: Google Cloud settings (Dataflow).
        max_num_workers: autoscaling ceiling of a Dataflow job (0 = Dataflow's default).
        machine_type: Dataflow worker type, e.g. "n2-highmem-4" for tf.Transform.
        flink_master: "host:port" of a Flink cluster's REST endpoint.
        spark_master_url: e.g. "spark://host:7077".
        job_endpoint: "host:port" of a running Beam job service (portable runner).
        parallelism: Flink parallelism (0 = the cluster's default).
        environment_type: where portable runners start the Python SDK harness.
        environment_config: the SDK harness image (DOCKER) or address (EXTERNAL).
        setup_file: a `setup.py` Beam packages and installs on every worker.
        sdk_container_image: a Dataflow worker image holding this package.
        extra_args: further options, passed through unchanged.
    """

    runner: str = "direct"
    direct_num_workers: int = 2
    direct_running_mode: str = "multi_processing"
    project: str = ""
    region: str = ""
    temp_location: str = ""
    staging_location: str = ""
    max_num_workers: int = 0
    machine_type: str = ""
    flink_master: str = ""
    spark_master_url: str = ""
    job_endpoint: str = ""
    parallelism: int = 0
    environment_type: str = "DOCKER"
    environment_config: str = ""
    setup_file: str = ""
    sdk_container_image: str = ""
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require(self.runner in RUNNERS, "runner", f"one of {RUNNERS}", self.runner)
        require(self.direct_num_workers >= 0, "direct_num_workers", ">= 0",
                self.direct_num_workers)
        require(self.direct_running_mode in ("in_memory", "multi_threading",
                                             "multi_processing"),
                "direct_running_mode", "'in_memory', 'multi_threading' or 'multi_processing'",
                self.direct_running_mode)
        require(self.environment_type in ENVIRONMENT_TYPES, "environment_type",
                f"one of {ENVIRONMENT_TYPES}", self.environment_type)
        needed = {"dataflow": ("project", "region", "temp_location"),
                  "flink": ("flink_master",), "spark": ("spark_master_url",),
                  "portable": ("job_endpoint",)}.get(self.runner, ())
        for name in needed:
            require(bool(getattr(self, name)), name,
                    f"set for the {self.runner} runner", getattr(self, name))
        if self.runner in ("flink", "spark", "portable") and self.environment_type in (
                "DOCKER", "EXTERNAL"):
            require(bool(self.environment_config), "environment_config",
                    f"the SDK harness {'image' if self.environment_type == 'DOCKER' else 'address'}"
                    f" for environment_type={self.environment_type}", self.environment_config)

    def args(self) -> list[str]:
        """The Beam pipeline options, e.g. for `run_ingestion` or `PipelineConfig.beam_args`."""
        build = {"direct": self._direct, "dataflow": self._dataflow, "flink": self._flink,
                 "spark": self._spark, "portable": self._portable}[self.runner]
        return build() + list(self.extra_args)

    def _direct(self) -> list[str]:
        return ["--runner=DirectRunner", f"--direct_num_workers={self.direct_num_workers}",
                f"--direct_running_mode={self.direct_running_mode}"]

    def _dataflow(self) -> list[str]:
        args = ["--runner=DataflowRunner", f"--project={self.project}",
                f"--region={self.region}", f"--temp_location={self.temp_location}"]
        args += _optional(staging_location=self.staging_location,
                          max_num_workers=self.max_num_workers,
                          machine_type=self.machine_type, setup_file=self.setup_file,
                          sdk_container_image=self.sdk_container_image)
        if self.sdk_container_image:
            # Custom containers need Runner v2.
            args.append("--experiments=use_runner_v2")
        return args

    def _harness(self) -> list[str]:
        return [f"--environment_type={self.environment_type}",
                *_optional(environment_config=self.environment_config,
                           setup_file=self.setup_file)]

    def _flink(self) -> list[str]:
        return ["--runner=FlinkRunner", f"--flink_master={self.flink_master}",
                *_optional(parallelism=self.parallelism), *self._harness()]

    def _spark(self) -> list[str]:
        return ["--runner=SparkRunner", f"--spark_master_url={self.spark_master_url}",
                *self._harness()]

    def _portable(self) -> list[str]:
        return ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}",
                *self._harness()]


def _optional(**values: object) -> list[str]:
    return [f"--{name}={value}" for name, value in values.items() if value]
