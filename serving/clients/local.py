"""A client of a model registry in this process: the same signatures, checks and batching as
the model server's REST and gRPC front ends, without either protocol."""

import numpy as np

from serving.clients.base import ClientBase, ModelServerError, check_version_choice
from serving.model_server.errors import ServingError
from serving.model_server.registry import ModelRegistry
from serving.model_server.signatures import predict
from serving.types import Inputs


class LocalClient(ClientBase):
    """A `serving.types.PredictClient` over a registry in this process: the same signatures,
    checks and batching as the servers, without HTTP or gRPC (benchmarks' in-process peer,
    tests).

    Args:
        registry: the loaded models.
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def predict_versioned(self, model: str, inputs: Inputs, signature: str = "",
                          version: int | None = None, timeout: float | None = None,
                          label: str = "") -> tuple[dict[str, np.ndarray], int | None]:
        """Outputs and the version that computed them (by number, label, or the newest).

        Raises:
            serving.clients.ModelServerError: the registry refused the request.
        """
        check_version_choice(version, label)
        try:
            loaded = self.registry.get(model, version, label)
            arrays = {key: np.asarray(value, dtype=object)
                      if np.asarray(value).dtype.kind in "SUO" else np.asarray(value)
                      for key, value in inputs.items()}
            return predict(loaded, signature, arrays), loaded.version
        except ServingError as error:
            raise ModelServerError(error.code.name, error.message) from error

    def available_versions(self, model: str, timeout: float | None = None, label: str = ""
                           ) -> list[int]:
        """Loaded versions of `model`; with `label`, the one it points to ([] if none)."""
        try:
            if label:
                return [status.version for status in self.registry.status(model, label=label)
                        if status.state == "AVAILABLE"]
            return self.registry.versions(model)
        except ServingError:
            return []
