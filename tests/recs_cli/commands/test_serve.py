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


def test_security_flags_left_alone_change_nothing_and_set_their_fields_when_given(tmp_path):
    from recs_cli.commands.serve import security_settings
    from serving.security import ServerTls, TokenSource

    assert security_settings() == {}
    assert service_config(None, tmp_path, "", "rest", "", security_settings())[0] == \
        service_config(None, tmp_path, "", "rest", "")[0]
    settings = security_settings(token_env="RECS_TOKENS", tls_cert="tls.crt",
                                 tls_key="tls.key", metrics="token", docs="closed")
    config, _ = service_config(None, tmp_path, "", "rest", "", settings)
    assert config.tokens == TokenSource(env="RECS_TOKENS")
    assert config.tls == ServerTls("tls.crt", "tls.key")
    assert (config.metrics_access, config.docs_access) == ("token", "closed")


def test_security_flags_are_refused_beside_a_config_file_rather_than_dropped(tmp_path,
                                                                            capsys):
    from recs_cli.main import main

    path = tmp_path / "service.json"
    path.write_text(ServiceConfig().to_json())
    assert main(["serve", "--config", str(path), "--token-file", "tokens"]) == 2
    assert "the authentication and TLS flags must not be given with --config; set " \
           "['docs_access', 'metrics_access', 'model_server_tls', 'model_server_token', " \
           "'tls', 'tokens']" in capsys.readouterr().err


def test_a_certificate_without_its_key_is_refused_before_anything_starts(tmp_path, capsys):
    from recs_cli.main import main

    assert main(["serve", "--workdir", str(tmp_path), "--tls-cert", "tls.crt"]) == 2
    assert "ServerTls.key_file must be set exactly when cert_file is" in capsys.readouterr().err
