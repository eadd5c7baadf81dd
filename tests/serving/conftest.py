"""A toy servable for the model server's protocol tests: a real SavedModel written in a
second, no trained world needed; and a test CA with the certificates it signed, for TLS."""

import pathlib

import pytest

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tests.serving._tls import TOKENS, Pki, make_pki


def write_toy_model(base: pathlib.Path, name: str = "toy", version: int = 1) -> pathlib.Path:
    """`<base>/<name>/<version>/`: `serving_default` maps x [batch, 2] float32 and
    tag [batch] string to sum = x0 + x1 (float32) and echo = tag; `double` maps n [batch]
    int64 to 2 n."""
    import tensorflow as tf

    class Toy(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"),
                                      tf.TensorSpec([None], tf.string, name="tag")])
        def serve(self, x, tag):
            return {"sum": tf.reduce_sum(x, axis=1), "echo": tag}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
        def double(self, n):
            return {"doubled": 2 * n}

    toy = Toy()
    path = base / name / str(version)
    tf.saved_model.save(toy, str(path), signatures={"serving_default": toy.serve,
                                                     "double": toy.double})
    return path


@pytest.fixture(scope="session")
def toy_base(tmp_path_factory) -> pathlib.Path:
    """A TF Serving base directory holding `toy` version 1."""
    base = tmp_path_factory.mktemp("toy_models")
    write_toy_model(base)
    return base


@pytest.fixture(scope="module")
def toy_server(toy_base):
    """The model server over the toy model."""
    from serving.model_server import ModelRegistry, ModelServer

    registry = ModelRegistry(str(toy_base), ("toy",))
    registry.load()
    with ModelServer(registry) as server:
        yield server


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    """A test CA, a server certificate it signed for localhost and 127.0.0.1, a client
    certificate it signed, and an unrelated CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path) -> str:
    """A file of `TOKENS`, with a comment and a blank line as an operator writes it."""
    path = tmp_path / "tokens"
    path.write_text(f"# rotating: old first\n{TOKENS[0]}\n\n{TOKENS[1]}\n")
    return str(path)
