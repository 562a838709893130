"""Step kinds declare their fields once (composite_cli/engine/steps/fields.py): the allowed keys,
type and bound checks, `modes show`'s summary and the README's table all come from the
declaration. Kinds, scorers and tools share one registry helper, and a kind may come from a
dotted path the user allowed."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from composite_cli.dotted import Registry
from composite_cli.engine.registry import STEP_KINDS, known_kinds, step_kind
from composite_cli.engine.spec import ParamRef, parse_mode
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.fields import Decl, declared_fields, number, text, yaml_keys
from composite_cli.engine.values import TextValue
from composite_cli.errors import ModeValidationError
from composite_cli.evals.scorers import SCORERS
from composite_cli.tools import BUILTIN_TOOLS

README = Path(__file__).resolve().parent.parent / "README.md"

# The least each kind needs; `d` is an earlier call step for the kinds that read one.
MINIMAL: dict[str, dict[str, Any]] = {
    "best_of": {"model": "m", "judge_model": "j"},
    "call": {"model": "m"},
    "debate": {"model": "m", "n": 2},
    "fanout": {"model": "m", "n": 2},
    "if": {"when": "true", "then": [{"id": "inner", "kind": "call", "model": "m"}]},
    "judge": {"from": "d", "model": "m"},
    "loop": {"steps": [{"id": "inner", "kind": "call", "model": "m"}]},
    "reflect": {"draft": "d", "model": "m"},
    "rlm": {"model": "m"},
    "switch": {"param": "p", "cases": {"a": [{"id": "inner", "kind": "call", "model": "m"}]}},
    "synthesize": {"from": "d", "model": "m"},
    "vote": {"from": "d"},
}


def yaml_mode(kind: str, extra: dict[str, Any], k: int = 2) -> Any:
    import yaml

    step = {"id": "s", "kind": kind, **MINIMAL.get(kind, {}), **extra}
    doc = {
        "name": "x",
        "params": {"k": k, "p": "a"},
        "steps": [{"id": "d", "kind": "call", "model": "m"}, step],
    }
    return parse_mode(yaml.safe_dump(doc, sort_keys=False))


def problems(kind: str, extra: dict[str, Any]) -> list[str]:
    with pytest.raises(ModeValidationError) as info:
        yaml_mode(kind, extra)
    return [e.one_line() for e in info.value.errors]


def test_every_built_in_kind_has_a_minimal_example() -> None:
    assert set(MINIMAL) == set(known_kinds())
    for kind in known_kinds():
        spec = yaml_mode(kind, {})
        assert spec.steps[-1].kind == kind


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_allowed_keys_are_the_declared_ones(kind: str) -> None:
    [line] = problems(kind, {"colour": "red"})
    allowed = line.split("allowed: ")[1].rstrip(")").split(", ")
    assert set(allowed) == yaml_keys(STEP_KINDS[kind])


def bounded_fields() -> list[tuple[str, str, Decl]]:
    out = []
    for kind in sorted(MINIMAL):
        for _, decl in declared_fields(STEP_KINDS[kind]):
            for d in (*decl.group, decl):
                if d.type in ("integer", "number") and (d.minimum is not None or d.maximum is not None):
                    out.append((kind, d.key, d))
    return out


@pytest.mark.parametrize(
    ("kind", "key", "decl"), [pytest.param(k, key, d, id=f"{k}.{key}") for k, key, d in bounded_fields()]
)
def test_declared_bounds_are_enforced(kind: str, key: str, decl: Decl) -> None:
    """Each bound in a declaration is checked, with its field in the message."""
    # a vote calls a model (and has call fields) only as a judge
    judge = {"method": "judge", "model": "j"} if kind == "vote" and decl in _call_group() else {}
    if decl.minimum is not None:
        below = decl.minimum - 1
        [line] = [p for p in problems(kind, {**judge, key: below}) if f"steps[1].{key}:" in p]
        assert f"must be at least {decl.minimum:g}" in line
    if decl.maximum is not None:
        above = decl.maximum + 1
        [line] = [p for p in problems(kind, {**judge, key: above}) if f"steps[1].{key}:" in p]
        assert f"must be at most {decl.maximum:g}" in line


@pytest.mark.parametrize(
    ("kind", "decl"),
    [(k, d) for k in sorted(MINIMAL) for _, d in declared_fields(STEP_KINDS[k]) if d.type == "integer"],
)
def test_declared_integers_take_a_parameter_but_not_a_fraction(kind: str, decl: Decl) -> None:
    key = decl.key
    spec = yaml_mode(kind, {key: "$k"}, k=max(2, int(decl.minimum or 0)))
    step = spec.steps[-1]
    assert ParamRef("k") in vars(step).values()
    assert "k" in spec.integer_params
    assert any(f"steps[1].{key}: must be an integer" in p for p in problems(kind, {key: 1.5}))


def test_every_kind_and_field_has_one_line_of_doc() -> None:
    for kind in known_kinds():
        cls = STEP_KINDS[kind]
        assert cls.__doc__ and cls.__doc__.strip(), kind
        for attr, decl in declared_fields(cls):
            assert decl.doc and "\n" not in decl.doc, f"{kind}.{attr}"


def test_summary_comes_from_the_declaration() -> None:
    spec = yaml_mode("loop", {"max_rounds": "$k", "until": "round >= 2", "output": "inner"})
    assert spec.steps[-1].summary() == "max_rounds=$k until='round >= 2' output=inner"
    spec = yaml_mode("rlm", {"sub_model": "small", "max_calls": 9})
    assert spec.steps[-1].summary() == (
        "root=m sub=small max_iterations=12 max_depth=1 max_calls=9 fallback_after=2"
    )
    assert yaml_mode("vote", {}).steps[-1].summary() == "from=d method=majority"
    assert yaml_mode("vote", {"method": "judge", "model": "j"}).steps[-1].summary() == (
        "from=d method=judge model=j"
    )


def test_a_choice_names_its_values() -> None:
    assert any(
        "steps[1].context: must be input (the last user message) or conversation, got 'all'" in p
        for p in problems("rlm", {"context": "all"})
    )


def test_kinds_scorers_and_tools_share_one_registry_helper() -> None:
    assert isinstance(STEP_KINDS, Registry)
    assert isinstance(SCORERS, Registry)
    assert isinstance(BUILTIN_TOOLS, Registry)
    assert STEP_KINDS.names() == known_kinds()
    assert set(BUILTIN_TOOLS) == {"think", "calculator", "python"}


# A kind written outside composite: one dataclass, one file. Not registered by name (that would
# change every other test's kinds); a mode names it by dotted path.
@dataclass(eq=False)
class ShoutStep(Step):
    """Says its text in capitals."""

    words: str = text("what to say", required=True, show=True)
    times: int | ParamRef = number("how often", 1, integer=True, minimum=1, maximum=3, show=True)
    volume: float = number("how loud, fixed in the file", 1.0, minimum=0.0, param=False)

    async def run(self, rt: Any) -> TextValue:
        return TextValue(" ".join([self.words.upper()] * int(rt.resolve(self.times))))


class NotAStep:
    pass


class NotADataclass(ShoutStep):
    extra: int = number("declared, but this class is no dataclass", 1)


def plugin_mode(kind: str, extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        name: p
        steps:
          - id: s
            kind: {kind}
            words: hi
        {extra}"""
    )


def test_a_kind_from_a_dotted_path_the_user_allowed() -> None:
    spec = parse_mode(plugin_mode(f"{__name__}:ShoutStep"), allow_code=[__name__])
    [step] = spec.steps
    assert isinstance(step, ShoutStep)
    assert step.summary() == "words=hi times=1"
    with pytest.raises(ModeValidationError) as info:
        parse_mode(plugin_mode(f"{__name__}:ShoutStep", "    times: 4\n"), "p.yaml", allow_code=[__name__])
    assert [e.one_line() for e in info.value.errors] == ["p.yaml:6: steps[0].times: must be at most 3, got 4"]
    # a field declared param=False takes no $parameter
    with pytest.raises(ModeValidationError) as info:
        parse_mode(
            plugin_mode(f"{__name__}:ShoutStep", "    volume: $v\n").replace(
                "name: p", "name: p\nparams: {v: 2}"
            ),
            "p.yaml",
            allow_code=[__name__],
        )
    assert [e.one_line() for e in info.value.errors] == [
        "p.yaml:7: steps[0].volume: must be a number here, not a $parameter"
    ]


@pytest.mark.parametrize(
    ("kind", "allow", "message"),
    [
        (f"{__name__}:ShoutStep", [], "names Python code, and a data file may not choose code to run"),
        ("no_such_module_xyz:Kind", ["no_such_module_xyz"], "cannot import 'no_such_module_xyz'"),
        (f"{__name__}:NotAStep", [__name__], "is not a Step subclass"),
        (f"{__name__}:Missing", [__name__], "has no function 'Missing'"),
        (f"{__name__}:NotADataclass", [__name__], "must be a @dataclass(eq=False)"),
    ],
)
def test_a_bad_dotted_kind_is_one_line(kind: str, allow: list[str], message: str) -> None:
    with pytest.raises(ModeValidationError) as info:
        parse_mode(plugin_mode(kind), "p.yaml", allow_code=allow)
    [error] = info.value.errors
    assert error.one_line().startswith("p.yaml:4: steps[0].kind: ")
    assert message in error.message
    assert "\n" not in error.one_line()


def test_step_kind_refuses_a_class_that_is_not_a_dataclass() -> None:
    with pytest.raises(TypeError, match=r"must be a @dataclass\(eq=False\)"):
        step_kind("not_a_dataclass")(NotADataclass)
    assert "not_a_dataclass" not in STEP_KINDS


def test_step_kind_refuses_a_second_kind_under_a_taken_name() -> None:
    with pytest.raises(ValueError, match="registered twice"):

        @step_kind("call")
        @dataclass(eq=False)
        class SecondCall(Step):
            async def run(self, rt: Any) -> TextValue:
                return TextValue("")

    assert STEP_KINDS["call"].__name__ == "CallStep"


def test_every_declared_field_is_in_the_readme_table() -> None:
    """The README's table used to be written by hand and had drifted (no `description`, which
    every step accepts; no defaults; a judge vote's call fields). Now it is generated; this
    checks the generated table names every field of every kind."""
    text_ = README.read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line for line in text_.splitlines() if line.startswith("| `")}
    # the fields every step has: a line before the table (the hand-written one said them in its header)
    common = " ".join(line for line in text_.splitlines() if line.startswith(("Every step has", "| kind |")))
    every = {d.key for _, d in declared_fields(Step)}
    for kind in known_kinds():
        row = rows[kind]
        for key in yaml_keys(STEP_KINDS[kind]) - {"id", "kind"}:
            if key in every:
                assert f"`{key}`" in common, key
            elif kind == "call" or key not in {d.key for d in _call_group()}:
                assert f"`{key}`" in row, f"{kind}.{key}"


def _call_group() -> tuple[Decl, ...]:
    from composite_cli.engine.steps.call_settings import CALL_GROUP

    return CALL_GROUP


# `composite modes show` of the shipped modes before the kinds were declarative (hand-written
# summary() per kind): the declarations must say the same; a pattern is quoted as the file writes it
# (it was repr: '\\bNO ISSUES\\b' for the file's '\bNO ISSUES\b').
SHIPPED_SUMMARIES = {
    "direct": ["answer (call) model=strong"],
    "moa-reflect-v1": [
        "proposals (fanout) experts: analyst(fast), teacher(fast), skeptic(fast); min_success=$min_success",
        "draft (synthesize) from=proposals model=strong",
        "refine (loop) max_rounds=1 output=draft",
        "critique (reflect) draft=draft model=judge ok_when='\\bNO ISSUES\\b'",
        "fix (if) when='not critique.ok'",
        "rewrite (call) model=strong",
    ],
    "moa-v1": [
        "proposals (fanout) experts: analyst(fast), teacher(fast), skeptic(fast); min_success=$min_success",
        "layers (loop) max_rounds=$extra_layers",
        "refined (fanout) experts: analyst(fast), teacher(fast), skeptic(fast); min_success=$min_success",
        "answer (synthesize) from=proposals model=strong",
    ],
    "reflect-v1": [
        "draft (call) model=strong",
        "refine (loop) max_rounds=$max_rounds until='critique.ok' output=draft",
        "critique (reflect) draft=draft model=judge ok_when='\\bNO ISSUES\\b'",
        "fix (if) when='not critique.ok'",
        "rewrite (call) model=strong",
    ],
    "rlm-v1": [
        "answer (rlm) root=root sub=sub max_iterations=$max_iterations max_depth=$max_depth "
        "max_calls=$max_calls fallback_after=$fallback_after"
    ],
    "think-step-v1": [
        "notes (if) when=\"last_role == 'tool'\"",
        "analysis (call) model=judge",
        "condensed (call) model=judge",
        "answer (call) model=strong",
    ],
    "think-v1": ["answer (call) model=strong"],
}


@pytest.mark.parametrize("name", sorted(SHIPPED_SUMMARIES))
def test_modes_show_says_what_it_said_before(name: str) -> None:
    from composite_cli.engine.library import ModeLibrary

    spec = ModeLibrary().load(name)
    lines = [f"{s.id} ({s.kind}) {s.summary()}".rstrip() for s in spec.walk()]
    assert lines == SHIPPED_SUMMARIES[name]
