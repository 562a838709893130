"""Simon Willison's `llm` CLI against `composite serve` (issue 13: a mode is "just another model").

`llm` talks to any OpenAI-compatible server through `extra-openai-models.yaml` in its user
directory (`LLM_USER_PATH`), with the key named by `api_key_name` kept in `keys.json`. Checked with
the real `llm` command in a subprocess against `composite serve` on the built-in `dry` profile, so
nothing touches the network: a streamed answer (llm's default), `--no-stream`, `llm logs --json`
joining the logged response to composite's trace (the response id is `chatcmpl-<run_id>`), a
`-c` follow-up sending the earlier exchange, and a wrong key giving a clean 401.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_serve_e2e import Server, _env, free_port

from composite_cli.config import DRY_ANSWER

pytest.importorskip("llm", reason="the `llm` CLI is not installed (pip install -e '.[test]')")

MASTER = "sk-llm-cli-master-0a1b2c3d4e5f6a7b"
COMPOSITE = str(Path(sys.executable).with_name("composite"))
QUESTION = "Capital of France?"
FOLLOW_UP = "And of Spain?"


def extra_models(port: int) -> list[dict[str, Any]]:
    """The README's `extra-openai-models.yaml` snippet (the one a user copies), on the test's port."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    (snippet,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "model_id:" in b]
    models = yaml.safe_load(snippet)
    assert models == [
        {
            "model_id": "composite-moa",
            "model_name": "moa-v1",
            "api_base": "http://127.0.0.1:4000/v1",  # composite serve's default address
            "api_key_name": "composite",
        }
    ]
    models[0]["api_base"] = f"http://127.0.0.1:{port}/v1"
    return list(models)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """`composite serve` on `dry` with its traces DB, and an llm user directory pointing at it."""
    root = tmp_path_factory.mktemp("llm-cli")
    home = root / "home"
    home.mkdir()
    env, port = _env(home), free_port()
    env.update(LITELLM_MASTER_KEY=MASTER, COMPOSITE_PROFILE="dry", COMPOSITE_NO_WORKER="1")
    db = root / "serve.db"
    argv = [COMPOSITE, "serve", "--modes", "moa", "--port", str(port), "--db", str(db)]
    llm_dir = root / "llm"
    llm_dir.mkdir()
    (llm_dir / "extra-openai-models.yaml").write_text(yaml.safe_dump(extra_models(port)))
    (llm_dir / "keys.json").write_text(json.dumps({"composite": MASTER}))
    server = Server("serve", argv, root, env, port)
    try:
        server.wait_ready()
        yield server, db
    finally:
        server.close()


def run_llm(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """The `llm` command with its user directory in the test's tmp dir; no OpenAI key, no plugins."""
    root = server.log_path.parent
    env = _env(root / "home")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_MODEL"):
        env.pop(name, None)
    env.update(LLM_USER_PATH=str(root / "llm"), LLM_LOAD_PLUGINS="")
    return subprocess.run(
        [sys.executable, "-m", "llm", *args], env=env, capture_output=True, text=True, timeout=120
    )


def last_logged(server: Server) -> dict[str, Any]:
    done = run_llm(server, "logs", "--json", "-n", "1")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)
    return dict(entry)


def finished_run(db: Path, run_id: str) -> dict[str, Any]:
    """The run's row once its writer thread has recorded the end (the DB is written in background)."""
    deadline = time.monotonic() + 300  # a bound on waiting for the state, not a timing: generous under load
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("select * from runs where id = ?", (run_id,)).fetchone()
        if row is not None and row["status"] != "running":
            return dict(row)
        if time.monotonic() > deadline:  # a hang guard, not a measure
            pytest.fail(f"run {run_id} not recorded as finished: {row and dict(row)}")
        time.sleep(0.1)


def run_id_of(entry: dict[str, Any]) -> str:
    response_id = entry["response_json"]["id"]
    assert response_id.startswith("chatcmpl-"), response_id
    return str(response_id.removeprefix("chatcmpl-"))


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "no-stream"])
def test_llm_answers_and_its_log_finds_the_run(served: tuple[Server, Path], stream: bool):
    server, db = served
    args = ["-m", "composite-moa", QUESTION] + ([] if stream else ["--no-stream"])
    done = run_llm(server, *args)
    assert (done.returncode, done.stdout.strip()) == (0, DRY_ANSWER), done.stderr
    entry = last_logged(server)
    assert (entry["model"], entry["prompt"], entry["response"]) == ("composite-moa", QUESTION, DRY_ANSWER)
    run_id = run_id_of(entry)
    run = finished_run(db, run_id)
    assert (run["source"], run["mode"], run["status"], run["input"], run["output"]) == (
        "serve",
        "moa-v1",
        "ok",
        QUESTION,
        DRY_ANSWER,
    )
    # llm logs the usage it was sent; a streamed log keeps only the first chunk's id, model and
    # the summed usage, a non-streamed one the whole body, composite block included
    assert entry["input_tokens"] == run["prompt_tokens"]
    assert entry["output_tokens"] == run["completion_tokens"]
    if not stream:
        assert entry["response_json"]["composite"]["run_id"] == run_id


def test_llm_continue_sends_the_earlier_exchange(served: tuple[Server, Path]):
    server, db = served
    first = run_llm(server, "-m", "composite-moa", QUESTION)
    assert first.returncode == 0, first.stderr
    done = run_llm(server, "-c", FOLLOW_UP)
    assert (done.returncode, done.stdout.strip()) == (0, DRY_ANSWER), done.stderr
    entry = last_logged(server)
    assert (entry["model"], entry["prompt"]) == ("composite-moa", FOLLOW_UP)
    run_id = run_id_of(entry)
    assert finished_run(db, run_id)["input"] == FOLLOW_UP
    with sqlite3.connect(db) as conn:
        requests = [
            json.loads(r[0])
            for r in conn.execute(
                "select request_json from steps where run_id = ? and kind = 'llm'", (run_id,)
            )
        ]
    assert requests, "the follow-up run made no model call"
    for request in requests:  # every internal call saw the whole conversation, in order
        said = [(m["role"], m["content"]) for m in request["messages"] if m["role"] != "system"]
        assert said[:3] == [("user", QUESTION), ("assistant", DRY_ANSWER), ("user", FOLLOW_UP)]


def test_llm_with_a_wrong_key_gets_a_clean_401(served: tuple[Server, Path]):
    server, _ = served
    done = run_llm(server, "-m", "composite-moa", "--key", "sk-wrong-0123456789", QUESTION)
    assert done.returncode != 0
    assert "401" in done.stderr and "Traceback" not in done.stderr, done.stderr
