"""What every client shares: one `predict`, and the version-or-label rule."""

import numpy as np
import pytest

from serving.clients.base import ClientBase, ModelServerError, check_version_choice


class _Recording(ClientBase):
    def __init__(self) -> None:
        self.calls = []

    def predict_versioned(self, model, inputs, signature="", version=None, timeout=None,
                          label=""):
        self.calls.append((model, signature, version, timeout, label))
        return {"y": np.array([1.0])}, 7

    def available_versions(self, model, timeout=None, label=""):
        return [7]


def test_predict_is_predict_versioned_without_the_version():
    client = _Recording()
    assert client.predict("m", {"x": [1]}, "sig", None, 2.0, "canary") == {"y": [1.0]}
    assert client.calls == [("m", "sig", None, 2.0, "canary")]


def test_a_client_must_speak_a_protocol():
    with pytest.raises(TypeError, match="abstract"):
        ClientBase()


def test_a_call_names_a_version_or_a_label_not_both():
    check_version_choice(3, "")
    check_version_choice(None, "canary")
    with pytest.raises(ValueError, match="give one; received version=3, label='canary'"):
        check_version_choice(3, "canary")


def test_the_error_carries_the_status():
    error = ModelServerError("NOT_FOUND", "no such model")
    assert (error.status, error.message) == ("NOT_FOUND", "no such model")
    assert str(error) == "model server answered NOT_FOUND: no such model"
