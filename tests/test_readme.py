"""The README's examples run: every `$ composite ...` line, the YAML files and the Python code.

They run as printed on the built-in `dry` profile, with no config file: `COMPOSITE_PROFILE=dry` is
set, as the README's Profiles section says, so an example that names no profile runs on `dry` here
(and on the user's default profile when they type it). Only the data an example reads is prepared
(eval files, the example mode in `my-modes/`, an earlier eval for `report`, `list` and `traces`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.config import DRY_ANSWER, read_config_file
from composite_cli.engine.spec import parse_mode

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
DRY_ENV = {"COMPOSITE_PROFILE": "dry"}  # what the README says its examples run on in the tests
# Command examples in fenced blocks that this file does not run, and what runs them instead.
# A new `composite ...` line in a ```sh or ```bash block must be added here (or made a ```console
# `$ ` line, which runs below): test_every_command_example_is_covered fails until it is.
RUN_ELSEWHERE = {
    "composite serve": "a server that runs until stopped: tests/test_serve_e2e.py starts it",
    "composite serve --profile openai --modes moa,direct --workers 2": (
        "needs API keys for `openai`; --modes and --workers run in tests/test_serve_e2e.py"
    ),
    "composite serve --litellm-config litellm.yaml": (
        "needs the user's litellm.yaml; --litellm-config runs in tests/test_serve_e2e.py"
    ),
    "LITELLM_MASTER_KEY=sk-... composite serve --host 0.0.0.0 --port 8000": (
        "listens on every interface; the key from the environment runs in tests/test_serve_e2e.py"
    ),
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def console_commands() -> list[str]:
    """Every `$ ...` line of the ```console blocks, as printed (without the `$ `)."""
    return [line[2:] for block in blocks("console") for line in block.splitlines() if line.startswith("$ ")]


def console_lines() -> list[str]:
    """Every `$ composite ...` example, except those that open the full-screen TUI (they are run
    in a real terminal by tests/test_tui_terminal.py and through Pilot by tests/test_tui_*.py)."""
    return [line for line in console_commands() if not line.startswith("composite tui")]


def mode_example() -> str:
    return next(b for b in blocks("yaml") if b.startswith("name: "))


@pytest.fixture
def readme_home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary home the examples run in: on `dry`, with no config file."""
    for key, value in DRY_ENV.items():
        monkeypatch.setenv(key, value)
    (isolated_home / "my-modes").mkdir()
    (isolated_home / "my-modes" / "vote-v1.yaml").write_text(mode_example(), encoding="utf-8")
    (isolated_home / "evals").mkdir()
    for name in ("chess.jsonl", "arithmetic.jsonl", "tools.jsonl", "word_problems.jsonl"):
        shutil.copy(REPO / "evals" / name, isolated_home / "evals" / name)
    return isolated_home


def shard_steps_before(line: str) -> list[str]:
    """The README's `--shard` lines, before the `eval merge` of their databases; and the merge too,
    before a line that reads what it wrote (`--db all.db`)."""
    shards = [earlier for earlier in console_lines() if " --shard " in earlier]
    merge = [earlier for earlier in console_lines() if earlier.startswith("composite eval merge")]
    if line.startswith("composite eval merge"):
        return shards
    return shards + merge if "--db all.db" in line and " --shard " not in line else []


@pytest.mark.parametrize("line", console_lines())
def test_console_examples_run(line: str, readme_home: Path):
    assert not (readme_home / "composite.yaml").exists()
    if line.startswith(("composite eval report", "composite eval list", "composite traces")):
        first = CliRunner().invoke(app, ["eval", "evals/arithmetic.jsonl", "--limit", "2"])
        assert first.exit_code == 0, first.output
    for earlier in shard_steps_before(line):
        done = CliRunner().invoke(app, shlex.split(earlier)[1:])
        assert done.exit_code == 0, done.output
    stdin = "What is the capital of France?"
    if "|" in line:
        echo, line = (part.strip() for part in line.split("|", 1))
        stdin = shlex.split(echo)[1]
    args = shlex.split(line)
    assert args[0] == "composite"
    result = CliRunner().invoke(app, args[1:], input=stdin)
    assert result.exit_code == 0, result.output
    if args[1] == "chat" and "--json" not in args:
        assert DRY_ANSWER in result.stdout


def test_every_command_example_is_covered():
    """Every `$` line is a composite command (run above, or by the TUI tests), and every
    `composite` line of a ```sh or ```bash block is either run elsewhere (RUN_ELSEWHERE) or one of
    the two install commands (the first runs in CI's fresh-machine check, the second is CI)."""
    assert console_lines(), "no console examples found: has the README's format changed?"
    for line in console_commands():
        assert line.startswith("composite ") or ("| composite " in line and line.startswith("echo ")), (
            f"a README `$` line this file cannot run: {line!r}"
        )
    installs = blocks("bash")[:2]
    for block in [*blocks("sh"), *blocks("bash")]:
        if block in installs:
            continue
        for raw in block.splitlines():
            line = raw.split("  #", 1)[0].strip()
            if re.search(r"(^|\s|/)composite\s", line):
                assert line in RUN_ELSEWHERE, (
                    f"a README command example no test runs: {line!r}; make it a ```console `$ ` line "
                    "or say in tests/test_readme.py RUN_ELSEWHERE what runs it"
                )
    unused = [line for line in RUN_ELSEWHERE if line not in README]
    assert not unused, f"RUN_ELSEWHERE lists lines the README no longer has: {unused}"


def test_the_readme_states_how_its_examples_run():
    flat = " ".join(README.split())
    assert "COMPOSITE_PROFILE=dry" in flat and "tests/test_readme.py" in flat


def test_config_example_loads(tmp_path: Path):
    config = next(b for b in blocks("yaml") if b.startswith("profile:"))
    path = tmp_path / "composite.yaml"
    path.write_text(config, encoding="utf-8")
    data = read_config_file(path)
    assert set(data["profiles"]) == {"openai", "mock"}


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


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_python_example_runs(readme_home: Path):
    code = next(b for b in blocks("python") if "composite/moa-v1" in b)
    out = run_python(code, readme_home)
    assert out.startswith(DRY_ANSWER)
    assert "run_id" in out
    assert out.rstrip().endswith(DRY_ANSWER)  # the streamed answer, after the metadata and cost


def test_tool_loop_example_runs(isolated_home: Path):
    """On `dry` the model never asks for a tool, so this runs it on a profile whose mock does."""
    code = next(b for b in blocks("python") if "get_weather" in b)
    (isolated_home / "composite.yaml").write_text(TOOLY, encoding="utf-8")
    out = run_python(code, isolated_home)
    assert "called get_weather: 18C and sunny in Paris" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_openai_client_example_runs_against_composite_serve(readme_home: Path):
    """The OpenAI SDK snippet, against `composite serve` started with the snippet's key ("sk-...")
    on a free port (the one change made to the code: the port in base_url)."""
    import httpx

    code = next(b for b in blocks("python") if "from openai import OpenAI" in b)
    assert "http://127.0.0.1:4000/v1" in code
    port = _free_port()
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": "sk-...",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
    }
    composite = Path(sys.executable).with_name("composite")
    if not composite.exists():
        pytest.skip("console script not installed")
    log = readme_home / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(composite), "serve", "--port", str(port)],
            cwd=readme_home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300  # a generous start-up allowance on a loaded machine
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:  # a hang guard, not a measure
                pytest.fail(log.read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        out = run_python(code.replace("127.0.0.1:4000", f"127.0.0.1:{port}"), readme_home)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    run_id, answer = out.strip().splitlines()
    assert run_id and answer == DRY_ANSWER


def test_the_two_commands_come_first_and_ci_runs_the_second():
    commands = blocks("bash")[:2]
    assert "composite chat --mode moa-v1" in commands[0]
    assert ".venv/bin/pytest" in commands[1]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1].strip() in ci


def test_readme_states_the_sandbox_guarantees_from_the_code():
    from composite_cli.sandbox import GUARANTEES

    def flat(text: str) -> str:
        return " ".join(text.split())

    assert flat(GUARANTEES) in flat(README)
