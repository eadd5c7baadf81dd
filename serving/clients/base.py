"""What every model-server client shares: the error it raises, the version-or-label rule of a
call, and `predict` written once over each protocol's `predict_versioned`."""

import abc

import numpy as np

from serving.types import Inputs


class ModelServerError(RuntimeError):
    """The model server refused or failed a request; `status` is HTTP or a gRPC code name."""

    def __init__(self, status: int | str, message: str) -> None:
        super().__init__(f"model server answered {status}: {message}")
        self.status = status
        self.message = message


def check_version_choice(version: int | None, label: str) -> None:
    """A call names a version by number or by label, not both (TF Serving's ModelSpec holds
    one of them).

    Raises:
        ValueError: both are given.
    """
    if label and version is not None:
        raise ValueError(f"version and label name the same thing: give one; received "
                         f"version={version!r}, label={label!r}.")


class ClientBase(abc.ABC):
    """A `serving.types.PredictClient`: subclasses speak a protocol in `predict_versioned`
    and `available_versions`."""

    def predict(self, model: str, inputs: Inputs, signature: str = "",
                version: int | None = None, timeout: float | None = None, label: str = ""
                ) -> dict[str, np.ndarray]:
        """The outputs of `signature` (the default one when "") of `model`.

        Raises:
            ModelServerError: the server refused or failed the call.
            ValueError: both `version` and `label` are given.
        """
        return self.predict_versioned(model, inputs, signature, version, timeout, label)[0]

    @abc.abstractmethod
    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None,
                          label: str = "") -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs and the version that computed them (None when the protocol omits it)."""

    @abc.abstractmethod
    def available_versions(self, model: str, timeout: float | None = None, label: str = ""
                           ) -> list[int]:
        """AVAILABLE versions of `model`, ascending; with `label`, the one it points to."""
