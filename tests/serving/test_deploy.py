"""TF Serving config files and Kubernetes manifests: valid, consistent with the typed configs,
and the checked-in copies current."""

import json
import pathlib
import re
import urllib.parse

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from recs.contract.models import STOCK_SERVABLE
from serving.config import ServiceConfig
from serving.deploy import CONFIG_MOUNT, DeploySecrets, manifests, render, write_deployment
from serving.model_server.config import ModelServingConfig
from serving.security import TokenSource

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "registry.example/recs:0.1.0"
SECRETS = DeploySecrets(tls="recs-tls", tokens="recs-tokens")


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    return [doc for docs in manifests(IMAGE).values() for doc in docs]


def _by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def test_checked_in_deploy_files_are_current(tmp_path):
    for path in write_deployment(str(tmp_path), IMAGE):
        relative = pathlib.Path(path).relative_to(tmp_path)
        assert (ROOT / "deploy" / relative).read_text() == pathlib.Path(path).read_text(), (
            f"deploy/{relative} is stale: regenerate with `recs deploy --out deploy`")


def test_stock_tf_serving_is_never_given_the_scann_model():
    with pytest.raises(ValueError, match=r"stock TF Serving cannot load \['retrieval'\]"):
        manifests(IMAGE, models=ModelServingConfig(models=("ranker", "retrieval")))


def test_every_document_is_a_well_formed_kubernetes_object(documents):
    for doc in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc.get("kind")
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    # Rendering round-trips through a YAML parser.
    assert list(yaml.safe_load_all(render(documents))) == documents


def test_services_autoscalers_and_volumes_point_at_what_exists(documents):
    deployments = _by_kind(documents, "Deployment")
    config_maps = _by_kind(documents, "ConfigMap")
    assert sorted(deployments) == ["recs-service", "scann-model-server", "tf-serving"]
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        (container,) = spec["template"]["spec"]["containers"]
        volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
        probe_port = container["readinessProbe"].get("httpGet", {}).get("port")
        assert probe_port in {p["containerPort"] for p in container["ports"]}, name
    for name, service in _by_kind(documents, "Service").items():
        target = deployments[name]["spec"]["template"]
        assert service["spec"]["selector"] == target["metadata"]["labels"]
        container_ports = {p["containerPort"] for p in target["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    for autoscaler in _by_kind(documents, "HorizontalPodAutoscaler").values():
        assert autoscaler["spec"]["scaleTargetRef"]["name"] in deployments
        assert autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]


def test_tf_serving_reads_its_config_files_and_serves_only_stock_models(documents):
    deployment = _by_kind(documents, "Deployment")["tf-serving"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving:")
    files = _by_kind(documents, "ConfigMap")["tf-serving-config"]["data"]
    for arg in container["args"]:
        if arg.startswith(f"--model_config_file=") or arg.endswith((".txt", ".config")):
            assert arg.split("=", 1)[1].removeprefix(f"{CONFIG_MOUNT}/") in files, arg
    parsed = text_format.Parse(files["models.config"],
                               model_server_config_pb2.ModelServerConfig())
    assert {c.name for c in parsed.model_config_list.config} <= set(STOCK_SERVABLE)
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/ranker"


def test_the_service_config_reaches_both_model_servers_and_its_probes_exist(documents):
    service_json = _by_kind(documents, "ConfigMap")["recs-service-config"]["data"]["service.json"]
    config = ServiceConfig.from_json(service_json)
    services = _by_kind(documents, "Service")
    for url in (config.model_server, config.retrieval_server):
        address = urllib.parse.urlparse(url)
        assert address.port in {p["port"] for p in services[address.hostname]["spec"]["ports"]}
    deployment = _by_kind(documents, "Deployment")["recs-service"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    spec = json.loads((ROOT / "serving" / "openapi.json").read_text())
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in spec["paths"]
    assert container["command"][:2] == ["recs", "serve"]


def test_the_dockerfile_copies_every_package_and_runs_the_service():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    packages = {line.split()[1] for line in dockerfile.splitlines()
                if line.startswith("COPY") and "requirements" not in line and "setup" not in line}
    assert packages == {"recs", "recs_cli", "serving", "transforms", "tfx_pipeline",
                        "monitoring"}
    assert all((ROOT / package / "__init__.py").exists() for package in packages)
    assert "TF_USE_LEGACY_KERAS=1" in dockerfile
    assert 'ENTRYPOINT ["recs"]' in dockerfile and '"--port", "8080"' in dockerfile


def _container(documents: list[dict], name: str) -> dict:
    (container,) = _by_kind(documents, "Deployment")[name]["spec"]["template"]["spec"][
        "containers"]
    return container


def _secret_file(documents: list[dict], name: str, path: str) -> tuple[str, str]:
    """(Secret, key) that the file at `path` of deployment `name` is mounted from."""
    spec = _by_kind(documents, "Deployment")[name]["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    (mount,) = [mount for mount in spec["containers"][0]["volumeMounts"]
                if path.startswith(mount["mountPath"] + "/")]
    secret = volumes[mount["name"]]["secret"]
    key = path.removeprefix(mount["mountPath"] + "/")
    assert key in {item["path"] for item in secret["items"]}, (name, path)
    return secret["secretName"], key


def _service_config(documents: list[dict]) -> ServiceConfig:
    return ServiceConfig.from_json(
        _by_kind(documents, "ConfigMap")["recs-service-config"]["data"]["service.json"])


def test_by_default_no_secret_is_mounted_and_nothing_asks_for_tls_or_tokens(documents):
    for deployment in _by_kind(documents, "Deployment").values():
        assert not any("secret" in volume
                       for volume in deployment["spec"]["template"]["spec"]["volumes"])
    config = _service_config(documents)
    assert not (config.tokens.enabled or config.tls.enabled
                or config.retrieval_server_token.enabled or config.model_server_tls.configured)
    assert config.retrieval_server.startswith("http://scann-model-server:")
    assert not any(arg.startswith(("--tls", "--token"))
                   for arg in _container(documents, "scann-model-server")["command"])
    assert "scheme" not in _container(documents, "recs-service")["readinessProbe"]["httpGet"]


def test_secrets_are_mounted_where_the_service_and_the_scann_server_read_them(documents):
    from recs_cli.main import build_parser

    secured = [doc for docs in manifests(IMAGE, secrets=SECRETS).values() for doc in docs]
    config = _service_config(secured)
    assert _secret_file(secured, "recs-service", config.tls.cert_file) == ("recs-tls",
                                                                           "tls.crt")
    assert _secret_file(secured, "recs-service", config.tls.key_file) == ("recs-tls", "tls.key")
    assert _secret_file(secured, "recs-service", config.model_server_tls.ca_file) == (
        "recs-tls", "ca.crt")
    assert _secret_file(secured, "recs-service", config.tokens.file) == ("recs-tokens",
                                                                         "service")
    # The token the service sends is one the ScaNN server accepts: the same key.
    sent = _secret_file(secured, "recs-service", config.retrieval_server_token.file)
    args = build_parser().parse_args(_container(secured, "scann-model-server")["command"][1:])
    assert sent == _secret_file(secured, "scann-model-server", args.token_file) == (
        "recs-tokens", "model-server")
    assert _secret_file(secured, "scann-model-server", args.tls_cert) == ("recs-tls", "tls.crt")
    assert _secret_file(secured, "scann-model-server", args.tls_key) == ("recs-tls", "tls.key")
    # TLS to the ScaNN server; stock TF Serving, which has neither, is left as it was.
    assert config.retrieval_server.startswith("https://scann-model-server:")
    assert config.model_server.startswith("http://tf-serving:")
    assert not config.model_server_token.enabled
    assert _by_kind(secured, "Deployment")["tf-serving"] == _by_kind(documents,
                                                                     "Deployment")["tf-serving"]
    for name, probes in (("recs-service", ("readinessProbe", "livenessProbe")),
                         ("scann-model-server", ("readinessProbe",))):
        for probe in probes:
            assert _container(secured, name)[probe]["httpGet"]["scheme"] == "HTTPS"
    annotations = _by_kind(secured, "Deployment")["recs-service"]["spec"]["template"][
        "metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"
    assert list(yaml.safe_load_all(render(secured))) == secured


def test_deploy_refuses_what_it_cannot_mount_or_stock_tf_serving_cannot_do():
    with pytest.raises(ValueError, match="tls must be a Secret's name"):
        DeploySecrets(tls="Recs_TLS")
    with pytest.raises(ValueError, match="service.tokens must be empty: the files are mounted "
                                         "from `secrets`"):
        manifests(IMAGE, service=ServiceConfig(tokens=TokenSource(file="/etc/tokens")))
    with pytest.raises(ValueError, match="models.tls and models.tokens must be empty: stock "
                                         "TF Serving has no bearer tokens"):
        manifests(IMAGE, models=ModelServingConfig(tokens=TokenSource(env="RECS_TOKENS")))
