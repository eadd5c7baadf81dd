"""The Kubeflow path: the pipeline image recipe, the compiled spec, and the submit step."""

import json
import pathlib
import re

import pytest
import tfx
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from recs.contract.layout import RunLayout
from tfx_pipeline import compile_for_kubeflow
from tfx_pipeline.submit import pipeline_package, submit
from tfx_pipeline.workdir import pipeline_config
from transforms.runners import BeamRunnerConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECIPE = ROOT / "deploy" / "pipeline" / "Dockerfile"
IMAGE = "registry.example/recs-pipeline:1"


def test_image_recipe_builds_on_the_installed_tfx_with_keras_2_and_every_package():
    text = RECIPE.read_text()
    assert re.search(r"^FROM gcr\.io/tfx-oss-public/tfx:(\S+)$", text, re.M).group(1) == (
        tfx.__version__)
    assert re.search(r"^ENV TF_USE_LEGACY_KERAS=1", text, re.M)
    packages = {name.split(".")[0] for name in _setup_packages()}
    copied = set(re.findall(r"^COPY (\S+) \1$", text, re.M))
    assert packages <= copied, f"not copied into the image: {packages - copied}"
    assert "-c requirements/lock.txt ." in text


def _setup_packages() -> list[str]:
    from setuptools import find_packages

    included = re.search(r"find_packages\(include=\[(.*?)\]\)",
                         (ROOT / "setup.py").read_text(), re.S).group(1)
    return find_packages(str(ROOT), include=re.findall(r'"([^"]+)"', included))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("kfp")
    dataflow = BeamRunnerConfig(runner="dataflow", project="p", region="europe-west4",
                                temp_location="gs://bucket/tmp", sdk_container_image=IMAGE)
    config = pipeline_config(RunLayout(root), beam_args=tuple(dataflow.args()))
    return pathlib.Path(compile_for_kubeflow(config, str(root / "pipeline.json"), IMAGE))


def test_compiled_spec_runs_every_component_in_the_image_with_the_runner_options(compiled):
    job = json.loads(compiled.read_text())
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"].values()
    containers = [e for e in executors if "resolver" not in e]  # Resolvers need no image.
    assert {executor["container"]["image"] for executor in containers} == {IMAGE}
    text = json.dumps(job)
    for option in ("--runner=DataflowRunner", "--project=p", "--temp_location=gs://bucket/tmp",
                   f"--sdk_container_image={IMAGE}"):
        assert option in text, option
    # Functions are named by import path and come from the image: no module wheels were
    # written under the pipeline root (which module_file components would need write access for).
    assert "transforms.preprocessing.preprocessing_fn" in text and "module_file" not in text
    assert not (compiled.parent / "pipeline" / "_wheels").exists()


def test_package_for_the_kfp_api_is_a_valid_pipeline_spec(compiled, tmp_path):
    package = pipeline_package(str(compiled), str(tmp_path))
    spec = json_format.ParseDict(json.loads(pathlib.Path(package.spec_path).read_text()),
                                 pipeline_spec_pb2.PipelineSpec())
    assert package.name == spec.pipeline_info.name == "recs"
    assert "Transform" in spec.root.dag.tasks
    assert package.pipeline_root == str(compiled.parent / "pipeline")


@pytest.mark.parametrize("text, message", [
    (json.dumps({"components": {}}), "not a compiled TFX pipeline"),
    ("# recs", "is not JSON"),
    (json.dumps({"pipelineSpec": {"root": 3}}), "not a KFP v2 PipelineSpec"),
])
def test_package_refuses_a_file_that_is_not_a_compiled_pipeline(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        pipeline_package(str(path), str(tmp_path))


def test_submit_to_an_unreachable_endpoint_is_a_clear_error(compiled, tmp_path):
    with pytest.raises(ConnectionError, match="no Kubeflow Pipelines API answered"):
        submit(str(compiled), host="http://127.0.0.1:9", work_dir=str(tmp_path))
