"""The README's examples run: every `$ composite ...` line, the YAML files and the Python code."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.config import read_config_file
from composite_cli.engine.spec import parse_mode

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
DRY = """
profile: dry
profiles:
  dry:
    "*": {model: openai/gpt-4o-mini, mock_response: "Paris", mock_delay: 0.01}
"""


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def console_lines() -> list[str]:
    """Every `$ composite ...` example, except those that open the full-screen TUI (they are run
    in a real terminal by tests/test_tui_terminal.py and through Pilot by tests/test_tui_*.py)."""
    lines = [line[2:] for block in blocks("console") for line in block.splitlines() if line.startswith("$ ")]
    return [line for line in lines if not line.startswith("composite tui")]


def mode_example() -> str:
    return next(b for b in blocks("yaml") if b.startswith("name: "))


@pytest.mark.parametrize("line", console_lines())
def test_console_examples_run(line: str, isolated_home: Path):
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    (isolated_home / "my-modes").mkdir()
    (isolated_home / "my-modes" / "vote-v1.yaml").write_text(mode_example(), encoding="utf-8")
    (isolated_home / "evals").mkdir()
    for name in ("chess.jsonl", "arithmetic.jsonl", "tools.jsonl"):
        shutil.copy(REPO / "evals" / name, isolated_home / "evals" / name)
    if line.startswith(("composite eval report", "composite eval list", "composite traces")):
        first = CliRunner().invoke(app, ["eval", "evals/arithmetic.jsonl", "--limit", "2"])
        assert first.exit_code == 0, first.output
    stdin = "What is the capital of France?"
    if "|" in line:
        echo, line = (part.strip() for part in line.split("|", 1))
        stdin = shlex.split(echo)[1]
    args = shlex.split(line)
    assert args[0] == "composite"
    result = CliRunner().invoke(app, args[1:], input=stdin)
    assert result.exit_code == 0, result.output


def test_config_example_loads(tmp_path: Path):
    config = next(b for b in blocks("yaml") if b.startswith("profile:"))
    path = tmp_path / "composite.yaml"
    path.write_text(config, encoding="utf-8")
    data = read_config_file(path)
    assert set(data["profiles"]) == {"openai", "dry"}


def test_mode_example_parses_and_runs(fake_model, fake_profile):
    import asyncio

    from composite_cli.engine.executor import run_mode
    from composite_cli.engine.runtime import RunRequest

    spec = parse_mode(mode_example(), "vote-v1.yaml")
    result = asyncio.run(
        run_mode(spec, RunRequest(messages=[{"role": "user", "content": "2+2?"}]), profile=fake_profile)
    )
    assert result.calls == 5 and result.text == "fake answer"


TOOLY = """
profile: tooly
profiles:
  tooly:
    "*":
      model: openai/gpt-4o-mini
      mock_response: ""
      mock_tool_calls:
        - {id: call_1, type: function, function: {name: get_weather, arguments: '{"city": "Paris"}'}}
"""


def run_python(code: str, config: str, cwd: Path) -> str:
    (cwd / "composite.yaml").write_text(config, encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_python_example_runs(isolated_home: Path):
    code = next(b for b in blocks("python") if "composite/moa-v1" in b)
    out = run_python(code, DRY, isolated_home)
    assert out.startswith("Paris")
    assert "run_id" in out


def test_tool_loop_example_runs(isolated_home: Path):
    code = next(b for b in blocks("python") if "get_weather" in b)
    out = run_python(code, TOOLY, isolated_home)
    assert "called get_weather: 18C and sunny in Paris" in out


def test_the_two_commands_come_first_and_ci_runs_the_second():
    commands = blocks("bash")[:2]
    assert "composite chat --mode moa-v1" in commands[0]
    assert commands[1].strip().endswith(".venv/bin/pytest")
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1].strip() in ci


def test_readme_states_the_sandbox_guarantees_from_the_code():
    from composite_cli.sandbox import GUARANTEES

    def flat(text: str) -> str:
        return " ".join(text.split())

    assert flat(GUARANTEES) in flat(README)
