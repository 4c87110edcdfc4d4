"""The command line: arguments, output, exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from sovereign.model.tiny.cli import main, parser

from .conftest import QA_PATH, TORCH_REASON


def run(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --variant, --out"),
        (["--variant", "best", "--out", "x"], "invalid choice: 'best'"),
        (["--variant", "good", "--out", "x", "--steps", "-1"], "expected 0 to 100000, got -1"),
        (["--variant", "good", "--out", "x", "--seed", "zero"], "expected an integer, got 'zero'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults() -> None:
    args = parser().parse_args(["--variant", "good", "--out", "m"])
    assert (args.seed, args.steps, args.score) == (0, None, False)
    assert args.qa == Path("files/eval/tiny_qa.jsonl")


def test_generates_prints_digests_and_score(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason=TORCH_REASON)
    out = tmp_path / "model"
    code, stdout, stderr = run(
        "--variant", "worse", "--out", str(out), "--steps", "2", "--qa", str(QA_PATH), "--score"
    )
    assert (code, stderr) == (0, "")
    lines = stdout.splitlines()
    assert lines[0].startswith(f"wrote the worse model to {out} (seed 0, 2 steps")
    assert [line.split("  ")[1] for line in lines[1:7]] == sorted(p.name for p in out.iterdir())
    assert lines[7].startswith("score: ") and lines[7].endswith(f"/20 exact on {QA_PATH}")


def test_runtime_errors_exit_1_with_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason=TORCH_REASON)
    code, stdout, stderr = run(
        "--variant", "good", "--out", str(tmp_path), "--qa", str(tmp_path / "absent.jsonl")
    )
    assert (code, stdout) == (1, "")
    assert stderr.startswith("error: ") and "cannot read the Q&A set" in stderr
    assert stderr.count("\n") == 1


def test_module_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sovereign.model.tiny", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "--variant {good,worse}" in done.stdout


def test_without_torch_the_error_says_what_is_missing(tmp_path: Path) -> None:
    program = (
        "import sys; sys.modules['torch'] = None; "
        "from sovereign.model.tiny.cli import main; "
        "sys.exit(main(['--variant', 'good', '--out', sys.argv[1]]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    # torch here; safetensors, imported first, where nothing of the extra is installed.
    assert done.stderr.startswith("error: needs torch, transformers, tokenizers and safetensors (")
    assert done.stderr.endswith(" is missing)\n")
    assert done.stderr.count("\n") == 1
