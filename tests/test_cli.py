"""`python -m pipeline COMMAND`: one command line for predict, profile, dag and docs."""

from __future__ import annotations

import pytest

from pipeline.__main__ import COMMANDS, main


def test_no_command_lists_the_commands_and_fails(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(f"    {name} " in out for name in COMMANDS)


def test_an_unknown_command_is_named_with_the_known_ones(capsys):
    assert main(["serve"]) == 2
    assert "unknown command 'serve' (choose from predict, profile, dag, docs)" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_runs_its_module_under_its_own_name(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m pipeline {command}")
