"""Tokens and TLS settings: where tokens are read from, how they are checked, and the
certificate settings each refused with the field to fix (no server runs here)."""

import ssl

import pytest

from serving.security import BearerTokens, ClientTls, ServerTls, TokenSource
from tests.serving._tls import TOKENS


def test_everything_is_off_by_default():
    assert not TokenSource().enabled and TokenSource().read() == ()
    assert not ServerTls().enabled and not ClientTls().configured


def test_a_token_file_skips_comments_and_blank_lines_and_keeps_the_order(token_file):
    assert TokenSource(file=token_file).read() == TOKENS


def test_an_environment_variable_holds_tokens_separated_by_commas(monkeypatch):
    monkeypatch.setenv("RECS_TEST_TOKENS", f" {TOKENS[1]}, {TOKENS[0]} ,")
    assert TokenSource(env="RECS_TEST_TOKENS").read() == (TOKENS[1], TOKENS[0])


@pytest.mark.parametrize("fields, message", [
    ({"file": "/etc/tokens", "env": "TOKENS"}, "TokenSource.file must be empty when "
                                               "TokenSource.env is set"),
    ({"env": "RECS-TOKENS"}, "TokenSource.env must be an environment variable's name"),
])
def test_a_source_that_names_no_single_place_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TokenSource(**fields)


def test_a_source_that_cannot_be_read_names_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("RECS_TEST_UNSET", raising=False)
    with pytest.raises(ValueError, match=r"TokenSource.env must name a variable that is set; "
                                         r"received 'RECS_TEST_UNSET'"):
        TokenSource(env="RECS_TEST_UNSET").read()
    with pytest.raises(ValueError, match="TokenSource.file must be a readable ASCII file"):
        TokenSource(file=str(tmp_path / "missing")).read()
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="must hold at least one token; received none"):
        TokenSource(file=str(empty)).read()


@pytest.mark.parametrize("token", ["short-token", "has space inside 0123456789",
                                   "comma,separated,0123456789"])
def test_a_weak_or_malformed_token_is_refused_without_showing_it(tmp_path, token):
    path = tmp_path / "tokens"
    path.write_text(f"{TOKENS[0]}\n{token}\n")
    with pytest.raises(ValueError) as raised:
        TokenSource(file=str(path)).read()
    message = str(raised.value)
    assert "line 2 must be a token of at least 16 characters" in message
    assert f"received one of {len(token)} characters" in message
    assert token not in message and TOKENS[0] not in message  # A secret is never logged.


def test_every_accepted_token_lets_in_and_nothing_else_does():
    tokens = BearerTokens(TOKENS)
    assert tokens.refusal(f"Bearer {TOKENS[0]}") is None
    assert tokens.refusal(f"bearer  {TOKENS[1]}".encode()) is None  # Scheme, any case.
    assert tokens.refusal(None) == ("this endpoint needs a bearer token: send "
                                    "Authorization: Bearer <token>")
    assert tokens.refusal(f"Basic {TOKENS[0]}") == ("the Authorization header must use the "
                                                    "Bearer scheme")
    for wrong in (TOKENS[0][:-1], TOKENS[0] + "x", TOKENS[0].upper(), "", "t\u00f6ken\u2603",
                  "\ud800"):
        assert tokens.refusal(f"Bearer {wrong}") == "the bearer token is not accepted"
    with pytest.raises(ValueError, match="tokens must be at least one token"):
        BearerTokens(())


@pytest.mark.parametrize("fields, message", [
    ({"cert_file": "tls.crt"}, "ServerTls.key_file must be set exactly when cert_file is"),
    ({"key_file": "tls.key"}, "ServerTls.key_file must be set exactly when cert_file is"),
    ({"client_ca_file": "ca.crt"}, "ServerTls.client_ca_file must be empty unless cert_file"),
])
def test_server_tls_settings_that_cannot_work_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ServerTls(**fields)


def test_client_tls_needs_a_key_with_its_certificate():
    with pytest.raises(ValueError, match="ClientTls.key_file must be set exactly when "
                                         "cert_file is"):
        ClientTls(cert_file="client.crt")


def test_a_server_certificate_is_checked_against_its_key(pki, tmp_path):
    context = ServerTls(pki.server_cert, pki.server_key, pki.ca).context()
    assert context.verify_mode == ssl.CERT_REQUIRED  # A client CA: mutual TLS.
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="ServerTls.cert_file and key_file must be a PEM "
                                         "certificate and its private key"):
        ServerTls(pki.server_cert, pki.client_key).context()  # Another certificate's key.
    with pytest.raises(ValueError, match="must be a PEM certificate"):
        ServerTls(str(tmp_path / "missing.crt"), pki.server_key).context()
    with pytest.raises(ValueError, match="ServerTls.client_ca_file must be a readable PEM"):
        ServerTls(pki.server_cert, pki.server_key, str(tmp_path / "missing-ca.crt")).pems()


def test_client_tls_files_are_read_for_both_protocols(pki, tmp_path):
    tls = ClientTls(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    assert tls.context().verify_mode == ssl.CERT_REQUIRED and tls.context().check_hostname
    root, key, chain = tls.pems()
    assert root.startswith(b"-----BEGIN CERTIFICATE") and b"PRIVATE KEY" in key
    with pytest.raises(ValueError, match="ClientTls.ca_file must be a readable PEM file"):
        ClientTls(ca_file=str(tmp_path / "missing.crt")).pems()
