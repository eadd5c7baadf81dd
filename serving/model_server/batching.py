"""Server-side batching of concurrent requests, with TF Serving's semantics.

Requests to the same signature of the same model version that arrive close together run as
one call: their inputs are concatenated along the 0th dimension, the signature runs once, and
each request gets its rows of every output back.

    request -> Batcher.run -> the open batch (closed at `max_batch_size` rows, or
               `batch_timeout_micros` after its first request) -> a batch thread runs it
            <- this request's rows

As in TF Serving, every input of a request must share its 0th dimension (row-aligned
signatures only), a batch that would exceed `max_enqueued_batches` is refused with
UNAVAILABLE, `num_batch_threads` batches run at once, and a request larger than
`max_batch_size` runs alone. A model is batched only when its version directory holds
`batching_params.pbtxt` (TF Serving's `--enable_per_model_batching_parameters`), so models whose
signatures take one query and many titles (the recommender) never are.
"""

import dataclasses
import os
import threading
import time
from concurrent import futures
from typing import Callable

import numpy as np

from recs.contract.models import BATCHING_PARAMS_FILE, BatchingParams

Arrays = dict[str, np.ndarray]


def read_params(version_dir: str) -> BatchingParams | None:
    """The version's `batching_params.pbtxt`, or None when it has none (not batched)."""
    path = os.path.join(version_dir, BATCHING_PARAMS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return BatchingParams.parse(handle.read())


class Overloaded(RuntimeError):
    """Refused: `max_enqueued_batches` batches are already waiting."""


class ShapeMismatch(ValueError):
    """A request's inputs do not share their 0th dimension, so it cannot join a batch."""


@dataclasses.dataclass
class _Task:
    arrays: Arrays
    rows: int
    result: futures.Future


class Batcher:
    """Batches calls of one signature (see the module docstring).

    Args:
        call: runs the signature on concatenated inputs; returns outputs whose 0th dimension
            is the total number of rows.
        params: the batching parameters.
    """

    def __init__(self, call: Callable[[Arrays], Arrays], params: BatchingParams) -> None:
        self._call = call
        self._params = params
        self._lock = threading.Condition()
        self._open: list[_Task] = []
        self._open_rows = 0
        self._deadline = 0.0
        self._ready: list[list[_Task]] = []
        self._closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True,
                                          name=f"batch-{index}")
                         for index in range(params.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def run(self, arrays: Arrays) -> Arrays:
        """Runs `arrays` in the next batch and returns this request's rows of the outputs.

        Raises:
            ShapeMismatch: the inputs do not share their 0th dimension.
            Overloaded: the queue of closed batches is full.
            Exception: whatever the signature raised for the batch.
        """
        sizes = {len(value) if value.ndim else -1 for value in arrays.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise ShapeMismatch("batching needs every input to share its 0th dimension; "
                                f"received {({k: list(v.shape) for k, v in arrays.items()})}")
        task = _Task(arrays, sizes.pop(), futures.Future())
        with self._lock:
            if len(self._ready) >= self._params.max_enqueued_batches:
                raise Overloaded(f"{len(self._ready)} batches already wait "
                                 f"(max_enqueued_batches {self._params.max_enqueued_batches})")
            if task.rows >= self._params.max_batch_size:
                self._ready.append([task])  # Too big to share: runs alone.
            else:
                if self._open_rows + task.rows > self._params.max_batch_size:
                    self._close()
                if not self._open:
                    self._deadline = (time.monotonic()
                                      + self._params.batch_timeout_micros / 1e6)
                self._open.append(task)
                self._open_rows += task.rows
                if self._open_rows >= self._params.max_batch_size:
                    self._close()
            self._lock.notify_all()
        return task.result.result()

    def _close(self) -> None:
        if self._open:
            self._ready.append(self._open)
        self._open, self._open_rows = [], 0

    def _next(self) -> list[_Task] | None:
        with self._lock:
            while True:
                if self._ready:
                    return self._ready.pop(0)
                if self._closed:
                    return None
                if self._open and time.monotonic() >= self._deadline:
                    self._close()
                    continue
                timeout = (max(0.0, self._deadline - time.monotonic()) if self._open
                           else None)
                self._lock.wait(timeout)

    def _work(self) -> None:
        while (batch := self._next()) is not None:
            try:
                outputs = self._call({key: np.concatenate([task.arrays[key] for task in batch])
                                      for key in batch[0].arrays})
                total = sum(task.rows for task in batch)
                misaligned = {key: list(value.shape) for key, value in outputs.items()
                              if not value.ndim or len(value) != total}
                if misaligned:
                    raise ShapeMismatch(f"batched outputs must have {total} rows (the batch's); "
                                        f"received {misaligned}: this signature cannot be "
                                        "batched")
                start = 0
                for task in batch:
                    task.result.set_result({key: value[start:start + task.rows]
                                            for key, value in outputs.items()})
                    start += task.rows
            except Exception as error:  # noqa: BLE001  (each request gets the batch's error)
                for task in batch:
                    if not task.result.done():
                        task.result.set_exception(error)

    def close(self) -> None:
        """Runs what is queued, then stops the batch threads."""
        with self._lock:
            self._close()
            self._closed = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=10.0)
