"""One servable version (a loaded SavedModel) and its entry in the model status."""

import dataclasses
import threading
from typing import Any, Callable

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from recs.contract.signatures import SERVING_DEFAULT
from serving.model_server.batching import Batcher, BatchingParams
from serving.model_server.errors import invalid_argument


@dataclasses.dataclass
class LoadedModel:
    """One servable version: the loaded SavedModel and its signature definitions."""

    name: str
    version: int
    path: str
    saved_model: Any
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    batching: BatchingParams | None = None
    """Batch concurrent requests to each signature (`serving.model_server.batching`); None:
    never."""
    _batchers: dict[str, Batcher] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def batcher(self, signature_name: str, call: Callable[[dict], dict]) -> Batcher | None:
        """The signature's batcher (made on first use), or None when the model is not
        batched."""
        if self.batching is None:
            return None
        with self._lock:
            if signature_name not in self._batchers:
                self._batchers[signature_name] = Batcher(call, self.batching)
            return self._batchers[signature_name]

    def close(self) -> None:
        """Stops the batch threads (after an unload: running requests finish first)."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()

    def signature(self, name: str) -> Any:
        signature_name = name or SERVING_DEFAULT
        if signature_name not in self.saved_model.signatures:
            raise invalid_argument(f"Serving signature name: \"{signature_name}\" not found in "
                                   f"signature def; available: "
                                   f"{sorted(self.saved_model.signatures)}")
        return self.saved_model.signatures[signature_name]

    def input_specs(self, signature_name: str) -> dict[str, tf.TensorSpec]:
        """{input name: dtype and shape} of a signature.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown signature.
        """
        return dict(self.signature(signature_name).structured_input_signature[1])


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One version's entry in GetModelStatus: AVAILABLE, or END with the load error."""

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""
