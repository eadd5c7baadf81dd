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


def _serving_imports() -> dict[str, set[str]]:
    """{module: serving modules it imports, at any depth of its code}, read from the source."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    modules = {}
    for path in (root / "serving").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {module for module in found if module in modules and module != name}
    return graph


def test_serving_has_no_import_cycle():
    graph = _serving_imports()

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                if nxt == target:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    assert len(graph) > 30  # Every module was read.
    cycles = sorted(module for module in graph if reaches(module, module))
    assert cycles == []


@pytest.mark.parametrize("package, never", [
    # The model server knows nothing of its clients or of the recommendation service.
    ("serving.model_server", ("serving.clients", "serving.online", "serving.api",
                              "serving.app", "serving.config", "serving.consumer")),
    # Clients know only the protocol (the local one, the registry it wraps).
    ("serving.clients", ("serving.online", "serving.api", "serving.app", "serving.config")),
    ("serving.online", ("serving.api", "serving.app", "serving.model_server")),
    ("serving.api", ("serving.app", "serving.model_server", "serving.clients")),
    ("serving.types", ("serving.",)),
])
def test_serving_parts_import_only_downwards(package, never):
    graph = _serving_imports()
    wrong = {module: sorted(m for m in imported if m.startswith(never))
             for module, imported in graph.items()
             if module == package or module.startswith(package + ".")}
    assert {module: found for module, found in wrong.items() if found} == {}
    assert wrong  # The package exists and was read.


def test_only_app_wires_the_parts_together():
    graph = _serving_imports()
    assert [module for module, imported in graph.items() if "serving.app" in imported] == []
