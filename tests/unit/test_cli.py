from __future__ import annotations

import pytest

from sovereign.cli import main


def test_no_arguments_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: sovereign COMMAND" in capsys.readouterr().out


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "model" in capsys.readouterr().out


def test_an_unknown_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modle"]) == 2
    assert "unknown command 'modle'" in capsys.readouterr().err


def test_model_is_dispatched(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "verify"]) == 2
    assert "sovereign model" in capsys.readouterr().err


def test_eval_is_dispatched(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "compare"]) == 2
    assert "sovereign eval" in capsys.readouterr().err
