"""Server-side batching: concurrent requests share one call and each gets its own rows back;
the limits behave as TF Serving's do (the model server batching the tiny world's models:
tests/integration/serving/test_batching.py)."""

import threading
import time
from concurrent import futures

import numpy as np
import pytest

from recs.contract.models import BatchingParams
from serving.model_server.batching import Batcher, Overloaded, ShapeMismatch

# Timing-sensitive: `make test` runs this file after the others, alone on the cores.
pytestmark = pytest.mark.serial


class _Doubler:
    """A signature that doubles its input; records the rows of every call."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s

    def __call__(self, arrays):
        self.calls.append(len(arrays["x"]))
        time.sleep(self.delay_s)
        return {"y": arrays["x"] * 2, "tag": arrays["tag"]}


def _request(rows: int, start: int) -> dict:
    return {"x": np.arange(start, start + rows, dtype=np.float32),
            "tag": np.array([f"r{start}"] * rows, dtype=object)}


def test_concurrent_requests_run_as_one_batch_and_get_their_own_rows():
    call = _Doubler()
    batcher = Batcher(call, BatchingParams(max_batch_size=64, batch_timeout_micros=200_000,
                                           num_batch_threads=1))
    with futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: batcher.run(_request(3, 10 * i)), range(8)))
    batcher.close()
    assert sum(call.calls) == 24 and len(call.calls) < 8  # Shared calls.
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], 2 * np.arange(10 * i, 10 * i + 3))
        assert result["tag"].tolist() == [f"r{10 * i}"] * 3


def test_a_full_batch_runs_at_once_and_a_lone_request_waits_the_timeout():
    call = _Doubler()
    batcher = Batcher(call, BatchingParams(max_batch_size=4, batch_timeout_micros=300_000,
                                           num_batch_threads=1))
    started = time.monotonic()
    batcher.run(_request(4, 0))  # Full on arrival: no wait for the timeout.
    assert time.monotonic() - started < 0.25
    started = time.monotonic()
    batcher.run(_request(1, 0))
    assert time.monotonic() - started >= 0.3
    batcher.close()
    assert call.calls == [4, 1]


def test_a_request_larger_than_a_batch_runs_alone():
    call = _Doubler()
    batcher = Batcher(call, BatchingParams(max_batch_size=4, batch_timeout_micros=0))
    np.testing.assert_array_equal(batcher.run(_request(10, 0))["y"], 2 * np.arange(10))
    batcher.close()
    assert call.calls == [10]


def test_inputs_that_do_not_share_the_0th_dimension_are_refused():
    batcher = Batcher(_Doubler(), BatchingParams())
    with pytest.raises(ShapeMismatch, match="share its 0th dimension"):
        batcher.run({"x": np.zeros(3, np.float32), "tag": np.array(["a"], dtype=object)})
    batcher.close()


def test_outputs_that_are_not_row_aligned_fail_every_request_of_the_batch():
    batcher = Batcher(lambda arrays: {"y": np.zeros(1)}, BatchingParams(batch_timeout_micros=0))
    with pytest.raises(ShapeMismatch, match="cannot be batched"):
        batcher.run(_request(2, 0))
    batcher.close()


def test_a_full_queue_refuses_rather_than_waits():
    release = threading.Event()

    def slow(arrays):
        release.wait(10)
        return {"y": arrays["x"], "tag": arrays["tag"]}

    batcher = Batcher(slow, BatchingParams(max_batch_size=1, batch_timeout_micros=0,
                                           max_enqueued_batches=1, num_batch_threads=1))
    with futures.ThreadPoolExecutor(4) as pool:
        running = pool.submit(batcher.run, _request(1, 0))  # Taken by the one thread.
        time.sleep(0.2)
        queued = pool.submit(batcher.run, _request(1, 1))  # Waits in the queue.
        time.sleep(0.2)
        with pytest.raises(Overloaded, match="max_enqueued_batches 1"):
            batcher.run(_request(1, 2))
        release.set()
        assert running.result(5)["y"].tolist() == [0.0]
        assert queued.result(5)["y"].tolist() == [1.0]
    batcher.close()


def test_an_error_of_the_batch_reaches_each_of_its_requests():
    def broken(arrays):
        raise RuntimeError("the graph refused the batch")

    batcher = Batcher(broken, BatchingParams(batch_timeout_micros=100_000))
    with futures.ThreadPoolExecutor(3) as pool:
        outcomes = [pool.submit(batcher.run, _request(1, i)) for i in range(3)]
        for outcome in outcomes:
            with pytest.raises(RuntimeError, match="refused the batch"):
                outcome.result(5)
    batcher.close()


def test_params_round_trip_through_tf_servings_text_format_and_are_validated():
    params = BatchingParams(max_batch_size=32, batch_timeout_micros=500,
                            max_enqueued_batches=7, num_batch_threads=3)
    assert BatchingParams.parse(params.text()) == params
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        BatchingParams(max_batch_size=0)
