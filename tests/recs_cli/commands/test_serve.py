"""The ServiceConfig of `recs serve` and `recs recommend`: a file, or a workdir's models and
profiles with an embedded or a named model server."""

from recs.contract.layout import RunLayout
from recs_cli.commands.serve import service_config
from serving.config import ServiceConfig


def test_a_config_file_is_taken_whole_and_embeds_no_model_server(tmp_path):
    written = ServiceConfig(model_server="model-server:8500", protocol="grpc",
                            store="redis://profiles:6379/0")
    path = tmp_path / "service.json"
    path.write_text(written.to_json())
    assert service_config(path, tmp_path / "ignored", "", "rest", "") == (written, False)


def test_without_a_file_the_workdir_is_served(tmp_path):
    workdir = RunLayout(tmp_path)
    config, embedded = service_config(None, tmp_path, "", "rest", "served.jsonl")
    assert embedded  # No model server named: one starts in-process.
    assert (config.serving_dir, config.store) == (str(workdir.serving), str(workdir.store))
    assert config.served_log == "served.jsonl"
    config, embedded = service_config(None, tmp_path, "127.0.0.1:8500", "grpc", "")
    assert not embedded
    assert (config.model_server, config.protocol) == ("127.0.0.1:8500", "grpc")
