"""The `recs` registry: every command listed once, each `run` callable from its parsed flags,
unrecognized arguments refused except where Beam takes them."""

import inspect

import pytest

from recs_cli.commands._base import EXTRA
from recs_cli.main import COMMANDS, build_parser, main

NAMES = ["generate", "ingest", "import", "evaluate", "movielens", "pipeline", "submit",
         "serve-models", "serve", "deploy", "openapi", "monitor", "abtest", "outcomes",
         "consume", "recommend", "report", "demo"]


def _subparsers(parser):
    return next(action for action in parser._actions if action.dest == "command").choices


def test_every_command_is_listed_once_in_the_help_order():
    assert [command.name for command in COMMANDS] == NAMES
    assert list(_subparsers(build_parser())) == NAMES
    # The module docstring, shown by `recs --help`, names every command too.
    help_text = build_parser().format_help()
    assert all(f"recs {name} " in help_text for name in NAMES)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_every_run_parameter_is_a_flag_of_its_command(command):
    subparser = _subparsers(build_parser())[command.name]
    flags = {action.dest for action in subparser._actions}
    assert set(command.parameters) - {EXTRA} <= flags
    # Flags the command declares but never passes on would be silently ignored.
    assert flags - {"help", "verbose"} <= set(command.parameters)
    assert all(parameter.annotation is not inspect.Parameter.empty
               for parameter in inspect.signature(command.run).parameters.values())


def test_only_ingest_takes_unrecognized_arguments():
    assert [command.name for command in COMMANDS if command.takes_extra] == ["ingest"]


def test_unrecognized_arguments_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["openapi", "--runner=DataflowRunner"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --runner=DataflowRunner" in capsys.readouterr().err
