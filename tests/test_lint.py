"""CI's lint gate (issue 14): `ruff check`, `ruff format --check` and `mypy` pass on the repository.

`.ci/run` is exactly the README's test command, so the linters run here, inside the suite, with the
venv's own executables and the configuration in pyproject.toml. One file, so `--dist loadfile`
keeps the three on one worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_linter_passes(command: list[str]) -> None:
    executable = BIN / command[0]
    assert executable.exists(), f"{executable} is missing: pip install -e '.[test]'"
    result = subprocess.run(
        [str(executable), *command[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        f"`{' '.join(command)}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
