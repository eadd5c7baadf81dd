"""Timing helpers shared by the index tuner, the benchmarks and the services' measurements."""

import statistics
import time
from typing import Any, Callable


def latencies_ms(call: Callable[[Any], Any], items: list[Any], warmup: int = 1
                 ) -> dict[str, float]:
    """Calls `call` once per item (after `warmup` calls on the first); median and p99 in ms.

    Raises:
        ValueError: `items` is empty.
    """
    if not items:
        raise ValueError("latencies_ms needs at least one item to time.")
    for _ in range(warmup):
        call(items[0])
    times = []
    for item in items:
        start = time.perf_counter()
        call(item)
        times.append(1000.0 * (time.perf_counter() - start))
    times.sort()
    return {"median_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))]}


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """Runs `call`; returns its result and the seconds it took."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start
