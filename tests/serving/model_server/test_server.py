"""The model server's TLS and bearer tokens over the toy servable: real handshakes with a
test CA on the REST and gRPC ports, a call without an accepted token refused (401,
UNAUTHENTICATED), REST model status left open for the readiness probe, and the clients that
pass both; the plain server of the other tests is unchanged."""

import numpy as np
import pytest

from serving.clients.base import ModelServerError
from serving.clients.grpc_client import GrpcClient
from serving.clients.rest import RestClient
from serving.model_server import ModelRegistry, ModelServer, serve_models
from serving.model_server.config import ModelServingConfig
from serving.security import BearerTokens, ClientTls, ServerTls, TokenSource
from tests.serving._tls import TOKENS

INPUTS = {"x": np.array([[1.0, 2.0]], np.float32), "tag": np.array([b"a"])}


@pytest.fixture(scope="module")
def secured(toy_base, pki):
    """The toy model served over TLS, requiring `TOKENS` on both ports."""
    registry = ModelRegistry(str(toy_base), ("toy",))
    registry.load()
    with ModelServer(registry, tls=ServerTls(pki.server_cert, pki.server_key),
                     tokens=BearerTokens(TOKENS)) as server:
        yield server


def _clients(server: ModelServer, tls: ClientTls, token: str):
    return [RestClient(server.rest_url, timeout=30, tls=tls, token=token),
            GrpcClient(server.grpc_target, timeout=30, tls=tls, token=token)]


def test_the_plain_server_is_unchanged(toy_server):
    assert toy_server.rest_url.startswith("http://")
    assert ":" in toy_server.grpc_target and "//" not in toy_server.grpc_target
    for client in (RestClient(toy_server.rest_url, timeout=30),
                   GrpcClient(toy_server.grpc_target, timeout=30)):
        assert client.predict("toy", INPUTS)["sum"].tolist() == [3.0]  # No token asked.


def test_clients_of_the_ca_with_a_token_are_served_on_both_ports(secured, pki):
    assert secured.rest_url.startswith("https://")
    assert secured.grpc_target.startswith("https://")
    for token in TOKENS:  # Either token of a rotation.
        for client in _clients(secured, ClientTls(ca_file=pki.ca), token):
            assert client.predict("toy", INPUTS)["sum"].tolist() == [3.0], type(client)


@pytest.mark.parametrize("token", ["", TOKENS[0] + "x"])
def test_a_call_without_an_accepted_token_is_refused_on_both_ports(secured, pki, token):
    rest, grpc_client = _clients(secured, ClientTls(ca_file=pki.ca), token)
    with pytest.raises(ModelServerError) as refused:
        rest.predict("toy", INPUTS)
    assert refused.value.status == 401 and "bearer token" in refused.value.message
    with pytest.raises(ModelServerError) as refused:
        rest.metadata("toy")
    assert refused.value.status == 401
    for call in (lambda: grpc_client.predict("toy", INPUTS),
                 lambda: grpc_client.available_versions("toy")):
        with pytest.raises(ModelServerError) as refused:
            call()
        assert refused.value.status == "UNAUTHENTICATED" and "bearer token" in \
            refused.value.message


def test_rest_model_status_stays_open_for_the_readiness_probe(secured, pki):
    assert RestClient(secured.rest_url, tls=ClientTls(ca_file=pki.ca)).available_versions(
        "toy") == [1]


def test_a_client_that_does_not_trust_the_ca_refuses_the_server(secured, pki):
    for client in _clients(secured, ClientTls(ca_file=pki.other_ca), TOKENS[0]):
        with pytest.raises(ModelServerError) as refused:
            client.predict("toy", INPUTS)
        assert refused.value.status == "UNAVAILABLE", type(client)


def test_with_a_client_ca_both_ports_require_a_client_certificate(toy_base, pki):
    registry = ModelRegistry(str(toy_base), ("toy",))
    registry.load()
    with ModelServer(registry, tls=ServerTls(pki.server_cert, pki.server_key,
                                             client_ca_file=pki.ca)) as server:
        for client in _clients(server, ClientTls(ca_file=pki.ca), ""):
            with pytest.raises(ModelServerError) as refused:
                client.predict("toy", INPUTS)
            assert refused.value.status == "UNAVAILABLE", type(client)
        known = ClientTls(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
        for client in _clients(server, known, ""):
            assert client.predict("toy", INPUTS)["sum"].tolist() == [3.0], type(client)


def test_serve_models_takes_tls_and_tokens_from_its_config(toy_base, pki, token_file):
    config = ModelServingConfig.local(str(toy_base), tls=ServerTls(pki.server_cert,
                                                                   pki.server_key),
                                      tokens=TokenSource(file=token_file))
    assert ModelServingConfig.from_json(config.to_json()) == config
    # A bad file is refused before any model loads: toy_base holds none of the served
    # models, which would be a FileNotFoundError.
    with pytest.raises(ValueError, match="ServerTls.cert_file and key_file must be a PEM"):
        serve_models(ModelServingConfig.local(
            str(toy_base), tls=ServerTls(pki.server_cert, pki.client_key)))
    with pytest.raises(ValueError, match="TokenSource.file must be a readable"):
        serve_models(ModelServingConfig.local(str(toy_base), tokens=TokenSource(
            file=token_file + ".missing")))
