"""End to end on the embedded model, offline: moa-v1 through the CLI and through LiteLLM."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import composite_cli
from composite_cli.cli.main import app

pytestmark = pytest.mark.real_model


def test_moa_v1_on_the_embedded_model_through_the_cli(isolated_home: Path):
    result = CliRunner().invoke(
        app,
        [
            "chat",
            "--mode",
            "moa-v1",
            "--json",
            "--max-tokens",
            "48",
            "--param",
            "proposer_max_tokens=32",
            "Name one chess piece.",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    text = out["choices"][0]["message"]["content"]
    assert isinstance(text, str) and text.strip()
    assert out["model"] == "composite/moa-v1"
    assert out["composite"]["calls"] == 4 and out["composite"]["cost_usd"] == 0.0
    assert out["usage"]["completion_tokens"] > 0
    db = sqlite3.connect(isolated_home / "traces.db")
    rows = db.execute(
        "select name, model, status, completion_tokens from steps where kind='llm' and run_id=?",
        [out["composite"]["run_id"]],
    ).fetchall()
    assert sorted(r[0] for r in rows) == ["analyst", "answer", "skeptic", "teacher"]
    assert {r[1] for r in rows} == {"local/smollm2"} and {r[2] for r in rows} == {"ok"}
    assert all(r[3] > 0 for r in rows)


def test_moa_v1_on_the_embedded_model_through_litellm_streaming(isolated_home: Path):
    handler = composite_cli.register()
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    chunks = list(
        litellm.completion(
            model="composite/moa",
            messages=[{"role": "user", "content": "What colour are the squares of a chessboard?"}],
            stream=True,
            max_tokens=48,
            composite={"params": {"proposer_max_tokens": 32}},
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1, "the aggregator's tokens stream one by one"
    built = litellm.stream_chunk_builder(chunks)
    assert built.choices[0].message.content.strip()
    handler.runner.flush()
    db = sqlite3.connect(isolated_home / "traces.db")
    assert db.execute("select count(*) from runs where status='ok' and source='python'").fetchone()[0] == 1
