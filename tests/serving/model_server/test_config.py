"""One typed config for the local model server and the deployment's TF Serving files."""

import re

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from recs.contract.models import SERVED_MODELS, BatchingParams
from serving.model_server.config import ModelServingConfig

MODELS = ("ranker", "retrieval", "retrieval_exact", "towers")


def test_the_config_round_trips_through_its_dict_with_nested_batching():
    config = ModelServingConfig(models=("ranker",), labels={"ranker": {"stable": 2}},
                                batching=BatchingParams(max_batch_size=8, num_batch_threads=1))
    again = ModelServingConfig.from_dict(config.to_dict())
    assert again == config and isinstance(again.batching, BatchingParams)
    assert "max_batch_size { value: 8 }" in again.batching_parameters()


def test_local_defaults_serve_everything_on_free_ports_without_polling_or_batching():
    local = ModelServingConfig.local("/tmp/serving", poll_seconds=2.0)
    assert (local.models, local.rest_port, local.grpc_port) == (SERVED_MODELS, 0, 0)
    assert (local.poll_seconds, local.enable_batching, local.host) == (2.0, False, "127.0.0.1")


def test_server_flags_follow_the_config():
    args = ModelServingConfig(enable_batching=False, poll_seconds=0).server_args("/config")
    assert "--enable_batching=false" in args
    assert "--file_system_poll_wait_seconds=0" in args  # TF Serving: read once at start-up.
    assert "--file_system_poll_wait_seconds=1" in ModelServingConfig(
        poll_seconds=0.5).server_args("/config")
    pools = ModelServingConfig(intra_op_threads=2, inter_op_threads=1).server_args("/config")
    assert "--tensorflow_intra_op_parallelism=2" in pools
    assert "--tensorflow_inter_op_parallelism=1" in pools
    assert "--tensorflow_intra_op_parallelism=0" in args  # 0: TensorFlow's own default.


@pytest.mark.parametrize("overrides, message", [
    ({"rest_port": 8500}, "grpc_port must be different from rest_port"),
    ({"rest_port": 70000}, "rest_port must be a TCP port"),
    ({"poll_seconds": -1}, "poll_seconds must be >= 0"),
    ({"batching": {"max_batch_size": 8}}, "batching must be a BatchingParams"),
])
def test_bad_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelServingConfig(**overrides)


def test_models_config_names_every_model(tmp_path):
    path = ModelServingConfig(base_dir="/models", models=MODELS).write_files(
        str(tmp_path))["models.config"]
    text = (tmp_path / "models.config").read_text()
    assert path.endswith("models.config")
    for name in MODELS:
        assert f'name: "{name}"' in text and f'base_path: "/models/{name}"' in text


def test_models_config_is_a_valid_model_server_config_with_policy_and_labels():
    config = ModelServingConfig(base_dir="/models", models=("ranker", "towers"), num_versions=2,
                                labels={"ranker": {"stable": 3, "canary": 4}})
    parsed = text_format.Parse(config.models_config(),
                               model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in parsed.model_config_list.config}
    assert sorted(entries) == ["ranker", "towers"]
    assert entries["ranker"].base_path == "/models/ranker"
    assert entries["ranker"].model_version_policy.latest.num_versions == 2
    assert dict(entries["ranker"].version_labels) == {"stable": 3, "canary": 4}
    assert not entries["towers"].version_labels
    batching = config.batching_parameters()
    assert re.search(r"max_batch_size \{ value: 64 \}", batching)
    assert "num_batch_threads { value: 2 }" in batching
    assert 'path: "/monitoring/prometheus/metrics"' in config.monitoring_config()


@pytest.mark.parametrize("overrides, message", [
    ({"models": ("ranker", "ranking")}, "models must be a subset of"),
    ({"labels": {"towers": {"stable": 1}}, "models": ("ranker",)}, "labels must be keyed"),
    ({"grpc_port": 8501}, "grpc_port must be different from rest_port"),
    ({"num_versions": 0}, "num_versions must be >= 1"),
    ({"intra_op_threads": -1}, "intra_op_threads must be an int >= 0"),
    ({"inter_op_threads": 1.5}, "inter_op_threads must be an int >= 0"),
])
def test_bad_model_serving_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelServingConfig(**overrides)


def test_tls_and_tokens_never_reach_stock_tf_serving_s_flags_or_files(tmp_path):
    from serving.security import ServerTls, TokenSource

    plain = ModelServingConfig()
    secured = ModelServingConfig(tls=ServerTls("tls.crt", "tls.key"),
                                 tokens=TokenSource(env="RECS_MODEL_TOKENS"))
    assert secured.server_args("/config") == plain.server_args("/config")
    assert secured.models_config() == plain.models_config()
    assert ModelServingConfig.from_dict(secured.to_dict()) == secured
    with pytest.raises(ValueError, match="tokens must be a TokenSource"):
        ModelServingConfig(tokens="a-token-in-a-config")
