"""Multi-worker training: two local workers with TF_CONFIG on loopback against one worker."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from recs import distribute

JOB = pathlib.Path(__file__).with_name("multi_worker_job.py")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _environment(tf_config: dict | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != distribute.TF_CONFIG}
    env["PYTHONPATH"] = os.pathsep.join([str(JOB.parents[2]), env.get("PYTHONPATH", "")])
    if tf_config is not None:
        env[distribute.TF_CONFIG] = json.dumps(tf_config)
    return env


def _wait(processes: list[subprocess.Popen], timeout: float = 600) -> None:
    for process in processes:
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        assert process.returncode == 0, out.decode()[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trains once on one worker and once on a two-worker cluster (ran side by side)."""
    single = tmp_path_factory.mktemp("single")
    workers = [tmp_path_factory.mktemp(f"worker{i}") for i in range(2)]
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    launch = [
        subprocess.Popen([sys.executable, str(JOB), str(single)], env=_environment(None),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    launch += [
        subprocess.Popen([sys.executable, str(JOB), str(out)],
                         env=_environment({"cluster": cluster,
                                           "task": {"type": "worker", "index": index}}),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for index, out in enumerate(workers)]
    _wait(launch)
    return single, workers


@pytest.mark.slow
def test_two_workers_train_the_same_ranker_as_one(runs):
    single, (chief, other) = runs
    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((chief / "metrics.json").read_text())
    assert (one["replicas"], two["replicas"]) == (1, 2)
    # Each step splits the global batch of 64 in two and sums both halves' gradients: the
    # same update as one worker on the whole batch, up to float summation order.
    expected = np.load(single / "ranker_weights.npz")
    got = np.load(chief / "ranker_weights.npz")
    assert len(expected.files) == len(got.files) > 0
    for name in expected.files:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4)
    assert two["ranker"]["auc"] == pytest.approx(one["ranker"]["auc"], abs=1e-3)
    assert one["ranker"]["auc"] > 0.9  # The label is a genre match: learnable.
    # Only the chief keeps the model and the outputs.
    assert (chief / "ranker_model" / "saved_model.pb").exists()
    assert not (other / "ranker_model").exists() and not (other / "metrics.json").exists()


@pytest.mark.slow
def test_two_workers_train_the_two_towers(runs):
    single, (chief, _) = runs
    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((chief / "metrics.json").read_text())
    # In-batch negatives come from each worker's half batch, so the runs differ; both learn.
    for run in (one, two):
        losses = run["retrieval_history"]["loss"]
        assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert two["retrieval"]["recall_at_5"] == pytest.approx(one["retrieval"]["recall_at_5"],
                                                             abs=0.15)


@pytest.mark.parametrize("tf_config, expected", [
    (None, 1),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, 1),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}}, 3),
])
def test_cluster_size_reads_tf_config(tf_config, expected):
    environ = {} if tf_config is None else {distribute.TF_CONFIG: json.dumps(tf_config)}
    assert distribute.cluster_size(environ) == expected


def test_malformed_tf_config_is_a_clear_error():
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON like"):
        distribute.cluster_size({distribute.TF_CONFIG: "worker=a:1"})
