"""The glue every command shares: parsed flags to `run` by name, bad input to one line and
exit status 2."""

import argparse

import pytest

from recs_cli.commands._base import Command


def _echo(path: str, count: int) -> int:
    if count < 0:
        raise ValueError(f"count must be >= 0; received {count}.")
    if count == 99:
        raise RuntimeError("a bug, not bad input")
    print(path * count)
    return 7


def test_run_gets_the_parsed_flags_by_name_and_its_status_is_returned(capsys):
    command = Command("echo", "echo", _echo)
    args = argparse.Namespace(path="ab", count=2, verbose=False)
    assert command(args) == 7
    assert capsys.readouterr().out == "abab\n"
    assert command.parameters == ("path", "count") and not command.takes_extra


def test_a_refused_error_is_one_line_and_exit_status_2(capsys):
    command = Command("echo", "echo", _echo, refused=(ValueError,), prefix="recs echo")
    assert command(argparse.Namespace(path="ab", count=-1)) == 2
    assert capsys.readouterr().err == "recs echo: count must be >= 0; received -1.\n"


def test_other_errors_keep_their_traceback():
    command = Command("echo", "echo", _echo, refused=(ValueError,))
    with pytest.raises(RuntimeError, match="a bug"):
        command(argparse.Namespace(path="ab", count=99))
    # Without `refused`, bad input propagates too.
    with pytest.raises(ValueError, match="count must be >= 0"):
        Command("echo", "echo", _echo)(argparse.Namespace(path="ab", count=-1))


def test_unrecognized_arguments_reach_a_run_that_takes_extra():
    def run(path: str, extra: list[str]) -> int:
        return len(extra) if path == "p" else -1

    command = Command("beam", "beam", run)
    assert command.takes_extra
    assert command(argparse.Namespace(path="p"), ["--runner=X", "--num_workers=2"]) == 2
