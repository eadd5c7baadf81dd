"""Type aliases shared across the library."""

from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:  # Annotations only: the contract's users need not load TensorFlow.
    import tensorflow as tf

TensorDict = Mapping[str, "tf.Tensor"]
"""Feature name -> tensor, as produced by tf.Transform or parsed from tf.Examples."""

ArrayDict = Mapping[str, np.ndarray]
"""Feature name -> NumPy column, one row per example."""

JsonDict = dict[str, object]
"""A decoded JSON object (one log line, one request body)."""
