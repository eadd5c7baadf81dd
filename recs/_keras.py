"""Selects Keras 2 (tf-keras) for the whole process.

TensorFlow Recommenders 0.7.3 is written against Keras 2. TensorFlow 2.16 ships Keras 3 as
`tf.keras` unless `TF_USE_LEGACY_KERAS=1` is set *before TensorFlow is first imported*; with
Keras 3, TFRS layers such as `BruteForce.index()` fail with "Cannot convert 1 to EagerTensor of
dtype string". This module is the one place the project sets it; `recs/__init__.py` calls
`use_keras_2()`, so any `import recs.<module>` selects Keras 2 before TensorFlow can resolve
`tf.keras`. It imports nothing: a process that never touches Keras (the service, the
consumer) only carries the environment variable.
"""

import os
import sys

_VARIABLE = "TF_USE_LEGACY_KERAS"


def use_keras_2() -> None:
    """Sets `TF_USE_LEGACY_KERAS=1`, or fails if TensorFlow already chose Keras 3.

    Raises:
        ImportError: `tf.keras` was already used, and so resolved to Keras 3, before `recs`
            was imported (importing TensorFlow alone is fine: `tf.keras` resolves lazily).
    """
    already_imported = "tensorflow" in sys.modules
    os.environ[_VARIABLE] = "1"
    if already_imported:
        keras_version = getattr(sys.modules["tensorflow"].keras, "__version__", "2")
        if not keras_version.startswith("2"):
            raise ImportError(
                f"TensorFlow was imported before recs with Keras {keras_version}; TensorFlow "
                f"Recommenders needs Keras 2. Import recs first, or export {_VARIABLE}=1 before "
                "starting Python.")
