"""`recs serve-models --label`: TF Serving's version labels, and a label it cannot parse
refused before any model loads."""

import pytest

from recs_cli.commands.serve_models import parse_labels
from recs_cli.main import main


@pytest.mark.parametrize("label", ["ranker", "ranker:canary", "ranker:canary=two",
                                   ":canary=2", "ranker:=2", "ranker:canary=0"])
def test_a_malformed_label_is_refused_with_the_expected_form(label, tmp_path, capsys):
    assert main(["serve-models", "--base", str(tmp_path), "--label", label]) == 2
    error = capsys.readouterr().err
    assert "MODEL:LABEL=VERSION" in error and repr(label) in error


def test_labels_are_grouped_by_model():
    assert parse_labels(["ranker:canary=2", "ranker:stable=1", "retrieval:stable=3"]) == {
        "ranker": {"canary": 2, "stable": 1}, "retrieval": {"stable": 3}}
    assert parse_labels([]) == {}


@pytest.mark.parametrize("args, message", [
    (["--label", "rankr:canary=2"], "labels must be keyed by served models"),
    (["--rest-port", "8500"], "grpc_port must be different from rest_port"),
    (["--poll-seconds", "-1"], "poll_seconds must be >= 0"),
    (["--tls-cert", "tls.crt"], "ServerTls.key_file must be set exactly when cert_file is"),
    (["--tls-cert", "missing.crt", "--tls-key", "missing.key"],
     "ServerTls.cert_file and key_file must be a PEM certificate and its private key"),
    (["--token-env", "RECS_TEST_UNSET_TOKENS"], "TokenSource.env must name a variable that "
                                                "is set"),
])
def test_a_config_the_server_cannot_run_is_refused_before_any_model_loads(args, message,
                                                                          tmp_path, capsys):
    assert main(["serve-models", "--base", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
