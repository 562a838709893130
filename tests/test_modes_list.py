"""`composite modes list`: modes grouped by their `group:`, with the model calls one request makes
(from the steps' fields and the default parameters) and the aliases each uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.engine.spec import MODE_GROUPS, CallRange, parse_mode
from composite_cli.errors import ModeValidationError


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def calls(text: str, **overrides: object) -> CallRange:
    return parse_mode(text).expected_calls(overrides)


def test_call_counts_follow_the_steps_fields() -> None:
    one = "name: a\nsteps:\n  - {id: x, kind: call, model: strong}\n"
    assert calls(one) == CallRange(1, 1) and str(calls(one)) == "1"
    fanout = (
        "name: a\nparams: {n: 5}\nsteps:\n"
        "  - {id: s, kind: fanout, model: fast, n: $n}\n"
        "  - {id: v, kind: vote, from: s}\n"  # a majority vote calls no model
    )
    assert calls(fanout) == CallRange(5, 5)
    assert calls(fanout, n=9) == CallRange(9, 9)  # a request's parameters count
    experts = (
        "name: a\nsteps:\n  - id: s\n    kind: fanout\n    experts: [{name: x, model: f}, {name: y, model: g}]\n"
        "  - {id: t, kind: synthesize, from: s, model: strong}\n"
    )
    assert calls(experts) == CallRange(3, 3)
    loop = (
        "name: a\nparams: {rounds: 3}\nsteps:\n  - {id: d, kind: call, model: strong}\n"
        "  - id: l\n    kind: loop\n    max_rounds: $rounds\n    steps:\n"
        "      - {id: c, kind: reflect, draft: d, model: judge}\n"
        "      - id: f\n        kind: if\n        when: not c.ok\n        then:\n"
        "          - {id: r, kind: call, model: strong, updates: d}\n"
    )
    # draft, then 1 to 3 rounds of a critique and perhaps a rewrite
    assert calls(loop) == CallRange(2, 7)
    assert str(calls(loop)) == "2–7"
    assert calls(loop, rounds=0) == CallRange(1, 1)
    tools = "name: a\nsteps:\n  - {id: x, kind: call, model: strong, tools: [think], max_tool_rounds: 4}\n"
    assert calls(tools) == CallRange(1, 5)
    rlm = "name: a\nlimits: {max_calls: 100}\nsteps:\n  - {id: x, kind: rlm, model: root, max_calls: 70}\n"
    assert calls(rlm) == CallRange(1, 70)
    capped = "name: a\nlimits: {max_calls: 30}\nsteps:\n  - {id: x, kind: rlm, model: root, max_calls: 70}\n"
    assert calls(capped) == CallRange(1, 30)  # the mode's own limit caps the count (default 50)


def test_group_is_checked_and_defaults_to_other() -> None:
    assert parse_mode("name: a\nsteps:\n  - {id: x, kind: call, model: s}\n").group == "other"
    spec = parse_mode("name: a\ngroup: ensemble\nsteps:\n  - {id: x, kind: call, model: s}\n")
    assert spec.group == "ensemble"
    with pytest.raises(ModeValidationError) as exc:
        parse_mode("name: a\ngroup: ensembles\nsteps:\n  - {id: x, kind: call, model: s}\n", "a.yaml")
    line = exc.value.errors[0].one_line()
    assert line.startswith("a.yaml:2: group: 'ensembles' is not a group (groups: single-call, ensemble")
    for bad in ("''", "[ensemble]", "3"):
        with pytest.raises(ModeValidationError) as exc:
            parse_mode(f"name: a\ngroup: {bad}\nsteps:\n  - {{id: x, kind: call, model: s}}\n", "a.yaml")
        assert exc.value.errors[0].one_line().startswith("a.yaml:2: group: "), bad


SHIPPED_GROUPS = {
    "direct": "single-call",
    "moa-v1": "ensemble",
    "moa-reflect-v1": "ensemble",
    "reflect-v1": "refinement",
    "think-v1": "tools",
    "think-step-v1": "tools",
    "rlm-v1": "long-context",
}


def test_modes_list_json_has_group_calls_and_aliases(isolated_home: Path) -> None:
    result = invoke("modes", "list", "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    rows = json.loads(result.stdout)  # type: ignore[attr-defined]
    by_name = {r["name"]: r for r in rows}
    for name, group in SHIPPED_GROUPS.items():
        assert by_name[name]["group"] == group
    assert by_name["direct"]["calls"] == {"least": 1, "most": 1}
    assert by_name["moa-v1"]["calls"] == {"least": 4, "most": 4}  # 3 proposers and an aggregator
    assert by_name["reflect-v1"]["calls"] == {"least": 2, "most": 5}  # draft + 2 x (critique, rewrite)
    assert by_name["think-v1"]["calls"] == {"least": 1, "most": 5}  # 4 think rounds
    assert by_name["rlm-v1"]["calls"] == {"least": 1, "most": 400}  # the rlm step's max_calls
    assert by_name["moa-v1"]["aliases"] == ["fast", "strong"]
    order = list(MODE_GROUPS)
    keys = [(order.index(r["group"]), r["name"]) for r in rows]
    assert keys == sorted(keys)


def test_modes_list_text_groups_modes_under_headings(isolated_home: Path, tmp_path: Path) -> None:
    mine = Path("mine")
    mine.mkdir()
    (mine / "mine-v1.yaml").write_text(
        "name: mine-v1\ndescription: Mine.\nsteps:\n  - {id: a, kind: call, model: strong}\n",
        encoding="utf-8",
    )
    Path("composite.yaml").write_text("modes_path: mine\n", encoding="utf-8")
    result = invoke("modes", "list")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    lines = result.stdout.splitlines()  # type: ignore[attr-defined]
    headings = [line for line in lines if not line.startswith(" ")]
    assert headings == ["single call:", "ensembles:", "refinement:", "tools:", "long context:", "other:"]

    def under(heading: str) -> list[str]:
        start = lines.index(heading) + 1
        block = []
        for line in lines[start:]:
            if not line.startswith(" "):
                break
            block.append(line.split()[0])
        return block

    assert {"moa-reflect-v1", "moa-v1"} <= set(under("ensembles:"))
    assert "mine-v1" in under("other:")  # no `group:`
    assert under("single call:") == sorted(under("single call:"))
    moa = next(line for line in lines if line.strip().startswith("moa-v1"))
    assert "(moa)" in moa and "4 calls" in moa and "[fast, strong]" in moa
    assert "1–400 calls" in next(line for line in lines if line.strip().startswith("rlm-v1"))
    assert "1 call " in next(line for line in lines if line.strip().startswith("direct"))


def test_a_switch_counts_the_case_its_parameter_picks() -> None:
    text = (
        "name: a\nparams: {preset: quality}\nsteps:\n  - id: s\n    kind: switch\n    param: preset\n"
        "    cases:\n      quality: [{id: q, kind: fanout, model: strong, n: 3}]\n"
        "      budget: [{id: b, kind: call, model: fast}]\n"
        "  - {id: t, kind: synthesize, from: s, model: strong}\n"
    )
    assert calls(text) == CallRange(4, 4)
    assert calls(text, preset="budget") == CallRange(2, 2)


class Unbounded:
    """A step kind that counts its own calls and has no upper bound of its own."""

    kind = "custom"

    def expected_calls(self, params: object) -> tuple[int, None]:
        return 2, None

    def children(self) -> list[list[object]]:
        return []


def test_a_kind_without_a_bound_is_capped_by_the_modes_max_calls() -> None:
    spec = parse_mode("name: a\nlimits: {max_calls: 12}\nsteps:\n  - {id: x, kind: call, model: s}\n")
    spec.steps = [Unbounded()]  # type: ignore[list-item]
    assert spec.expected_calls() == CallRange(2, 12)


def test_reflect_v1_states_the_negative_result_where_modes_are_listed() -> None:
    """Issue 15: intrinsic self-correction lowers accuracy on math (Huang et al. 2024); a user
    choosing a mode sees it in `modes list`, not only in the README."""
    from typer.testing import CliRunner

    from composite_cli.cli.main import app

    line = next(
        line
        for line in CliRunner().invoke(app, ["modes", "list"]).stdout.splitlines()
        if line.strip().startswith("reflect-v1 (")
    )
    assert "lower accuracy on math" in line and "Huang et al. 2024" in line
