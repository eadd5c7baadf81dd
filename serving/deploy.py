"""Kubernetes manifests and TF Serving config files, generated from the typed serving configs
so that ports, paths and model names agree by construction.

Which model goes where (stock TF Serving has no ScaNN ops):

| Deployment          | image                         | serves                              |
|---------------------|-------------------------------|-------------------------------------|
| tf-serving          | tensorflow/serving (stock)    | ranker, retrieval_exact, towers     |
| scann-model-server  | this package (recs image)     | retrieval (ScaNN)                   |
| recs-service        | this package (recs image)     | POST /v1/recommendations            |

The service sends retrieval to `scann-model-server` and ranking to `tf-serving`. All three mount
the Pushers' base directory read-only from the `recs-models` PersistentVolumeClaim (or swap that
volume for object storage). The profile store and the event stream are a Redis reachable as
`redis:6379` (a managed Redis, or any Redis chart); the consumer runs as
`recs consume --redis redis://redis:6379/0 --store redis://redis:6379/0`.

`DeploySecrets` turns on TLS and bearer tokens for `recs-service` and `scann-model-server`:
each reads its certificate and tokens from a Secret mounted as files, and the service's
config (a ConfigMap) names the files, never their content. `tf-serving` stays as it was: stock
TF Serving has no tokens and no TLS on REST (its gRPC takes `--ssl_config_file`); put it
behind a mesh if its traffic must be encrypted.
"""

import dataclasses
import json
import os
import re
from typing import Any

import yaml

from recs.config import Config, require
from recs.contract.models import STOCK_SERVABLE
from serving.config import ServiceConfig
from serving.model_server.config import ModelServingConfig
from serving.security import ClientTls, ServerTls, TokenSource

TF_SERVING_IMAGE = "tensorflow/serving:2.16.1"
SERVICE_PORT = 8080
MODELS_MOUNT = "/models"
CONFIG_MOUNT = "/config"
MODELS_CLAIM = "recs-models"
TLS_MOUNT = "/etc/recs/tls"
TOKENS_MOUNT = "/etc/recs/tokens"
SERVICE_TOKENS = "service"
"""The tokens Secret's key holding the tokens `recs-service` accepts, one a line."""
MODEL_SERVER_TOKENS = "model-server"
"""Its key holding the tokens `scann-model-server` requires; the service sends the first."""


@dataclasses.dataclass(frozen=True)
class DeploySecrets(Config):
    """The Kubernetes Secrets that turn on TLS and bearer tokens for `recs-service` and
    `scann-model-server`; an empty name leaves that part off. The Secrets are made by the
    cluster's operator (or cert-manager), never by `recs deploy`, so no secret is in a
    generated file.

    Attributes:
        tls: a Secret holding `tls.crt` and `tls.key`, a certificate whose names include
            both Services (`recs-service`, `scann-model-server`), and `ca.crt`, the CA the
            service checks the ScaNN server's certificate with (cert-manager writes all
            three). The service serves HTTPS, the ScaNN server HTTPS and gRPC over TLS, and
            their probes use HTTPS.
        tokens: a Secret with the keys `service` (the tokens `recs-service` accepts, one a
            line) and `model-server` (those `scann-model-server` requires; the service sends
            the first). `/healthz`, `/readyz` and REST model status stay open to the probes.

    Example:
        kubectl create secret generic recs-tokens --from-file=service=service-tokens.txt \
            --from-file=model-server=model-server-tokens.txt
        write_deployment("deploy", image, DeploySecrets(tls="recs-tls", tokens="recs-tokens"))
    """

    tls: str = ""
    tokens: str = ""

    def __post_init__(self) -> None:
        for name in ("tls", "tokens"):
            value = getattr(self, name)
            require(not value or bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value)),
                    name, "a Secret's name (lower-case letters, digits and '-') or empty",
                    value)


def _secret_volume(name: str, secret: str, keys: tuple[str, ...]) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret,
                                     "items": [{"key": key, "path": key} for key in keys]}}


def _labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "recs"}


def _service(name: str, ports: dict[str, int]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": _labels(name)},
            "spec": {"selector": _labels(name),
                     "ports": [{"name": port_name, "port": port, "targetPort": port}
                               for port_name, port in ports.items()]}}


def _autoscaler(name: str, minimum: int, maximum: int, cpu_percent: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": _labels(name)},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": name},
                     "minReplicas": minimum, "maxReplicas": maximum,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu",
                         "target": {"type": "Utilization",
                                    "averageUtilization": cpu_percent}}}]}}


def _deployment(name: str, container: dict[str, Any], volumes: list[dict[str, Any]],
                replicas: int, scrape: tuple[int, str] | None, https: bool = False
                ) -> dict[str, Any]:
    annotations = {} if scrape is None else {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(scrape[0]),
                                             "prometheus.io/path": scrape[1]}
    if scrape is not None and https:
        annotations["prometheus.io/scheme"] = "https"
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": _labels(name)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": _labels(name)},
                     # Zero-downtime roll-outs: a new pod must be ready before one goes.
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {
                         "metadata": {"labels": _labels(name), "annotations": annotations},
                         "spec": {"containers": [container], "volumes": volumes}}}}


def _models_volume() -> dict[str, Any]:
    return {"name": "models", "persistentVolumeClaim": {"claimName": MODELS_CLAIM,
                                                         "readOnly": True}}


def _mount(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": True}


def _secured(service: ServiceConfig, secrets: DeploySecrets) -> ServiceConfig:
    """`service` reading its certificate and tokens from where `secrets` are mounted."""
    settings: dict[str, Any] = {}
    if secrets.tls:
        settings.update(tls=ServerTls(cert_file=f"{TLS_MOUNT}/tls.crt",
                                      key_file=f"{TLS_MOUNT}/tls.key"),
                        model_server_tls=ClientTls(ca_file=f"{TLS_MOUNT}/ca.crt"))
    if secrets.tokens:
        settings.update(
            tokens=TokenSource(file=f"{TOKENS_MOUNT}/{SERVICE_TOKENS}"),
            retrieval_server_token=TokenSource(file=f"{TOKENS_MOUNT}/{MODEL_SERVER_TOKENS}"))
    return dataclasses.replace(service, **settings)


def manifests(image: str, models: ModelServingConfig | None = None,
              service: ServiceConfig | None = None, secrets: DeploySecrets = DeploySecrets()
              ) -> dict[str, list[dict[str, Any]]]:
    """All Kubernetes objects, grouped by the file they are written to.

    Args:
        image: the recs image (deploy/Dockerfile) for the service and the ScaNN server.
        models: stock TF Serving's config; its models must not need ScaNN.
        service: the recommendation service's config; its model-server addresses are set
            here to the in-cluster Services, and its TLS and token files from `secrets`.
        secrets: the Secrets that turn on TLS and bearer tokens (off by default).

    Raises:
        ValueError: `models` lists a model stock TF Serving cannot load or asks for TLS or
            tokens; `service` names TLS or token files itself (they come from `secrets`,
            which mounts them).
    """
    models = models or ModelServingConfig(base_dir=MODELS_MOUNT, models=STOCK_SERVABLE)
    if models.needs_scann:
        scann_only = sorted(set(models.models) - set(STOCK_SERVABLE))
        raise ValueError(f"models must be a subset of {STOCK_SERVABLE}: stock TF Serving cannot "
                         f"load {scann_only} (ScaNN ops); scann-model-server serves them.")
    require(not (models.tls.enabled or models.tokens.enabled), "models.tls and models.tokens",
            "empty: stock TF Serving has no bearer tokens and no REST TLS; secure "
            "scann-model-server with `secrets` and tf-serving with a mesh",
            (models.tls, models.tokens))
    service = service or ServiceConfig()
    for name in ("tokens", "tls", "model_server_tls", "model_server_token",
                 "retrieval_server_token"):
        require(getattr(service, name) == type(getattr(service, name))(), f"service.{name}",
                "empty: the files are mounted from `secrets`, which sets them",
                getattr(service, name))
    scann_scheme = "https" if secrets.tls else "http"
    service = _secured(dataclasses.replace(
        service,
        model_server=f"http://tf-serving:{models.rest_port}",
        retrieval_server=f"{scann_scheme}://scann-model-server:{models.rest_port}",
        protocol="rest", serving_dir=MODELS_MOUNT, store="redis://redis:6379/0"), secrets)
    probe_scheme = {"scheme": "HTTPS"} if secrets.tls else {}

    files = {name: text for name, text in (("models.config", models.models_config()),
                                           ("batching_parameters.txt",
                                            models.batching_parameters()),
                                           ("monitoring.config", models.monitoring_config()))}
    tf_serving = {
        "name": "tf-serving", "image": TF_SERVING_IMAGE,
        "args": models.server_args(CONFIG_MOUNT),
        "ports": [{"name": "grpc", "containerPort": models.grpc_port},
                  {"name": "http", "containerPort": models.rest_port}],
        # Ready once the ranker serves (TF Serving has no all-models probe; the service's
        # /readyz checks every model it calls).
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{service.ranker_model}",
                                       "port": models.rest_port},
                           "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": models.grpc_port}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"},
                      "limits": {"memory": "8Gi"}},
        "volumeMounts": [_mount("models", MODELS_MOUNT), _mount("config", CONFIG_MOUNT)]}
    scann_security: list[str] = []
    scann_volumes, service_volumes = [_models_volume()], [
        _models_volume(), {"name": "config", "configMap": {"name": "recs-service-config"}}]
    scann_mounts, service_mounts = [_mount("models", MODELS_MOUNT)], [
        _mount("models", MODELS_MOUNT), _mount("config", CONFIG_MOUNT)]
    if secrets.tls:
        scann_security += ["--tls-cert", f"{TLS_MOUNT}/tls.crt",
                           "--tls-key", f"{TLS_MOUNT}/tls.key"]
        scann_volumes.append(_secret_volume("tls", secrets.tls, ("tls.crt", "tls.key")))
        service_volumes.append(_secret_volume("tls", secrets.tls,
                                              ("tls.crt", "tls.key", "ca.crt")))
    if secrets.tokens:
        scann_security += ["--token-file", f"{TOKENS_MOUNT}/{MODEL_SERVER_TOKENS}"]
        scann_volumes.append(_secret_volume("tokens", secrets.tokens, (MODEL_SERVER_TOKENS,)))
        service_volumes.append(_secret_volume("tokens", secrets.tokens,
                                              (SERVICE_TOKENS, MODEL_SERVER_TOKENS)))
    for name, path in (("tls", TLS_MOUNT), ("tokens", TOKENS_MOUNT)):
        if getattr(secrets, name):
            scann_mounts.append(_mount(name, path))
            service_mounts.append(_mount(name, path))
    scann_server = {
        "name": "scann-model-server", "image": image,
        "command": ["recs", "serve-models", "--base", MODELS_MOUNT, "--host", "0.0.0.0",
                    "--rest-port", str(models.rest_port), "--grpc-port",
                    str(models.grpc_port), "--poll-seconds", str(models.poll_seconds),
                    *scann_security],
        "env": [{"name": "TF_USE_LEGACY_KERAS", "value": "1"}],
        "ports": [{"name": "grpc", "containerPort": models.grpc_port},
                  {"name": "http", "containerPort": models.rest_port}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{service.retrieval_model}",
                                       "port": models.rest_port, **probe_scheme},
                           "periodSeconds": 5},
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"},
                      "limits": {"memory": "8Gi"}},
        "volumeMounts": scann_mounts}
    recs_service = {
        "name": "recs-service", "image": image,
        "command": ["recs", "serve", "--config", f"{CONFIG_MOUNT}/service.json",
                    "--host", "0.0.0.0", "--port", str(SERVICE_PORT)],
        "env": [{"name": "TF_USE_LEGACY_KERAS", "value": "1"}],
        "ports": [{"name": "http", "containerPort": SERVICE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": SERVICE_PORT,
                                       **probe_scheme}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": SERVICE_PORT,
                                      **probe_scheme}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                      "limits": {"memory": "4Gi"}},
        "volumeMounts": service_mounts}

    return {
        "tf-serving.yaml": [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "tf-serving-config", "labels": _labels("tf-serving")},
             "data": files},
            _deployment("tf-serving", tf_serving,
                        [_models_volume(), {"name": "config",
                                            "configMap": {"name": "tf-serving-config"}}],
                        replicas=2, scrape=(models.rest_port, models.monitoring_path)),
            _service("tf-serving", {"grpc": models.grpc_port, "http": models.rest_port}),
            _autoscaler("tf-serving", 2, 10, 70)],
        "scann-model-server.yaml": [
            _deployment("scann-model-server", scann_server, scann_volumes, replicas=2,
                        scrape=None),
            _service("scann-model-server", {"grpc": models.grpc_port,
                                            "http": models.rest_port}),
            _autoscaler("scann-model-server", 2, 10, 70)],
        "recs-service.yaml": [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "recs-service-config", "labels": _labels("recs-service")},
             "data": {"service.json": json.dumps(service.to_dict(), indent=2,
                                                 sort_keys=True)}},
            _deployment("recs-service", recs_service, service_volumes, replicas=2,
                        scrape=(SERVICE_PORT, "/metrics"), https=bool(secrets.tls)),
            _service("recs-service", {"http": SERVICE_PORT}),
            _autoscaler("recs-service", 2, 20, 60)],
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the config files in ConfigMaps) as literal blocks."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def render(documents: list[dict[str, Any]]) -> str:
    """YAML documents as `kubectl apply -f` reads them."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def write_deployment(out_dir: str, image: str, secrets: DeploySecrets = DeploySecrets()
                     ) -> list[str]:
    """Writes `<out_dir>/k8s/*.yaml` and `<out_dir>/tf_serving/` config files; returns paths.

    Args:
        out_dir: where to write.
        image: the recs image of the service and the ScaNN server.
        secrets: the Secrets that turn on TLS and bearer tokens (off by default).
    """
    paths = []
    os.makedirs(os.path.join(out_dir, "k8s"), exist_ok=True)
    for name, documents in manifests(image, secrets=secrets).items():
        path = os.path.join(out_dir, "k8s", name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(render(documents))
        paths.append(path)
    config = ModelServingConfig(base_dir=MODELS_MOUNT, models=STOCK_SERVABLE)
    paths.extend(config.write_files(os.path.join(out_dir, "tf_serving")).values())
    return paths
