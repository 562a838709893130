"""The `composite` command line through Typer's CliRunner, offline (LiteLLM mock responses or the
fake model), in the empty temporary directory the isolated_home fixture gives every test."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from composite_cli import __version__
from composite_cli.cli.main import app

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["direct", "moa-reflect-v1", "moa-v1", "reflect-v1"]

DRY_CONFIG = """\
profile: dry
profiles:
  dry:
    "*": {model: openai/gpt-4o-mini, mock_response: "Paris", mock_delay: 0.01}
"""

FAKE_CONFIG = """\
profile: fake
profiles:
  fake:
    "*": {model: openai/fake}
"""


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input, env=env)


@pytest.fixture
def dry(isolated_home: Path) -> Path:
    """A composite.yaml whose only profile answers "Paris" through LiteLLM's mock_response."""
    path = isolated_home / "composite.yaml"
    path.write_text(DRY_CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def fake_config(isolated_home: Path) -> Path:
    """A composite.yaml for the fake_model fixture (which never reaches the network)."""
    path = isolated_home / "composite.yaml"
    path.write_text(FAKE_CONFIG, encoding="utf-8")
    return path


def db_rows(path: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def one_error_line(result: Result) -> str:
    """The single `Error: ...` line a failed command prints on stderr (and nothing on stdout)."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    return lines[0]


# -- help and version ----------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("chat", "models", "modes"):
        assert command in result.stdout
    assert "--version" in result.stdout


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "Usage" in result.output
    assert "chat" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"composite {__version__}\n"


def _command_tree() -> list[tuple[list[str], Any]]:
    """Every command and sub-command as (path of names, click command)."""
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = []

    def walk(command: Any, path: list[str], ctx: Any) -> None:
        found.append((path, command))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, [*path, name], type(ctx)(sub, parent=ctx, info_name=name))

    ctx_class = root.context_class
    walk(root, [], ctx_class(root, info_name="composite"))
    return found


def test_command_tree_has_the_expected_commands() -> None:
    paths = {" ".join(path) for path, _ in _command_tree()}
    assert {"", "chat", "models", "modes", "modes list", "modes show", "modes validate"} <= paths


def test_every_command_has_help_text() -> None:
    tree = _command_tree()
    assert len(tree) >= 7
    for path, command in tree:
        text = (command.help or command.short_help or "").strip()
        assert text, f"`composite {' '.join(path)}` has no help text"


def test_every_option_and_argument_has_help_text() -> None:
    for path, command in _command_tree():
        for param in command.params:
            if param.name == "help":
                continue
            assert (getattr(param, "help", None) or "").strip(), (
                f"`composite {' '.join(path)}` parameter {param.name!r} has no help text"
            )


def test_help_of_every_command_runs() -> None:
    for path, _ in _command_tree():
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.stdout


# -- composite models ----------------------------------------------------------------------------


def test_models_shows_the_active_profile(dry: Path) -> None:
    result = invoke("models")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "profile dry from composite.yaml"
    table = {line.split()[0]: line.split()[1] for line in lines[1:]}
    # The aliases the shipped modes use are listed, resolved through the "*" fallback.
    for alias in ("fast", "strong", "judge"):
        assert table[alias] == "openai/gpt-4o-mini"
    assert "mock_response=Paris" in result.stdout


def test_models_without_config_uses_the_local_profile() -> None:
    result = invoke("models")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "profile local (built in)"
    assert "local/smollm2" in result.stdout
    assert "strong" in result.stdout


def test_models_json(dry: Path) -> None:
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["profile"] == "dry"
    assert data["config"] == "composite.yaml"
    for alias in ("fast", "strong", "judge"):
        assert data["aliases"][alias]["model"] == "openai/gpt-4o-mini"


def test_models_override(dry: Path) -> None:
    result = invoke("models", "--model", "strong=openai/x")
    assert result.exit_code == 0, result.output
    table = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert table["strong"] == "openai/x"
    assert table["fast"] == "openai/gpt-4o-mini"

    data = json.loads(invoke("models", "--json", "--model", "strong=openai/x").stdout)
    assert data["aliases"]["strong"] == {"model": "openai/x"}
    assert data["aliases"]["fast"]["model"] == "openai/gpt-4o-mini"


def test_models_profile_flag() -> None:
    Path("composite.yaml").write_text(
        DRY_CONFIG + '  other:\n    "*": {model: anthropic/claude-x}\n', encoding="utf-8"
    )
    data = json.loads(invoke("models", "--json", "--profile", "other").stdout)
    assert data["profile"] == "other"
    assert data["aliases"]["strong"]["model"] == "anthropic/claude-x"


def test_models_never_prints_api_keys() -> None:
    Path("composite.yaml").write_text(
        "profile: keyed\nprofiles:\n  keyed:\n"
        '    "*": {model: openai/gpt-4o-mini, api_key: sk-secret12345678}\n'
        "    strong: {model: openai/gpt-4.1, api_key: other-secret-value-99, api_base: http://x}\n",
        encoding="utf-8",
    )
    for args in (["models"], ["models", "--json"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "sk-secret12345678" not in result.output
        assert "other-secret-value-99" not in result.output
        assert "openai/gpt-4.1" in result.stdout
    data = json.loads(invoke("models", "--json").stdout)
    assert data["aliases"]["strong"]["api_base"] == "http://x"
    assert data["aliases"]["strong"]["api_key"] != "other-secret-value-99"


def test_models_prints_multi_line_values_on_one_line() -> None:
    """The built-in dry profile's `root` answer spans four lines: the table keeps one line per
    alias (the value's repr); --json keeps the value as it is."""
    data = json.loads(invoke("models", "--profile", "dry", "--json").stdout)
    answer = data["aliases"]["root"]["answer"]
    assert answer.count("\n") == 3
    lines = invoke("models", "--profile", "dry").stdout.splitlines()
    assert lines[0] == "profile dry (built in)" and len(lines) == 1 + len(data["aliases"])
    (root,) = [line for line in lines if line.split()[0] == "root"]
    assert root.endswith(f"dry/mock  answer={answer!r}")


def test_models_shortens_long_values_with_an_ellipsis() -> None:
    long = "first line\\n" + "word " * 40
    Path("composite.yaml").write_text(
        f'profile: p\nprofiles:\n  p:\n    "*": {{model: openai/x, mock_response: "{long}"}}\n',
        encoding="utf-8",
    )
    data = json.loads(invoke("models", "--json").stdout)
    assert data["aliases"]["strong"]["mock_response"] == long.replace("\\n", "\n")
    (strong,) = [line for line in invoke("models").stdout.splitlines() if line.split()[0] == "strong"]
    value = strong.split("mock_response=", 1)[1]
    assert value.startswith("'first line\\nword word") and value.endswith("…") and len(value) == 80


def test_models_bad_override_is_one_error_line(dry: Path) -> None:
    result = invoke("models", "--model", "strong")
    assert result.exit_code == 1
    assert "ALIAS=MODEL" in one_error_line(result)


def test_models_bad_config_names_file_and_line() -> None:
    Path("composite.yaml").write_text("profile: dry\nprofilez: {}\n", encoding="utf-8")
    result = invoke("models")
    assert result.exit_code == 1
    assert one_error_line(result).startswith("Error: composite.yaml:2: unknown key 'profilez'")


# -- composite modes -----------------------------------------------------------------------------


def test_modes_list(dry: Path) -> None:
    result = invoke("modes", "list")
    assert result.exit_code == 0, result.output
    # grouped under headings (tests/test_modes_list.py), sorted by name within a group
    names = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert set(SHIPPED) <= set(names)
    moa = next(line for line in result.stdout.splitlines() if line.strip().startswith("moa-v1"))
    assert "(moa)" in moa
    assert "[fast, strong]" in moa
    assert "mixture-of-agents" in moa


def test_modes_list_json() -> None:
    result = invoke("modes", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert set(SHIPPED) <= {r["name"] for r in rows}
    by_name = {r["name"]: r for r in rows}
    assert by_name["moa-v1"]["short"] == "moa"
    assert by_name["direct"]["short"] is None
    assert by_name["moa-v1"]["aliases"] == ["fast", "strong"]
    assert all(r["valid"] for r in rows)
    assert all(r["description"] for r in rows)
    assert Path(by_name["moa-v1"]["path"]).name == "moa-v1.yaml"


def test_modes_list_includes_user_modes_and_marks_broken_ones(tmp_path: Path) -> None:
    mine = Path("mine")
    mine.mkdir()
    (mine / "mine-v1.yaml").write_text(
        "name: mine-v1\ndescription: Mine.\nsteps:\n  - {id: a, kind: call, model: strong}\n",
        encoding="utf-8",
    )
    (mine / "broken.yaml").write_text("name: broken\nsteps: []\n", encoding="utf-8")
    Path("composite.yaml").write_text("modes_path: mine\n", encoding="utf-8")
    result = invoke("modes", "list", "--json")
    assert result.exit_code == 0, result.output
    by_name = {r["name"]: r for r in json.loads(result.stdout)}
    assert by_name["mine-v1"]["short"] == "mine"
    assert by_name["mine-v1"]["valid"] is True
    assert by_name["broken"]["valid"] is False
    assert "broken.yaml:2: steps:" in by_name["broken"]["error"]

    text = invoke("modes", "list").stdout
    assert any(line.strip().startswith("broken") and "INVALID" in line for line in text.splitlines())


def test_modes_show_step_tree(dry: Path) -> None:
    result = invoke("modes", "show", "moa")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("moa-v1: Layered mixture-of-agents")
    assert "params: extra_layers=0, proposer_max_tokens=256, min_success=2" in out
    assert "limits: max_calls=30" in out
    assert "models (dry): fast → openai/gpt-4o-mini, strong → openai/gpt-4o-mini" in out
    lines = out.splitlines()
    steps = lines[lines.index("steps:") + 1 :]
    assert steps[0].startswith("  ├─ proposals (fanout) experts: analyst(fast), teacher(fast), skeptic(fast)")
    assert steps[1].startswith("  ├─ layers (loop) max_rounds=$extra_layers")
    assert steps[2].startswith("  │  └─ refined (fanout)")
    assert steps[3].startswith("  └─ answer (synthesize) from=proposals model=strong")


def test_modes_show_yaml_prints_the_file() -> None:
    result = invoke("modes", "show", "moa", "--yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n") == (REPO / "modes" / "moa-v1.yaml").read_text().rstrip("\n")


def test_modes_show_json() -> None:
    result = invoke("modes", "show", "reflect", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "reflect-v1"
    assert [s["id"] for s in data["steps"]] == ["draft", "refine", "critique", "fix", "rewrite"]
    assert data["params"] == {"max_rounds": 2, "draft_max_tokens": 384}


def test_modes_show_unknown_mode() -> None:
    result = invoke("modes", "show", "nope")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("Error: unknown mode 'nope'; known modes: ")
    for name in SHIPPED:
        assert name in line


# -- composite chat with the mock profile --------------------------------------------------------


def test_chat_prints_the_answer_and_records_the_run(dry: Path) -> None:
    result = invoke("chat", "-m", "moa", "What is the capital of France?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Paris\n"
    assert "Traceback" not in result.output

    db = Path("traces.db")
    assert db.is_file()
    runs = db_rows(db, "select * from runs")
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "ok"
    assert run["mode"] == "moa-v1"
    assert run["source"] == "chat"
    assert run["profile"] == "dry"
    assert run["input"] == "What is the capital of France?"
    assert run["output"] == "Paris"
    assert run["calls"] == 4
    steps = db_rows(db, "select * from steps where run_id = ?", run["id"])
    names = {s["name"] for s in steps}
    assert {"proposals", "analyst", "teacher", "skeptic", "answer"} <= names
    assert all(s["status"] == "ok" for s in steps)


def test_chat_json_is_a_chat_completion(dry: Path) -> None:
    result = invoke("chat", "-m", "moa", "--json", "What is the capital of France?")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["object"] == "chat.completion"
    assert data["model"] == "composite/moa-v1"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}
    ]
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["total_tokens"] > 0
    block = data["composite"]
    assert block["mode"] == "moa-v1"
    assert block["calls"] == 4
    assert isinstance(block["latency_ms"], (int, float)) and block["latency_ms"] > 0
    assert "cost_usd" in block
    assert block["cost_usd"] is None or block["cost_usd"] >= 0
    assert data["id"] == f"chatcmpl-{block['run_id']}"
    runs = db_rows(Path("traces.db"), "select id, status from runs")
    assert runs == [{"id": block["run_id"], "status": "ok"}]


def test_chat_trace_prints_the_step_tree(dry: Path) -> None:
    result = invoke("chat", "-m", "moa", "--trace", "What is the capital of France?")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Paris"
    assert lines[1].startswith("run ")
    assert "moa-v1" in lines[1] and " ok " in lines[1] and "4 calls" in lines[1]
    tree = "\n".join(lines[2:])
    for name in ("fanout proposals", "analyst", "teacher", "skeptic", "loop layers", "synthesize answer"):
        assert name in tree
    assert tree.index("proposals") < tree.index("analyst") < tree.index("synthesize answer")


def test_chat_json_with_trace_keeps_stdout_json(dry: Path) -> None:
    result = invoke("chat", "-m", "moa", "--json", "--trace", "q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["choices"][0]["message"]["content"] == "Paris"
    assert "proposals" in result.stderr


def test_chat_default_mode_is_direct(dry: Path) -> None:
    result = invoke("chat", "--json", "hello")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "composite/direct"
    assert data["composite"]["calls"] == 1


def test_chat_extra_layers_param_adds_a_layer(dry: Path) -> None:
    base = json.loads(invoke("chat", "-m", "moa", "--json", "q").stdout)
    layered = json.loads(invoke("chat", "-m", "moa", "--json", "--param", "extra_layers=1", "q").stdout)
    assert base["composite"]["calls"] == 4
    assert layered["composite"]["calls"] == 7
    run = db_rows(
        Path("traces.db"), "select params_json from runs where id = ?", layered["composite"]["run_id"]
    )
    assert json.loads(run[0]["params_json"]) == {"extra_layers": 1}


def test_chat_db_flag_writes_there(dry: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "runs.db"
    result = invoke("chat", "--db", str(target), "hello")
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert not Path("traces.db").exists()
    assert [r["mode"] for r in db_rows(target, "select mode from runs")] == ["direct"]


def test_chat_db_from_env(dry: Path, tmp_path: Path) -> None:
    target = tmp_path / "env.db"
    result = invoke("chat", "hello", env={"COMPOSITE_DB": str(target)})
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert not Path("traces.db").exists()


# -- composite chat with the fake model ----------------------------------------------------------


def test_chat_reads_the_prompt_from_stdin(fake_config: Path, fake_model: Any) -> None:
    fake_model.default.content = "4"
    result = invoke("chat", "-m", "direct", input="What is 2+2?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "4\n"
    request = fake_model.request("answer")
    assert request["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert request["model"] == "openai/fake"


def test_chat_empty_stdin_is_an_error(fake_config: Path, fake_model: Any) -> None:
    result = invoke("chat", input="   \n")
    assert result.exit_code == 2
    assert "empty prompt" in one_error_line(result)
    assert fake_model.requests == []


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-tokens", "0"),
        ("--max-tokens", "-1"),
        ("--max-tokens", str(10**20)),
        ("--temperature", "-0.5"),
        ("--temperature", "2.5"),
        ("--temperature", "inf"),
        ("--temperature", "nan"),
    ],
)
def test_chat_refuses_a_generation_flag_out_of_range(
    fake_config: Path, fake_model: Any, flag: str, value: str
) -> None:
    """The flags take what the server's edge takes (composite_cli/generation_ranges.py): a token limit
    from 1 to 2^20 and OpenAI's temperature range, 0 to 2. The embedded model read a limit of -1 as
    none at all and one of 0 as its default; `inf` went to the model as it was."""
    result = invoke("chat", flag, value, "hi")
    assert result.exit_code == 2, result.output
    assert flag in result.output
    assert fake_model.requests == []


def test_chat_options_reach_the_model(fake_config: Path, fake_model: Any) -> None:
    result = invoke(
        "chat",
        "-m",
        "moa",
        "--system",
        "Answer in French.",
        "--temperature",
        "0.3",
        "--max-tokens",
        "50",
        "Capital of France?",
    )
    assert result.exit_code == 0, result.output
    assert sorted(fake_model.names()) == ["analyst", "answer", "skeptic", "teacher"]
    for request in fake_model.requests:
        system = [m for m in request["messages"] if m["role"] == "system"]
        assert system, request["metadata"]["composite_call"]
        assert "Answer in French." in system[0]["content"]
        assert request["messages"][-1] == {"role": "user", "content": "Capital of France?"}
    final = fake_model.request("answer")
    assert final["temperature"] == 0.3
    assert final["max_tokens"] == 50
    for name in ("analyst", "teacher", "skeptic"):
        request = fake_model.request(name)
        assert "temperature" not in request
        assert request["max_tokens"] == 256  # the mode's own proposer_max_tokens


def test_chat_without_options_sends_no_temperature(fake_config: Path, fake_model: Any) -> None:
    result = invoke("chat", "-m", "direct", "hi")
    assert result.exit_code == 0, result.output
    request = fake_model.request("answer")
    assert "temperature" not in request
    assert "max_tokens" not in request
    assert [m["role"] for m in request["messages"]] == ["user"]


def test_chat_model_override_reaches_the_model(fake_config: Path, fake_model: Any) -> None:
    result = invoke("chat", "-m", "moa", "--model", "strong=openai/big", "q")
    assert result.exit_code == 0, result.output
    assert fake_model.request("answer")["model"] == "openai/big"
    assert fake_model.request("analyst")["model"] == "openai/fake"


def test_chat_param_extra_layers_makes_more_calls(fake_config: Path, fake_model: Any) -> None:
    result = invoke("chat", "-m", "moa", "--param", "extra_layers=1", "q")
    assert result.exit_code == 0, result.output
    names = fake_model.names()
    assert len(names) == 7
    assert names.count("analyst") == 2
    assert names[-1] == "answer"
    # The middle layer sees the first layer's answers.
    second = [r for r in fake_model.requests if r["metadata"]["composite_call"] == "analyst"][1]
    assert "fake answer" in second["messages"][0]["content"]


# -- errors --------------------------------------------------------------------------------------


def test_chat_unknown_mode(dry: Path) -> None:
    result = invoke("chat", "-m", "nope", "q")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("Error: unknown mode 'nope'")
    assert "known modes: " in line
    for name in SHIPPED:
        assert name in line
    assert not Path("traces.db").exists()


def test_chat_unknown_param(dry: Path) -> None:
    result = invoke("chat", "-m", "moa", "--param", "bogus=1", "q")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "'bogus'" in line
    assert "moa-v1" in line
    assert "extra_layers" in line


def test_chat_param_of_the_wrong_type(dry: Path) -> None:
    result = invoke("chat", "-m", "moa", "--param", "extra_layers=many", "q")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "'extra_layers'" in line and "int" in line


def test_chat_malformed_param(dry: Path) -> None:
    result = invoke("chat", "-m", "moa", "--param", "extra_layers", "q")
    assert result.exit_code == 2
    assert "KEY=VALUE" in one_error_line(result)


def test_chat_unknown_profile(dry: Path) -> None:
    result = invoke("chat", "--profile", "nope", "q")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "unknown profile 'nope'" in line
    assert "dry" in line and "local" in line


def test_chat_unknown_profile_from_env(dry: Path) -> None:
    result = invoke("chat", "q", env={"COMPOSITE_PROFILE": "ghost"})
    assert result.exit_code == 1
    assert "unknown profile 'ghost'" in one_error_line(result)


def test_chat_broken_mode_prints_file_and_line() -> None:
    mine = Path("mine")
    mine.mkdir()
    (mine / "oops.yaml").write_text(
        "name: oops\nsteps:\n  - id: a\n    kind: call\n    model: strong\n    n: 3\n", encoding="utf-8"
    )
    Path("composite.yaml").write_text(DRY_CONFIG + "modes_path: [mine]\n", encoding="utf-8")
    result = invoke("chat", "-m", "oops", "q")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{Path('mine') / 'oops.yaml'}:6: steps[0].n: unknown field")
    assert "Traceback" not in result.output


def test_chat_alias_missing_from_profile_is_one_error_line() -> None:
    Path("composite.yaml").write_text(
        "profile: narrow\nprofiles:\n  narrow:\n    strong: {model: openai/gpt-4o-mini, mock_response: hi}\n",
        encoding="utf-8",
    )
    result = invoke("chat", "-m", "moa", "q")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "'fast'" in line and "narrow" in line


def test_chat_provider_error_is_one_line_without_secrets(fake_config: Path, fake_model: Any) -> None:
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()  # imported here, so its import-time log lines do not land in the result
    fake_model.default.error = litellm.AuthenticationError(
        "Incorrect API key provided: sk-abcdefghijklmnop", llm_provider="openai", model="openai/fake"
    )
    result = invoke("chat", "-m", "direct", "q")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("Error: AuthenticationError: ")
    assert "sk-abcdefghijklmnop" not in result.output
    assert "[REDACTED]" in line
    runs = db_rows(Path("traces.db"), "select status, error from runs")
    assert len(runs) == 1
    assert runs[0]["status"] == "error"
    assert "sk-abcdefghijklmnop" not in runs[0]["error"]


# -- start-up cost -------------------------------------------------------------------------------


# Commands that call no model import no LiteLLM: tests/test_startup.py checks every one.


def test_console_script_chat_is_clean_offline(dry: Path) -> None:
    """The real `composite chat` process: the answer on stdout, and no library log noise on stderr."""
    exe = Path(sys.executable).with_name("composite")
    if not exe.exists():
        pytest.skip("console script not installed")
    done = subprocess.run(
        [str(exe), "chat", "-q", "-m", "direct", "What is the capital of France?"],
        capture_output=True,
        text=True,
        cwd=dry.parent,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Paris\n"
    assert "WARNING" not in done.stderr
    assert done.stderr == ""


def test_print_help_start_time(isolated_home: Path) -> None:
    exe = Path(sys.executable).with_name("composite")
    if not exe.exists():
        pytest.skip("console script not installed")
    t0 = time.perf_counter()
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=isolated_home)
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0
    assert "chat" in done.stdout
    print(f"\n`composite --help` took {elapsed * 1000:.0f} ms")
