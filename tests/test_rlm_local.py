"""rlm-v1 on the embedded model, end to end: a fact stated once in a ~35 kB document.

Correctness and the path that answered are checked, never the time (benchmarks/rlm_local.py
measures that). `fallback_after=0` makes the path certain: SmolLM2 as the root rarely writes
code that runs, and a test must not depend on when it happens to.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from composite_cli.config import load_settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.runner import Runner

pytestmark = pytest.mark.real_model

_BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "rlm_local.py"


def _make_case(seed: int):
    spec = importlib.util.spec_from_file_location("rlm_local_bench", _BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.make_case(seed)


async def test_the_embedded_model_finds_the_default_port_in_a_35_kb_document(tmp_path):
    case = _make_case(1)  # "The default port is 8443." at 30% depth of 34,734 characters
    assert 30_000 <= len(case.text) <= 60_000 and case.text.count(case.expected) == 1
    runner = Runner(load_settings(profile="local", db=tmp_path / "t.db"))
    try:
        result = await runner.run(
            "rlm-v1",
            RunRequest(messages=[{"role": "user", "content": case.text}], params={"fallback_after": 0}),
        )
        runner.flush()
        assert case.expected in result.text and result.status == "ok"
        assert result.notes["rlm"]["path"] == "fallback"
        steps = runner.store.run_steps(result.run_id)
        repl = [s["name"] for s in steps if s["kind"] == "repl"]
        assert repl == ["fallback: findings", "fallback: answer"]
        notes = next(s["scratchpad"] for s in steps if s["kind"] == "rlm")
        assert "path: fallback (fallback_after is 0)" in notes
    finally:
        runner.close()
