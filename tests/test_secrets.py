"""Secrets never reach a sink; non-secrets are never masked.

A distinct marker secret is placed in every place a secret can sit (PLACES), composite is run
with them (chat, a failing chat, `composite models`, a request through the `composite/` provider
as `composite serve` gets it), and every sink (SINKS) is searched for every marker: one test per
(place, sink) cell. The README's "Secrets" table is generated from PLACES and SINKS
(`python tests/test_secrets.py` prints it) and a test checks it matches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
MASK = "[REDACTED]"


@dataclass(frozen=True)
class Place:
    """Where a secret can sit; `marker` is the distinct secret put there."""

    where: str  # for the README
    example: str  # for the README
    masked_by: str  # for the README: the rule that keeps it out
    marker: str
    # Text that must appear in the trace database: the secret was there and was masked in place.
    evidence: str | None = None


def _marker(slug: str) -> str:
    return f"zq{slug}Secret7f3a9c"  # distinct, and not shaped like any known key


PLACES = [
    Place("a profile's `api_key`", "`api_key: ...`", "its name", _marker("ProfileApiKey"), '"api_key": "[REDACTED]"'),
    Place("a profile's `extra_headers`: `X-Api-Key`", "`X-Api-Key: ...`", "its name",
          _marker("XApiKey"), '"X-Api-Key": "[REDACTED]"'),
    Place("a profile's `extra_headers`: Azure's `api-key`", "`api-key: ...`", "its name",
          _marker("AzureApiKey"), '"api-key": "[REDACTED]"'),
    Place("a profile's `extra_headers`: `anthropic-api-key`", "`anthropic-api-key: ...`", "its name",
          _marker("AnthropicApiKey"), '"anthropic-api-key": "[REDACTED]"'),
    Place("a profile's `extra_headers`: `Authorization`", "`Authorization: Bearer ...`", "its name",
          _marker("Authorization"), '"Authorization": "[REDACTED]"'),
    Place("a profile's `extra_headers`: `Cookie`", "`Cookie: session=...`", "its name",
          _marker("Cookie"), '"Cookie": "[REDACTED]"'),
    Place("a key in a URL parameter", "`api_base: https://host/v1?key=...`", "its name (`key=`)",
          _marker("UrlKey"), "?key=[REDACTED]"),
    Place("a mode step's `params`", "`params: {api_key: ..., extra_headers: {x-api-key: ...}}`",
          "the mode is refused (a mode sets generation parameters only)", _marker("ModeParamKey")),
    Place("a provider's environment variable", "`OPENAI_API_KEY=...` quoted in a provider's error",
          "its value (names with KEY, TOKEN, SECRET, ...)", _marker("EnvOpenaiKey")),
    Place("the serve master key", "`LITELLM_MASTER_KEY=...` quoted in an error",
          "its value", _marker("MasterKey")),
    Place("a client's key in a request to `composite/<mode>` (serve, LiteLLM)",
          "`api_key=...`, `extra_headers={'X-Api-Key': ...}`", "not recorded", _marker("ClientKey")),
    Place("a secret a provider's error quotes", "`Incorrect API key provided: <profile key>`",
          "the value, seen in the profile", _marker("QuotedKey")),
]  # fmt: skip
BY_SLUG = {p.marker: p for p in PLACES}
M = {re.sub(r"^zq|Secret7f3a9c$", "", p.marker): p.marker for p in PLACES}

# Not secrets: shown as they are everywhere.
MAX_TOKENS_PROFILE = 77
MAX_TOKENS_STEP = 55
ANTHROPIC_VERSION = "2023-06-01"


# -- the world: a config, a mode, runs -----------------------------------------------------------


@dataclass
class World:
    root: Path
    config: Path
    db: Path
    cli: dict[str, Any] = field(default_factory=dict)  # command name -> Result
    log: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


CONFIG = f"""\
profile: leaky
db: traces.db
modes_path: [modes]
profiles:
  leaky:
    "*":
      model: openai/fake
      api_key: {M["ProfileApiKey"]}
      max_tokens: {MAX_TOKENS_PROFILE}
      api_base: "https://proxy.example/v1?key={M["UrlKey"]}&region=eu"
      extra_headers:
        X-Api-Key: {M["XApiKey"]}
        api-key: {M["AzureApiKey"]}
        anthropic-api-key: {M["AnthropicApiKey"]}
        Authorization: "Bearer {M["Authorization"]}"
        Cookie: "session={M["Cookie"]}"
        anthropic-version: "{ANTHROPIC_VERSION}"
  quoted:
    "*": {{model: openai/fake, api_key: {M["QuotedKey"]}}}
"""
MODE = f"""\
name: leaky
description: One call.
steps:
  - id: answer
    kind: call
    model: strong
    max_tokens: {MAX_TOKENS_STEP}
"""
KEYED_MODE = f"""\
name: keyed
description: One call whose step params carry a key.
steps:
  - id: answer
    kind: call
    model: strong
    params:
      api_key: {M["ModeParamKey"]}
      extra_headers: {{x-api-key: {M["ModeParamKey"]}}}
"""


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


def _provider_error(text: str) -> BaseException:
    from composite_cli.litellm_loader import get_litellm

    return get_litellm().AuthenticationError(text, llm_provider="openai", model="openai/fake")


def _script(name: str, messages: list[dict[str, Any]]) -> Any:
    from conftest import Reply

    text = str(messages)
    if "please fail" in text:  # a provider that quotes the keys it was given in its error
        return Reply(
            error=_provider_error(
                f"Incorrect API key provided: {M['QuotedKey']}; env {M['EnvOpenaiKey']}, "
                f"master {M['MasterKey']}, header x-api-key={M['XApiKey']}"
            )
        )
    return Reply("Paris")


def _build(root: Path) -> World:
    from typer.testing import CliRunner

    import composite_cli
    from composite_cli.cli.main import app
    from composite_cli.config import load_settings

    confdir = root / "sk-proj-composite-config-files"  # a path shaped like a key: kept
    (confdir / "modes").mkdir(parents=True)
    config = confdir / "composite.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    (confdir / "modes" / "leaky.yaml").write_text(MODE, encoding="utf-8")
    (confdir / "modes" / "keyed.yaml").write_text(KEYED_MODE, encoding="utf-8")
    world = World(root, config, confdir / "traces.db")
    cli = CliRunner()

    def run(name: str, *args: str) -> None:
        world.cli[name] = cli.invoke(app, [*args, "--config", str(config)])

    run("chat", "chat", "-m", "leaky", "Capital of France?")
    run("chat (error)", "chat", "-m", "leaky", "--profile", "quoted", "please fail")
    run("chat (keyed mode)", "chat", "-m", "keyed", "Capital of France?")
    run("models", "models")
    run("models --json", "models", "--json")
    run("models (unknown profile)", "models", "--profile", "nope")

    # A client's request as `composite serve` hands it to the provider.
    handler = composite_cli.register(settings=load_settings(config=config))
    from composite_cli.litellm_loader import get_litellm

    try:
        asyncio.run(
            get_litellm().acompletion(
                model="composite/leaky",
                messages=[{"role": "user", "content": "hi"}],
                api_key=M["ClientKey"],
                extra_headers={"X-Api-Key": M["ClientKey"], "Authorization": f"Bearer {M['ClientKey']}"},
            )
        )
        handler.runner.flush()
    finally:
        handler.runner.close()

    run("traces export", "traces", "export")
    out = confdir / "export.jsonl"
    run("traces export -o", "traces", "export", "--output", str(out))
    world.cli["traces export (file)"] = out.read_text(encoding="utf-8")
    run("traces show --json", "traces", "show", "latest", "--json")
    run("traces list --json", "traces", "list", "--json")
    conn = sqlite3.connect(world.db)
    world.run_ids = [r[0] for r in conn.execute("select id from runs order by created_at")]
    conn.close()
    for run_id in world.run_ids:
        run(f"traces show {run_id}", "traces", "show", run_id)
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from conftest import FakeModel

    import composite_cli.calls

    root = tmp_path_factory.mktemp("secrets")
    logs: list[str] = []
    collector = _Collect(logs)
    loggers = [
        logging.getLogger(n) for n in ("", "composite_cli", "LiteLLM", "LiteLLM Proxy", "LiteLLM Router")
    ]
    levels = [lg.level for lg in loggers]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(composite_cli.calls, "litellm_acompletion", FakeModel().script(_script))
        mp.setenv("OPENAI_API_KEY", M["EnvOpenaiKey"])
        mp.setenv("LITELLM_MASTER_KEY", M["MasterKey"])
        mp.setenv("HOME", str(root))
        mp.setenv("COMPOSITE_NO_WORKER", "1")
        for key in list(os.environ):
            if key.startswith("COMPOSITE_") and key != "COMPOSITE_NO_WORKER":
                mp.delenv(key)
        mp.chdir(root)
        for lg in loggers:
            lg.addHandler(collector)
            lg.setLevel(logging.DEBUG)
        try:
            world = _build(root)
            # A path held by a secret-named variable is not a secret (GOOGLE_APPLICATION_CREDENTIALS).
            mp.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(world.config))
            world.cli["models (unknown profile, credentials path set)"] = _invoke_unknown(world)
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.removeHandler(collector)
                lg.setLevel(level)
    world.log = logs
    yield world


def _invoke_unknown(world: World) -> Any:
    from typer.testing import CliRunner

    from composite_cli.cli.main import app

    return CliRunner().invoke(app, ["models", "--profile", "nope", "--config", str(world.config)])


# -- the sinks -----------------------------------------------------------------------------------


def _db_bytes(world: World) -> str:
    files = sorted(world.db.parent.glob(world.db.name + "*"))  # the file, -wal, -shm
    assert world.db in files
    return b"".join(p.read_bytes() for p in files).decode("latin-1")


def _db_dump(world: World) -> str:
    conn = sqlite3.connect(world.db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def _cli_text(*names: str) -> Callable[[World], str]:
    def read(world: World) -> str:
        texts = []
        for name, result in world.cli.items():
            if any(name == n or name.startswith(n + " ") for n in names):
                texts.append(result if isinstance(result, str) else result.output)
        assert texts, names
        return "\n".join(texts)

    return read


def _datasette(world: World) -> str:
    from datasette.app import Datasette

    from composite_cli.datasette import plugin as composite_plugin

    registered = composite_plugin.register()
    ds = Datasette([str(world.db)])
    name = world.db.stem
    conn = sqlite3.connect(world.db)
    tables = [r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view')")]
    steps = [r[0] for r in conn.execute("select id from steps")]
    conn.close()
    paths = ["/", f"/{name}"]
    for table in tables:
        paths += [f"/{name}/{table}", f"/{name}/{table}.json?_shape=array&_size=max"]
    paths += [f"/{name}/runs/{r}" for r in world.run_ids] + [f"/{name}/steps/{s}" for s in steps]
    # search: the filters Datasette offers on every text column, for every marker
    for place in PLACES:
        paths.append(f"/{name}/steps.json?_shape=array&request_json__contains={place.marker}")
        paths.append(f"/{name}/runs.json?_shape=array&error__contains={place.marker}")

    async def fetch() -> str:
        pages = []
        for path in paths:
            response = await ds.client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            pages.append(response.text)
        return "\n".join(pages)

    try:
        return asyncio.run(fetch())
    finally:
        if registered:
            composite_plugin.unregister()


@dataclass(frozen=True)
class Sink:
    name: str  # for the README
    read: Callable[[World], str]


SINKS = [
    Sink("the trace database file, with its `-wal` and `-shm`", _db_bytes),
    Sink("the trace database's SQL dump (every table)", _db_dump),
    Sink("`composite traces export` (stdout and `--output`)", _cli_text("traces export")),
    Sink("`composite traces show` (text and `--json`) and `traces list --json`", _cli_text("traces show", "traces list")),
    Sink("Datasette: every table, view, row page, JSON and column search", _datasette),
    Sink("`composite models` and `models --json`", _cli_text("models")),
    Sink("the CLI's error lines (stderr)", _cli_text("chat (error)", "chat (keyed mode)", "models (unknown profile)")),
    Sink("the CLI's answers (stdout)", _cli_text("chat")),
    Sink("logs (every logger, DEBUG level)", lambda world: "\n".join(world.log)),
]  # fmt: skip


_read_cache: dict[str, str] = {}


def sink_text(world: World, sink: Sink) -> str:
    if sink.name not in _read_cache:
        _read_cache[sink.name] = sink.read(world)
    return _read_cache[sink.name]


@pytest.mark.parametrize("sink", SINKS, ids=[s.name for s in SINKS])
@pytest.mark.parametrize("place", PLACES, ids=[p.where for p in PLACES])
def test_no_secret_reaches_any_sink(world: World, place: Place, sink: Sink) -> None:
    assert place.marker not in sink_text(world, sink)


# -- the secrets were there, and were masked in place --------------------------------------------


def test_the_runs_happened(world: World) -> None:
    assert world.cli["chat"].exit_code == 0, world.cli["chat"].output
    assert "Paris" in world.cli["chat"].stdout
    assert world.cli["chat (error)"].exit_code == 1
    assert len(world.run_ids) == 3  # the chat, the failed chat, the client's request


@pytest.mark.parametrize("place", [p for p in PLACES if p.evidence], ids=lambda p: p.where)
def test_each_secret_was_masked_where_it_was_stored(world: World, place: Place) -> None:
    assert place.evidence and place.evidence in _db_dump(world)


def test_a_mode_with_a_key_is_refused_and_the_error_masked(world: World) -> None:
    keyed = world.cli["chat (keyed mode)"]
    assert keyed.exit_code == 2 and "steps[0].params.api_key" in keyed.stderr
    error = world.cli["chat (error)"].stderr.strip()
    assert error == (
        "Error: AuthenticationError: Incorrect API key provided: "
        "[REDACTED]; env [REDACTED], master [REDACTED], header x-api-key=[REDACTED]"
    )


# -- non-secrets are never masked ----------------------------------------------------------------


def test_counts_and_versions_are_kept(world: World) -> None:
    conn = sqlite3.connect(world.db)
    requests = [json.loads(r[0]) for r in conn.execute("select request_json from steps where kind = 'llm'")]
    conn.close()
    params = [r["params"] for r in requests]
    assert any(p.get("max_tokens") == MAX_TOKENS_STEP for p in params)
    assert any(p.get("extra_headers", {}).get("anthropic-version") == ANTHROPIC_VERSION for p in params)
    models = json.loads(world.cli["models --json"].stdout)
    star = models["aliases"]["*"]
    assert star["max_tokens"] == MAX_TOKENS_PROFILE
    assert star["api_base"] == "https://proxy.example/v1?key=[REDACTED]&region=eu"
    assert f"max_tokens={MAX_TOKENS_PROFILE}" in world.cli["models"].stdout
    assert models["config"] == str(world.config)


def test_error_messages_keep_paths(world: World) -> None:
    for name in ("models (unknown profile)", "models (unknown profile, credentials path set)"):
        line = world.cli[name].stderr.strip()
        assert (
            line
            == f"Error: unknown profile 'nope' in {world.config}; known profiles: dry, leaky, local, quoted"
        )


def test_secret_names_are_decided_by_one_rule() -> None:
    from composite_cli.redact import is_secret_key

    secret = ["api_key", "X-Api-Key", "api-key", "anthropic-api-key", "Authorization", "Cookie",
              "x-goog-api-key", "Ocp-Apim-Subscription-Key", "aws_secret_access_key", "azure_ad_token",
              "apiKey", "accessToken", "client_secret", "password", "vertex_credentials",
              "OPENAI_API_KEY", "LITELLM_MASTER_KEY", "HF_TOKEN", "proxy_auth"]  # fmt: skip
    kept = ["max_tokens", "max_completion_tokens", "maxTokens", "top_logprobs", "prompt_tokens",
            "budget_tokens", "model", "api_base", "api_version", "anthropic-version", "temperature",
            "tokenizer", "eos_token", "token_type", "auth_type", "keep_alive", "keywords", "stop"]  # fmt: skip
    assert [n for n in secret if not is_secret_key(n)] == []
    assert [n for n in kept if is_secret_key(n)] == []


def test_text_redaction_masks_keys_and_keeps_paths() -> None:
    from composite_cli.redact import redact_text

    keep = [
        "unknown profile 'nope' in /tmp/sk-proj-composite-config-files/composite.yaml; known profiles: dry",
        "profiles.p.fast.api_key: must be a string",
        "max_tokens=5 top_logprobs=2",
        "--param expects KEY=VALUE, got 'x'",
    ]
    for text in keep:
        assert redact_text(text) == text
    assert redact_text("Incorrect API key provided: sk-abcdefghijklmnopqrst.") == (
        "Incorrect API key provided: [REDACTED]."
    )
    assert redact_text("{'api_key': 'abc', 'max_tokens': 5} Authorization=Bearer abcdefghijk") == (
        "{'api_key': '[REDACTED]', 'max_tokens': 5} Authorization=[REDACTED]"
    )
    assert redact_text("https://user:hunter2hunter2@host/v1") == "https://user:[REDACTED]@host/v1"


# -- the README table ----------------------------------------------------------------------------

README_START = "<!-- secret-sinks: generated from tests/test_secrets.py; run it to print -->"
README_END = "<!-- /secret-sinks -->"


def readme_table() -> str:
    lines = [
        README_START,
        "| where a secret sits | example | kept out by |",
        "|---|---|---|",
        *(f"| {p.where} | {p.example} | {p.masked_by} |" for p in PLACES),
        "",
        f"Each of these {len(PLACES)} secrets is a distinct marker in `tests/test_secrets.py`, which "
        f"looks for every one in each of these {len(SINKS)} sinks ({len(PLACES) * len(SINKS)} checks):",
        "",
        *(f"- {s.name}" for s in SINKS),
        README_END,
    ]
    return "\n".join(lines)


def test_readme_secret_table_matches_the_test() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    assert start >= 0 and end > start, "README.md has no secret-sinks table"
    assert text[start : end + len(README_END)] == readme_table(), (
        "README's secret table is stale: replace it with `python tests/test_secrets.py`"
    )


if __name__ == "__main__":
    sys.stdout.write(readme_table() + "\n")
