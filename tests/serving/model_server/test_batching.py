"""Server-side batching: concurrent requests share one call and each gets its own rows back;
the limits behave as TF Serving's do; a model without batching parameters is never batched."""

import threading
import time
from concurrent import futures

import numpy as np
import pytest

from recs.contract.models import BatchingParams
from serving.model_server.batching import Batcher, Overloaded, ShapeMismatch


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


@pytest.mark.slow
def test_the_model_server_batches_row_aligned_models_only_and_answers_alike(tiny_world):
    from serving.clients import RestClient
    from serving.model_server import ModelRegistry, ModelServer

    records = tiny_world.records[:6]
    query = {key: [record[key] for record in records]
             for key in ("user_id", "age", "country", "subscription_tier", "preferred_genres",
                         "history", "device_type", "hour")}
    one = {key: values[:1] for key, values in query.items()}
    answers = {}
    for batching in (False, True):
        registry = ModelRegistry(str(tiny_world.serving_dir),
                                 ("towers", "recommender_exact"), batching=batching)
        registry.load()
        with ModelServer(registry) as server:
            client = RestClient(server.rest_url)
            with futures.ThreadPoolExecutor(6) as pool:
                rows = list(pool.map(lambda i: client.predict(
                    "towers", {key: values[i:i + 1] for key, values in query.items()},
                    signature="query_embedding")["embedding"], range(6)))
            served = client.predict("recommender_exact",
                                    {**one, "excluded_title_ids": [""]}, signature="recommend")
            batched = {name: registry.get(name).batching is not None
                       for name in ("towers", "recommender_exact")}
        answers[batching] = (np.concatenate(rows), served, batched)
    np.testing.assert_allclose(answers[True][0], answers[False][0], atol=1e-6)
    assert answers[True][1]["title_ids"].tolist() == answers[False][1]["title_ids"].tolist()
    assert answers[True][2] == {"towers": True, "recommender_exact": False}
    assert answers[False][2] == {"towers": False, "recommender_exact": False}
