"""The service and the event consumer do not carry the ML stack: importing them in a fresh
interpreter loads neither TensorFlow Recommenders nor ScaNN (nor TensorFlow, Beam or TFX)."""

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "tensorflow_recommenders", "scann", "apache_beam", "tfx",
         "tensorflow_transform")


@pytest.mark.parametrize("module", ["serving.api.service", "serving.consumer",
                                    "serving.online.policy", "serving.app", "recs.contract",
                                    "recs"])
def test_importing_a_service_module_loads_no_ml_stack(module):
    probe = (f"import json, sys; import {module}; "
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_library_loads_its_stack_when_used():
    # The check above would pass for a module that imports nothing at all: the same probe
    # sees TensorFlow Recommenders once the training code is imported.
    probe = ("import json, sys; import recs.training; "
             "print(json.dumps('tensorflow_recommenders' in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=300, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) is True
