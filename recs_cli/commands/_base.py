"""What every `recs` command shares: its declaration and the glue from parsed arguments to its
typed `run`, written once here rather than in each command."""

import argparse
import dataclasses
import inspect
import pathlib
import sys
from collections.abc import Callable, Sequence

EXTRA = "extra"
"""The `run` parameter that receives the arguments the parser did not recognize."""


@dataclasses.dataclass(frozen=True)
class Command:
    """One `recs` command.

    Attributes:
        name: the subcommand, `recs NAME`.
        help: its line in `recs --help`.
        run: the typed function it runs, returning the exit status. It is called with the
            parsed arguments by name, each parameter a flag's `dest` (`--user-id` ->
            `user_id`); a `run` with a parameter named `extra` also receives the arguments
            the parser did not recognize (`recs ingest` passes them to Beam), and the other
            commands refuse them.
        add_arguments: declares its flags on its subparser; None for a command without any.
        refused: the errors that mean bad input (a malformed flag, a missing file): shown as
            one line, `<prefix>: <error>`, on stderr, with exit status 2 and no traceback.
        prefix: the start of that line.

    Example:
        COMMAND = Command("deploy", "write TF Serving configs and k8s manifests", run,
                          add_arguments)
    """

    name: str
    help: str
    run: Callable[..., int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    refused: tuple[type[Exception], ...] = ()
    prefix: str = "error"

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names `run` is called with."""
        return tuple(inspect.signature(self.run).parameters)

    @property
    def takes_extra(self) -> bool:
        return EXTRA in self.parameters

    def __call__(self, args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
        """Runs the command on parsed arguments.

        Returns:
            `run`'s exit status, or 2 when it raised one of `refused`.
        """
        values = {name: list(extra) if name == EXTRA else getattr(args, name)
                  for name in self.parameters}
        try:
            return self.run(**values)
        except self.refused as error:
            print(f"{self.prefix}: {error}", file=sys.stderr)
            return 2


def add_runner_config(parser: argparse.ArgumentParser) -> None:
    """`--beam-runner-config`, for the commands that run Beam."""
    parser.add_argument("--beam-runner-config", type=pathlib.Path, default=None,
                        help="a BeamRunnerConfig as JSON (transforms/runners.py): Dataflow, "
                             "Flink, Spark or the multi-process DirectRunner")


def beam_args(path: pathlib.Path | None, extra: Sequence[str] = ()) -> list[str]:
    """Beam options from a `BeamRunnerConfig` JSON file, then any extra options given."""
    from transforms.runners import BeamRunnerConfig

    configured = BeamRunnerConfig.from_json(path.read_text()).args() if path else []
    return configured + list(extra)
