"""Keras 2 is chosen once, by importing recs: importing it after Keras 3 was chosen fails
loudly."""

import os
import subprocess
import sys


def test_importing_recs_after_keras_3_was_chosen_fails_loudly():
    # tf.keras resolves lazily: only touching it before recs commits the process to Keras 3.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = "import tensorflow as tf; tf.keras.layers.Dense; import recs"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode != 0
    assert "TensorFlow Recommenders needs Keras 2" in result.stderr
