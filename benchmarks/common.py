"""What every benchmark shares: machine facts, memory measurement and the results file
(timing helpers come from `recs.timing`, which the library's index tuner uses too).

Each benchmark writes `benchmarks/results/<name>.json` with the date, the machine, its
parameters, its own figures, the peers' figures from the same run and the ratios between them.
"""

import contextlib
import datetime
import json
import os
import pathlib
import platform
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, Iterator

from recs.timing import latencies_ms, timed  # noqa: F401  (benchmarks import them from here)

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and software of this machine."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    identity = cpu_identity()
    return {"cpu": cpu, **identity, "cores": os.cpu_count(),
            "memory_gib": round(total_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            # The 1-minute load when the result was written: above the cores, something else
            # (or the benchmark's own processes) kept them busy.
            "load_average_1m": round(os.getloadavg()[0], 2)}


_MICROARCHITECTURES = {
    ("AuthenticAMD", 23, 49): "Zen 2 (EPYC Rome)", ("AuthenticAMD", 25, 1): "Zen 3 (EPYC Milan)",
    ("AuthenticAMD", 25, 17): "Zen 4 (EPYC Genoa)", ("AuthenticAMD", 26, 2): "Zen 5 (EPYC Turin)",
    ("GenuineIntel", 6, 85): "Skylake/Cascade Lake-SP", ("GenuineIntel", 6, 106): "Ice Lake-SP",
    ("GenuineIntel", 6, 143): "Sapphire Rapids", ("GenuineIntel", 6, 207): "Emerald Rapids",
    ("GenuineIntel", 6, 173): "Granite Rapids"}
"""(vendor, family, model) -> the core's generation, for CPUs whose model name a VM reports
only as a vendor family ("AMD EPYC")."""


def cpu_identity() -> dict[str, Any]:
    """The CPU's vendor, family, model and stepping numbers (/proc/cpuinfo), and its
    microarchitecture when known: two machines with the same model name can differ."""
    fields = {}
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    vendor = fields.get("vendor_id", "unknown")
    family, model = int(fields.get("cpu family", -1)), int(fields.get("model", -1))
    return {"cpu_id": f"{vendor} family {family} model {model} stepping "
                      f"{fields.get('stepping', '?')}",
            "cpu_microarchitecture": _MICROARCHITECTURES.get((vendor, family, model),
                                                             "unknown"),
            "cpu_mhz": float(fields.get("cpu MHz", 0.0))}


CPU_FLAGS_OF_NOTE = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16",
                     "amx_int8")
"""CPU features that change how fast TensorFlow and NumPy run, reported when present."""


def cpu_flags() -> list[str]:
    """The `CPU_FLAGS_OF_NOTE` this machine's first CPU reports (/proc/cpuinfo "flags")."""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in CPU_FLAGS_OF_NOTE if flag in present]
    return []


def matmul_gflops(seconds: float = 1.0, size: int = 512) -> float:
    """A calibration figure: single-thread float32 matrix multiply speed in GFLOP/s, measured
    for about `seconds`, so results from different machines (or a busy one) can be set side
    by side."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    with threadpool_limits(limits=1):
        a @ b  # Warm-up.
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
        elapsed = time.perf_counter() - start
    return round(2.0 * size ** 3 * runs / elapsed / 1e9, 2)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class MemoryCapExceeded(RuntimeError):
    """The measured process tree went over its memory cap and was stopped."""


def run_in_process(target: Callable[..., None], *args: Any, max_rss_mb: float = 0.0
                   ) -> tuple[float, float]:
    """Runs `target(*args)` in a fresh spawned process, sampling its process tree every 0.2 s.

    Multi-process runners (Beam's DirectRunner workers) count: the peak is the sum over the
    process and all its descendants.

    Args:
        target: a module-level function (it is pickled into the new process).
        *args: its arguments.
        max_rss_mb: stop the whole tree once it holds more than this (0: no cap), so a run
            that does not fit fails alone instead of taking the machine down.

    Returns:
        (wall seconds, peak resident memory of the tree in MB).

    Raises:
        MemoryCapExceeded: the tree went over `max_rss_mb`.
        RuntimeError: the process exited with a non-zero code.
    """
    import multiprocessing
    import threading

    import psutil

    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    peak = [0.0]
    capped = threading.Event()
    done = threading.Event()
    start = time.perf_counter()
    process.start()

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root] + root.children(recursive=True)
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree) / 2**20)
                if max_rss_mb and peak[0] > max_rss_mb:
                    capped.set()
                    for member in reversed(tree):
                        member.kill()
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    process.join()
    done.set()
    seconds = time.perf_counter() - start
    if capped.is_set():
        raise MemoryCapExceeded(f"{getattr(target, '__name__', target)} went over "
                                f"{max_rss_mb:.0f} MB after {seconds:.0f} s and was stopped")
    if process.exitcode != 0:
        raise RuntimeError(f"{getattr(target, '__name__', target)} failed with exit code "
                           f"{process.exitcode}")
    return seconds, peak[0]


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_result(name: str, parameters: dict[str, Any], figures: dict[str, Any],
                 peers: dict[str, Any], ratios: dict[str, Any],
                 machine_facts: dict[str, Any] | None = None) -> pathlib.Path:
    """Writes `results/<name>.json` and returns its path. `RECS_BENCH_CONCURRENT_LOAD`, when
    set, is written as `parameters.concurrent_load` (what else shared the machine);
    `machine_facts` (e.g. `cpu_flags()`, `matmul_gflops()`) join the machine block."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if os.environ.get("RECS_BENCH_CONCURRENT_LOAD"):
        parameters = {**parameters,
                      "concurrent_load": os.environ["RECS_BENCH_CONCURRENT_LOAD"]}
    path = RESULTS / f"{name}.json"
    document = {"benchmark": name,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": {**machine(), **(machine_facts or {})}, "parameters": parameters,
                "figures": figures, "peers": peers, "ratios": ratios}
    path.write_text(json.dumps(document, indent=2, default=_plain) + "\n")
    return path


@contextlib.contextmanager
def redis_server(data_dir: str | pathlib.Path | None = None) -> Iterator[str]:
    """A redis-server on a free loopback port; yields its URL.

    Args:
        data_dir: None for a throwaway server. Otherwise its dump lives there: the server
            starts from `dump.rdb` when there is one, and a `SAVE` writes it (nothing is
            saved on its own), so a long run can continue after a restart.
    """
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: run scripts/system-deps.sh")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if data_dir is None:
        workdir = tempfile.mkdtemp(prefix="bench-redis-")
    else:
        workdir = str(data_dir)
        os.makedirs(workdir, exist_ok=True)
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                "", "--appendonly", "no", "--dir", workdir,
                                "--dbfilename", "dump.rdb"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + (10 if data_dir is None else 300)  # A dump takes a while.
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:  # BusyLoadingError included: still reading the dump.
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class KillableRedis:
    """A redis-server on a fixed port and folder, so that it can be killed (SIGKILL) and
    started again as the same server: the fault tests and `benchmarks/faults.py`.

    Args:
        folder: its `--dir` (the append-only file lives there).
        options: further redis-server flags, e.g. "--appendonly", "yes".
    """

    def __init__(self, folder: pathlib.Path, *options: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder, self.options = folder, options
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Starts it and waits until it answers (its data loaded).

        Raises:
            RuntimeError: no redis-server binary, or it did not answer within 10 s.
        """
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/system-deps.sh")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.folder), *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        probe = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write of the append-only file."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def aof_commands(aof: bytes) -> Iterator[tuple[int, int, list[bytes]]]:
    """(offset where it starts, offset just after it, arguments) of each command of a Redis
    append-only file (RESP arrays of bulk strings), to cut the file where a fault would."""
    position = 0
    while position < len(aof):
        start = position
        end = aof.index(b"\r\n", position)
        count, position = int(aof[position + 1:end]), end + 2
        arguments = []
        for _ in range(count):
            end = aof.index(b"\r\n", position)
            size, position = int(aof[position + 1:end]), end + 2
            arguments.append(aof[position:position + size])
            position += size + 2
        yield start, position, arguments
