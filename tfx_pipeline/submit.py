"""Submitting the compiled pipeline to a Kubeflow Pipelines v2 endpoint.

`compile_for_kubeflow` writes what TFX's `KubeflowV2DagRunner` writes: a PipelineJob JSON whose
`pipelineSpec` is the KFP v2 pipeline and whose `runtimeConfig.gcsOutputDirectory` is the pipeline
root. Vertex AI Pipelines takes that file as it is; the open-source KFP API takes the pipeline
spec alone and the root as a run setting, which `pipeline_package` and `submit` take care of.
"""

import dataclasses
import json
import os

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2


@dataclasses.dataclass(frozen=True)
class PipelinePackage:
    """A compiled pipeline in the form the KFP API accepts."""

    spec_path: str
    pipeline_root: str
    name: str


def pipeline_package(compiled_path: str, out_dir: str) -> PipelinePackage:
    """Extracts the KFP v2 pipeline spec from a TFX-compiled PipelineJob JSON.

    Args:
        compiled_path: the file `compile_for_kubeflow` wrote.
        out_dir: where `pipeline_spec.json` is written.

    Raises:
        ValueError: the file is not a PipelineJob with a valid KFP v2 `pipelineSpec`.
    """
    with open(compiled_path) as handle:
        try:
            job = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{compiled_path} is not JSON ({error}); pass the file "
                             "`recs pipeline --kubeflow-out FILE` wrote.") from error
    if not isinstance(job, dict) or "pipelineSpec" not in job:
        raise ValueError(f"{compiled_path} is not a compiled TFX pipeline (no 'pipelineSpec'); "
                         "write one with `recs pipeline --kubeflow-out FILE`.")
    spec = pipeline_spec_pb2.PipelineSpec()
    try:
        json_format.ParseDict(job["pipelineSpec"], spec)
    except json_format.ParseError as error:
        raise ValueError(f"{compiled_path}: pipelineSpec is not a KFP v2 PipelineSpec: {error}"
                         ) from error
    os.makedirs(out_dir, exist_ok=True)
    spec_path = os.path.join(out_dir, "pipeline_spec.json")
    with open(spec_path, "w") as handle:
        json.dump(job["pipelineSpec"], handle, indent=2)
    return PipelinePackage(
        spec_path=spec_path,
        pipeline_root=job.get("runtimeConfig", {}).get("gcsOutputDirectory", ""),
        name=spec.pipeline_info.name)


def submit(compiled_path: str, host: str, experiment: str = "recs", run_name: str = "",
           namespace: str = "kubeflow", work_dir: str = ".") -> str:
    """Starts a run of the compiled pipeline on a Kubeflow Pipelines endpoint.

    Args:
        compiled_path: the file `compile_for_kubeflow` wrote.
        host: the KFP API, e.g. "https://kubeflow.example/pipeline".
        experiment: KFP experiment the run belongs to (created if missing).
        run_name: the run's name; the pipeline's name when empty.
        namespace: the Kubeflow profile namespace (multi-user installations).
        work_dir: where the extracted spec is written.

    Returns:
        The run id.

    Raises:
        ValueError: `compiled_path` is not a compiled pipeline.
        ConnectionError: no KFP API answers at `host`.
    """
    import kfp
    import urllib3

    package = pipeline_package(compiled_path, work_dir)
    try:
        client = kfp.Client(host=host, namespace=namespace)
        run = client.create_run_from_pipeline_package(
            package.spec_path, arguments={}, run_name=run_name or package.name,
            experiment_name=experiment, namespace=namespace,
            pipeline_root=package.pipeline_root or None)
    except (OSError, urllib3.exceptions.HTTPError) as error:
        raise ConnectionError(f"no Kubeflow Pipelines API answered at {host!r} ({error}); "
                              "check the address and that you can reach it (kubectl "
                              "port-forward svc/ml-pipeline-ui 8080:80 -n kubeflow).") from error
    return run.run_id
