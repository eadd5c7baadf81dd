"""How a model server serves the pushed models: one typed config for the local server
(`serve_models`) and for the `tensorflow_model_server` files and flags the deployment writes
(`serving.deploy`)."""

import dataclasses
import os
from typing import Any

from recs.config import Config, require
from recs.contract.models import (SERVED_MODELS, STOCK_SERVABLE, BatchingParams,
                                  is_version_label)
from serving.security import ServerTls, TokenSource


@dataclasses.dataclass(frozen=True)
class ModelServingConfig(Config):
    """How `tensorflow_model_server` (or `recs serve-models`) serves the pushed models.

    Attributes:
        base_dir: the Pushers' base directory, `<base_dir>/<model>/<version>/`.
        models: the models to serve.
        num_versions: versions kept loaded per model (TF Serving's `latest` policy); more than
            one lets a caller pin the previous version during a roll-out.
        labels: version labels, e.g. {"ranker": {"stable": 3, "canary": 4}}.
        host: the interface the local server binds (`serve_models`); TF Serving's image
            binds all of them.
        rest_port / grpc_port: TF Serving's defaults are 8501 and 8500; 0 lets the local
            server pick free ports.
        poll_seconds: how often the base directory is scanned for new versions; 0 reads it
            once, at start-up.
        enable_batching: server-side batching (`--enable_batching` with
            `--enable_per_model_batching_parameters`): only models whose version directory
            holds `batching_params.pbtxt` are batched (the export writes it for models whose
            signatures are all row-aligned, never for the recommender), with the batch size and
            timeout it holds.
        batching: the global BatchingParameters file; TF Serving reads only its thread pool
            (`num_batch_threads`, which should match the cores the server's pod requests).
        monitoring_path: where Prometheus scrapes TF Serving's metrics.
        intra_op_threads / inter_op_threads: TensorFlow's thread pools of the server
            process (`--tensorflow_intra_op_parallelism`, `--tensorflow_inter_op_parallelism`);
            0 leaves TensorFlow's default, a pool as large as the machine's cores each, whose
            idle workers spin for work: beside a service on the same cores that spinning is
            CPU taken from requests. Set them to the cores the server's pod requests.
        tls: the local server's certificate and key, for its REST and gRPC ports alike (and
            a client CA for mutual TLS); empty serves plain text.
        tokens: the bearer tokens the local server requires on both ports (REST's
            `Authorization` header, gRPC's `authorization` metadata), except REST model
            status, which the readiness probe reads; empty requires none. `tls` and `tokens`
            are this package's server only: `server_args` and the files never carry them, as
            stock TF Serving has no bearer tokens and takes gRPC TLS from its
            `--ssl_config_file` (leave REST to a mesh or an ingress).

    Example:
        server = serve_models(ModelServingConfig.local("pipeline_output/serving"))
    """

    base_dir: str = "/models"
    models: tuple[str, ...] = STOCK_SERVABLE
    num_versions: int = 1
    labels: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    poll_seconds: float = 5.0
    enable_batching: bool = True
    batching: BatchingParams = BatchingParams()
    monitoring_path: str = "/monitoring/prometheus/metrics"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    tls: ServerTls = ServerTls()
    tokens: TokenSource = TokenSource()

    @classmethod
    def local(cls, base_dir: str, **overrides: Any) -> "ModelServingConfig":
        """The embedded model server's defaults: every pushed model, free ports on
        loopback, no polling and no batching unless `overrides` ask for them."""
        return cls(**{"base_dir": base_dir, "models": SERVED_MODELS, "rest_port": 0,
                      "grpc_port": 0, "poll_seconds": 0.0, "enable_batching": False,
                      **overrides})

    def __post_init__(self) -> None:
        require(bool(self.models), "models", "a non-empty tuple of model names", self.models)
        unknown = sorted(set(self.models) - set(SERVED_MODELS))
        require(not unknown, "models", f"a subset of {SERVED_MODELS}", self.models)
        require(self.num_versions >= 1, "num_versions", ">= 1", self.num_versions)
        for model, labels in self.labels.items():
            require(model in self.models, "labels", f"keyed by served models {self.models}",
                    model)
            for label, version in labels.items():
                require(is_version_label(label) and version > 0,
                        "labels", "label -> positive version", f"{label}: {version}")
        for name in ("rest_port", "grpc_port"):
            require(0 <= getattr(self, name) < 65536, name, "a TCP port (0: any free one)",
                    getattr(self, name))
        require(self.rest_port != self.grpc_port or self.rest_port == 0, "grpc_port",
                "different from rest_port", self.grpc_port)
        require(self.poll_seconds >= 0, "poll_seconds", ">= 0", self.poll_seconds)
        require(isinstance(self.batching, BatchingParams), "batching", "a BatchingParams",
                self.batching)
        require(self.monitoring_path.startswith("/"), "monitoring_path", "an absolute path",
                self.monitoring_path)
        for name in ("intra_op_threads", "inter_op_threads"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                    "an int >= 0 (0: TensorFlow's default)", getattr(self, name))
        require(isinstance(self.tls, ServerTls), "tls", "a ServerTls", self.tls)
        require(isinstance(self.tokens, TokenSource), "tokens", "a TokenSource", self.tokens)

    @property
    def needs_scann(self) -> bool:
        """True when a served model needs ScaNN's ops, which stock TF Serving lacks."""
        return any(model not in STOCK_SERVABLE for model in self.models)

    def models_config(self) -> str:
        """TF Serving's `--model_config_file` (ModelServerConfig text proto)."""
        entries = []
        for name in self.models:
            labels = "".join(f"    version_labels {{ key: \"{label}\" value: {version} }}\n"
                             for label, version in sorted(self.labels.get(name, {}).items()))
            entries.append(
                f"  config {{\n    name: \"{name}\"\n"
                f"    base_path: \"{os.path.join(self.base_dir, name)}\"\n"
                f"    model_platform: \"tensorflow\"\n"
                f"    model_version_policy {{ latest {{ num_versions: {self.num_versions} }} }}\n"
                f"{labels}  }}")
        return "model_config_list {\n" + "\n".join(entries) + "\n}\n"

    def batching_parameters(self) -> str:
        """TF Serving's `--batching_parameters_file` (BatchingParameters text proto)."""
        return self.batching.text()

    def monitoring_config(self) -> str:
        """TF Serving's `--monitoring_config_file` (MonitoringConfig text proto)."""
        return ("prometheus_config {\n  enable: true\n"
                f"  path: \"{self.monitoring_path}\"\n}}\n")

    def _poll_wait(self) -> int:
        """Whole seconds for TF Serving's poll flags, where 0 means once at start-up."""
        return int(max(1, self.poll_seconds)) if self.poll_seconds > 0 else 0

    def server_args(self, config_dir: str) -> list[str]:
        """`tensorflow_model_server` arguments reading the files written by `write_files`."""
        return [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                f"--model_config_file={config_dir}/models.config",
                f"--model_config_file_poll_wait_seconds={self._poll_wait()}",
                f"--file_system_poll_wait_seconds={self._poll_wait()}",
                f"--enable_batching={str(self.enable_batching).lower()}",
                "--enable_per_model_batching_parameters=true",
                f"--batching_parameters_file={config_dir}/batching_parameters.txt",
                f"--monitoring_config_file={config_dir}/monitoring.config",
                "--enable_model_warmup=true",
                f"--tensorflow_intra_op_parallelism={self.intra_op_threads}",
                f"--tensorflow_inter_op_parallelism={self.inter_op_threads}"]

    def write_files(self, directory: str) -> dict[str, str]:
        """Writes models.config, batching_parameters.txt and monitoring.config; returns paths."""
        os.makedirs(directory, exist_ok=True)
        files = {"models.config": self.models_config(),
                 "batching_parameters.txt": self.batching_parameters(),
                 "monitoring.config": self.monitoring_config()}
        paths = {}
        for name, text in files.items():
            paths[name] = os.path.join(directory, name)
            with open(paths[name], "w", encoding="utf-8") as handle:
                handle.write(text)
        return paths
