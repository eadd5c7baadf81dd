"""What the commands show on the terminal while they run.

Long commands (`recs demo`, `recs pipeline`, `recs ingest`, `recs generate`, `recs report`)
run inside a `session`: everything the libraries write (TensorFlow's C++ logs, absl, Beam,
Keras's epoch lines, Python warnings) goes to a log file in the work directory, and the
terminal shows the command's own stages, each with a spinner or a progress bar and its elapsed
time, then a short summary, with the warnings that need a person (a model not blessed, an index
refused, too many dead letters) in bold. `--verbose` keeps the libraries' output on the
terminal.
"""

import atexit
import contextlib
import dataclasses
import logging
import os
import pathlib
import re
import sys
import time
from collections.abc import Iterator, Sequence

from rich.console import Console as RichConsole
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

LOG_FILE = "recs.log"


def quiet_tensorflow(verbose: bool) -> None:
    """Drops the INFO lines of TensorFlow's C++ runtime (CPU features, CUDA probing) unless
    `verbose` or the user set `TF_CPP_MIN_LOG_LEVEL`; its warnings and errors still reach the
    log. Only the entry point calls it, before anything imports TensorFlow: the C++ runtime
    reads the variable once, when it loads."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def _elapsed(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


@dataclasses.dataclass
class Stage:
    """A running stage: advance its bar, or print a line under it."""

    console: "Console"
    progress: Progress | None
    task: int | None

    def advance(self, description: str = "") -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=1, **(
                {"description": description} if description else {}))

    def show(self, description: str) -> None:
        """Names what the stage is doing now (beside the spinner)."""
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=description)

    def detail(self, text: str) -> None:
        self.console.detail(text)


class Console:
    """The terminal side of a command: stages, details, warnings and the summary.

    Args:
        terminal: where the lines go (the real terminal, even while a session sends the
            process's own stdout and stderr to the log).
        live: draw spinners and bars (a quiet session on a terminal); False prints plain
            start and end lines, which is what a log, a pipe or `--verbose` needs.
    """

    def __init__(self, terminal: RichConsole, live: bool) -> None:
        self.terminal = terminal
        self.live = live and terminal.is_terminal
        self.warnings: list[str] = []
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, title: str, total: int | None = None) -> Iterator[Stage]:
        """Runs one stage: a spinner (or a bar of `total` steps) while it runs, then one line
        with its time; a failing stage is marked and its error propagates."""
        started = time.perf_counter()
        if not self.live:
            self.terminal.print(f"[bold]▸ {title}[/] ...", highlight=False)
        progress = None
        if self.live:
            columns = [SpinnerColumn(), TextColumn("[bold]{task.fields[title]}[/]  "
                                                   "{task.description}")]
            if total:
                columns += [BarColumn(bar_width=24), MofNCompleteColumn()]
            # Not rich's default redirection of sys.stdout and sys.stderr to the terminal:
            # what the libraries write there belongs in the log.
            progress = Progress(*columns, TimeElapsedColumn(), console=self.terminal,
                                transient=True, redirect_stdout=False, redirect_stderr=False)
            progress.start()
        task = progress.add_task("", total=total, title=title) if progress else None
        try:
            yield Stage(self, progress, task)
        except BaseException:
            self._end(progress)
            self.terminal.print(f"[bold red]✗ {title}[/] failed after "
                                f"{_elapsed(time.perf_counter() - started)}", highlight=False)
            raise
        self._end(progress)
        self.terminal.print(f"[green]✓[/] [bold]{title}[/]  "
                            f"[dim]{_elapsed(time.perf_counter() - started)}[/]",
                            highlight=False)

    @staticmethod
    def _end(progress: Progress | None) -> None:
        if progress is not None:
            progress.stop()

    def detail(self, text: str) -> None:
        """An indented line under the current stage (plain text, no markup)."""
        self.terminal.print("    " + text.replace("\n", "\n    "), markup=False,
                            highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        """A warning that needs a person; also repeated in the summary."""
        self.warnings.append(text)
        self.terminal.print(f"[bold yellow]  ! {text}[/]", highlight=False)

    def summary(self, figures: Sequence[tuple[str, str]], paths: Sequence[tuple[str, str]]
                ) -> None:
        """The closing lines: headline figures, the warnings again, where things are."""
        self.terminal.print()
        width = max((len(label) for label, _ in [*figures, *paths]), default=0)
        for label, value in figures:
            self.terminal.print(f"  {label:<{width}}  [bold]{value}[/]", highlight=False)
        for text in self.warnings:
            self.terminal.print(f"[bold yellow]  ! {text}[/]", highlight=False)
        for label, value in paths:
            self.terminal.print(f"  {label:<{width}}  {value}", markup=False, highlight=False)
        self.terminal.print(f"[bold]Done in {_elapsed(time.perf_counter() - self.started)}[/]",
                            highlight=False)


@contextlib.contextmanager
def session(log_path: str | pathlib.Path, verbose: bool = False) -> Iterator[Console]:
    """Runs a command with the libraries' output in `log_path` and its own on the terminal.

    Quiet (the default), the process's stdout and stderr are redirected at the file-descriptor
    level, so C++ logs, subprocesses (Beam workers) and Python prints all land in the log; the
    yielded console writes to a copy of the original stdout. `verbose` leaves both alone and
    the console prints plain lines between the libraries' output.

    Args:
        log_path: the log file (truncated); its directory is created.
        verbose: keep everything on the terminal; no log file.

    Yields:
        The command's console.
    """
    _log_to_root()
    if verbose:
        yield Console(RichConsole(soft_wrap=True), live=False)
        return
    path = pathlib.Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    # TensorFlow objects that outlive the command print tracebacks from their finalizers while
    # the interpreter shuts down, after the session: those belong in the log too.
    atexit.register(_stderr_to, path)
    # soft_wrap: the terminal wraps long lines itself; rich's own wrapping at its guess of the
    # width breaks paths in two and leaves a warning's continuation unindented.
    console = Console(RichConsole(file=terminal, soft_wrap=True), live=True)
    console.terminal.print(f"[dim]library output: {path} (--verbose shows it here)[/]",
                           highlight=False)
    try:
        yield console
    except BaseException:
        _restore(saved)
        console.terminal.print(f"[bold red]failed; the log: {path}[/]", highlight=False)
        raise
    finally:
        _restore(saved)
        for descriptor in saved:
            os.close(descriptor)
        terminal.close()


def _stderr_to(path: pathlib.Path) -> None:
    sys.stderr.flush()
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)


def _restore(saved: tuple[int, int]) -> None:
    """Points stdout and stderr back at the terminal (twice is harmless)."""
    sys.stdout.flush()
    sys.stderr.flush()
    for target, copy in zip((1, 2), saved):
        with contextlib.suppress(OSError):
            os.dup2(copy, target)


class _SessionHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time: the log file in a quiet session, the
    terminal with `--verbose` (and a test's capture when a test swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _log_to_root() -> None:
    """Python logging (absl's included) at INFO to stderr: the log file in a quiet session.

    Through absl's verbosity flag as well as the root logger: components re-apply that flag's
    value to the absl logger while they run, which would silence a level set only on a logger.
    """
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    root = logging.getLogger()
    if not any(isinstance(h, _SessionHandler) for h in root.handlers):
        handler = _SessionHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)


class _ComponentProgress(logging.Handler):
    """Advances a stage's bar on TFX's "Component X is running/finished" lines."""

    _PATTERN = re.compile(r"^Component (\S+) is (running|finished)\.$")

    def __init__(self, stage: Stage) -> None:
        super().__init__(level=logging.INFO)
        self._stage = stage
        self._started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = self._PATTERN.match(record.getMessage())
        if match is None:
            return
        name, what = match.groups()
        if what == "running":
            self._started[name] = time.perf_counter()
            self._stage.show(name)
        else:
            seconds = time.perf_counter() - self._started.get(name, time.perf_counter())
            self._stage.advance(name)
            self._stage.detail(f"{name:<24} {_elapsed(seconds):>7}")


@contextlib.contextmanager
def pipeline_progress(stage: Stage) -> Iterator[None]:
    """Shows the TFX components of a LocalDagRunner run under `stage`, one line each."""
    handler = _ComponentProgress(stage)
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(handler)
    try:
        yield
    finally:
        absl_logger.removeHandler(handler)

