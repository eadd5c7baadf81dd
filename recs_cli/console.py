"""What the commands show on the terminal while they run."""

import logging
import re
import sys
import time


class _ComponentProgress(logging.Handler):
    """Shows TFX's "Component X is running/finished" lines and errors, nothing else."""

    _PATTERN = re.compile(r"^Component \S+ is (running|finished)\.$")

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            print(f"    ! {message}", file=sys.stderr, flush=True)
        elif self._PATTERN.match(message):
            name = message.split()[1]
            if message.endswith("running."):
                self._started[name] = time.perf_counter()
                print(f"    - {name} ...", flush=True)
            else:
                seconds = time.perf_counter() - self._started.get(name, time.perf_counter())
                print(f"    - {name} done in {seconds:.1f}s", flush=True)


def show_pipeline_progress() -> None:
    from absl import logging as absl_logging

    # Through absl's verbosity flag, not Logger.setLevel: components re-apply that flag's value
    # to the logger while they run, which would silence a level set only on the logger.
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(_ComponentProgress())
    absl_logger.propagate = False
