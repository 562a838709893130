"""Fuzzing (hypothesis): whatever comes in, the outcome is a result or a clear error, never a crash."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composite_cli.config import Profile
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.errors import BadRequest, ModeValidationError
from composite_cli.evals.dataset import EvalFileError, load_eval_file

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "modes").glob("*.yaml"))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutate(text: str, data: st.DataObject) -> str:
    """Small edits of the kinds people make: delete, duplicate or swap lines, replace a token."""
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "indent", "truncate"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap" and len(lines) > 1:
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "replace":
            token = data.draw(
                st.sampled_from(
                    [
                        "x",
                        "[]",
                        "{}",
                        "null",
                        "-1",
                        "$nope",
                        "{{ nope }}",
                        "kind: bogus",
                        "3.5",
                        "'",
                        '"',
                        ":",
                        "- ",
                        "&a",
                        "*a",
                        "\t",
                        "🧠",
                    ]
                )
            )
            cut = data.draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + token
        elif action == "indent":
            lines[i] = " " * data.draw(st.integers(1, 5)) + lines[i]
        else:
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
    return "\n".join(lines)


def assert_clear(errors: list, text: str) -> None:
    n_lines = max(1, len(text.splitlines()) + 1)
    for err in errors:
        assert err.one_line().strip() and "\n" not in err.one_line()
        assert err.line is None or 1 <= err.line <= n_lines


@FUZZ
@given(st.text(max_size=300))
def test_random_text_as_a_mode(text):
    try:
        parse_mode(text, "fuzz.yaml")
    except ModeValidationError as exc:
        assert_clear(exc.errors, text)


@FUZZ
@given(st.sampled_from(SHIPPED), st.data())
def test_mutated_shipped_modes(path, data):
    text = mutate(path.read_text(encoding="utf-8"), data)
    try:
        parse_mode(text, path.name)
    except ModeValidationError as exc:
        assert_clear(exc.errors, text)


EVAL_LINES = [
    json.dumps({"id": "a", "input": "2+2?", "expected": 4, "scorer": "numeric", "tolerance": 0.1}),
    json.dumps(
        {"input": "Capital?", "expected": ["Paris"], "scorer": "contains", "metadata": {"tags": ["geo"]}}
    ),
    json.dumps({"messages": [{"role": "user", "content": "pick"}], "expected": "B", "scorer": "choice"}),
    json.dumps(
        {
            "input": "call it",
            "expected": {"name": "f", "arguments": {}},
            "scorer": "tool_call",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        }
    ),
]


@FUZZ
@given(st.data())
def test_mutated_eval_files(tmp_path_factory, data):
    text = mutate("\n".join(EVAL_LINES), data)
    path = tmp_path_factory.mktemp("fuzz") / "e.jsonl"
    path.write_text(text, encoding="utf-8")
    for skip in (False, True):
        try:
            loaded = load_eval_file(path, skip_invalid=skip)
        except EvalFileError as exc:
            for err in exc.errors:
                assert err.one_line().startswith(str(path))
        else:
            assert all(case.messages for case in loaded.cases)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool", "wizard", ""]),
            "content": st.one_of(st.text(max_size=50), st.none(), st.integers(), JSONISH),
        },
        optional={"tool_calls": JSONISH, "tool_call_id": st.text(max_size=5), "name": st.text(max_size=5)},
    ),
    JSONISH,
)


@FUZZ
@given(
    messages=st.one_of(st.lists(MESSAGE, max_size=5), JSONISH),
    tools=st.one_of(st.none(), JSONISH, st.lists(JSONISH, max_size=3)),
    tool_choice=st.one_of(st.none(), st.sampled_from(["auto", "none", "required", "sometimes"]), JSONISH),
    params=st.one_of(
        st.just({}),
        st.dictionaries(st.sampled_from(["extra_layers", "min_success", "bogus"]), JSONISH, max_size=2),
    ),
)
def test_random_request_bodies_get_a_result_or_a_bad_request(
    fake_model, messages, tools, tool_choice, params
):
    spec = ModeLibrary().load("moa")
    profile = Profile("fuzz", {"*": {"model": "openai/fake"}})
    request = RunRequest(messages=messages, tools=tools, tool_choice=tool_choice, params=params)
    try:
        result = asyncio.run(run_mode(spec, request, profile=profile))
    except BadRequest as exc:
        assert str(exc)
    else:
        assert isinstance(result.text, str)


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from(
            ["messages", "tools", "tool_choice", "composite", "temperature", "max_tokens", "stream"]
        ),
        JSONISH,
        max_size=5,
    )
)
def test_random_bodies_through_litellm_are_results_or_4xx(fake_model, tmp_path_factory, body):
    import composite_cli
    from composite_cli.config import Settings
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    composite_cli.register(
        settings=Settings(
            profile=Profile("fuzz", {"*": {"model": "openai/fake"}}),
            db_path=tmp_path_factory.mktemp("db") / "t.db",
        )
    )
    body = {k: v for k, v in body.items() if k != "stream"}
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    try:
        litellm.completion(model="composite/direct", **body)
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if status is not None:
            assert 400 <= status < 500, (type(exc).__name__, status, str(exc)[:200])
        else:
            # Only LiteLLM's own client-side checks, before composite is reached, may fail
            # otherwise (e.g. messages=[None]); composite's own errors always carry a 4xx.
            import traceback

            frames = traceback.extract_tb(exc.__traceback__)
            assert "composite_cli" not in frames[-1].filename, traceback.format_exc()
