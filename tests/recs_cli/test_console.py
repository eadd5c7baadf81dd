"""The long commands' terminal: what the libraries write at the file-descriptor level (C++
logs, subprocesses) goes to the log file, the command's stages reach the terminal, and
`--verbose` leaves the libraries' output where it was."""

import os
import subprocess

import pytest

from recs_cli.console import session


def test_quiet_session_sends_library_output_to_the_log_and_stages_to_the_terminal(
        tmp_path, capfd):
    log = tmp_path / "work" / "recs.log"
    with session(log) as console:
        os.write(2, b"I tensorflow/core: C++ runtime noise\n")
        os.write(1, b"a library's stdout line\n")
        subprocess.run(["echo", "a Beam worker's line"], check=True)
        with console.stage("training"):
            pass
        console.warn("the ranker was NOT blessed")
    printed = capfd.readouterr()
    assert "✓ training" in printed.out and "! the ranker was NOT blessed" in printed.out
    assert f"library output: {log}" in printed.out
    for line in ("C++ runtime noise", "a library's stdout line", "a Beam worker's line"):
        assert line not in printed.out + printed.err
        assert line in log.read_text()
    # Restored afterwards: the process's own descriptors reach the terminal again.
    os.write(2, b"after the session\n")
    assert "after the session" in capfd.readouterr().err


def test_a_failing_stage_is_marked_and_its_error_propagates(tmp_path, capfd):
    with pytest.raises(RuntimeError, match="Transform failed"):
        with session(tmp_path / "recs.log") as console, console.stage("TFX pipeline"):
            raise RuntimeError("Transform failed")
    printed = capfd.readouterr().out
    assert "✗ TFX pipeline failed after" in printed
    assert f"failed; the log: {tmp_path / 'recs.log'}" in printed


def test_verbose_session_leaves_library_output_on_the_terminal(tmp_path, capfd):
    with session(tmp_path / "recs.log", verbose=True) as console:
        os.write(2, b"C++ runtime noise\n")
        with console.stage("training"):
            pass
    printed = capfd.readouterr()
    assert "C++ runtime noise" in printed.err and "✓ training" in printed.out
    assert not (tmp_path / "recs.log").exists()
