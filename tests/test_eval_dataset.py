"""Eval files: every bad line is reported as `file:line: message`; shipped sets load cleanly."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from composite_cli.evals.dataset import EvalCase, EvalFileError, EvalLineError, load_eval_file
from composite_cli.evals.scorers import custom, get_scorer

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "evals").glob("*.jsonl"))

GOOD = {"id": "ok", "input": "2+2?", "expected": 4, "scorer": "numeric"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def write(tmp_path: Path, *lines: Any, name: str = "set.jsonl") -> Path:
    """Write lines (dicts as JSON, strings as they are) to a JSONL file."""
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def errors_of(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(EvalFileError) as info:
        load_eval_file(path, **kwargs)
    assert str(info.value) == "\n".join(e.one_line() for e in info.value.errors)
    return [e.one_line() for e in info.value.errors]


# Each: a bad line (line 2 of the file, after a good one) and the exact message reported for it.
BAD_LINES: list[tuple[str, Any, str]] = [
    (
        "bad_json",
        '{"id": "x", "input": "q",}',
        "invalid JSON: Expecting property name enclosed in double quotes (column 26)",
    ),
    ("not_object", '["input", "q"]', "a case must be a JSON object, got a list"),
    (
        "missing_input",
        {"id": "x", "expected": "a"},
        'missing input: give "input" (a string) or "messages" (a chat list)',
    ),
    (
        "both_inputs",
        {"id": "x", "input": "q", "messages": [{"role": "user", "content": "q"}], "expected": "a"},
        'give either "input" or "messages", not both',
    ),
    ("input_not_string", {"id": "x", "input": ["q"], "expected": "a"}, "input must be a string, got a list"),
    ("input_empty", {"id": "x", "input": "  ", "expected": "a"}, "input is empty"),
    ("messages_empty", {"id": "x", "messages": [], "expected": "a"}, "messages must be a non-empty list"),
    (
        "messages_bad_role",
        {"id": "x", "messages": [{"role": "human", "content": "q"}], "expected": "a"},
        "messages[0].role must be one of assistant, developer, function, system, tool, user, got 'human'",
    ),
    (
        "messages_no_content",
        {"id": "x", "messages": [{"role": "user"}], "expected": "a"},
        "messages[0] (user) has no content",
    ),
    (
        "messages_end_with_assistant",
        {
            "id": "x",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "expected": "a",
        },
        "messages must end with a user or tool message, not assistant",
    ),
    (
        "messages_tool_result_without_call",
        {
            "id": "x",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "tool", "tool_call_id": "c9", "content": "{}"},
            ],
            "expected": "a",
        },
        "messages[1] is a tool result for 'c9', which no earlier message called",
    ),
    (
        "tools_not_list",
        {"id": "x", "input": "q", "expected": "a", "tools": {"name": "f"}},
        "tools must be a list",
    ),
    (
        "tool_choice_bad",
        {"id": "x", "input": "q", "expected": "a", "tools": [WEATHER_TOOL], "tool_choice": "always"},
        "tool_choice must be auto, none, required or a function, got 'always'",
    ),
    (
        "metadata_not_object",
        {"id": "x", "input": "q", "expected": "a", "metadata": ["easy"]},
        "metadata must be an object, got a list",
    ),
    (
        "tags_not_strings",
        {"id": "x", "input": "q", "expected": "a", "metadata": {"tags": ["a", 1]}},
        "metadata.tags must be a list of strings",
    ),
    (
        "tags_not_list",
        {"id": "x", "input": "q", "expected": "a", "metadata": {"tags": "a"}},
        "metadata.tags must be a list of strings",
    ),
    (
        "id_wrong_type",
        {"id": 1.5, "input": "q", "expected": "a"},
        "id must be a string or an integer, got a number",
    ),
    (
        "id_bool",
        {"id": True, "input": "q", "expected": "a"},
        "id must be a string or an integer, got a boolean",
    ),
    ("id_empty", {"id": "", "input": "q", "expected": "a"}, "id is empty"),
    ("duplicate_id", {"id": "ok", "input": "q", "expected": "a"}, "duplicate id 'ok' (first on line 1)"),
    (
        "unknown_scorer",
        {"id": "x", "input": "q", "expected": "a", "scorer": "fuzzy"},
        "unknown scorer 'fuzzy' (built-ins: choice, contains, exact, json, judge, numeric, regex, tool_call; "
        "or give package.module:function)",
    ),
    (
        "scorer_not_string",
        {"id": "x", "input": "q", "expected": "a", "scorer": ["exact"]},
        "scorer must be a string, got a list",
    ),
    (
        "custom_scorer_not_allowed",
        {"id": "x", "input": "q", "expected": "a", "scorer": "os:system"},
        "scorer: 'os:system' names Python code, and a data file may not choose code to run; if you "
        "trust it, allow its module: --allow-code os, or allow_code: [os] in your config",
    ),
    (
        "nested_too_deeply",
        {"id": "x", "input": "q", "expected": "a", "metadata": {"deep": json.loads("[" * 99 + "]" * 99)}},
        "nested deeper than 100 levels (the limit for an eval line)",
    ),
    (
        "number_too_long",
        '{"id": "x", "input": "q", "expected": ' + "1" * 5000 + "}",
        "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits",
    ),
    (
        "numeric_needs_number",
        {"id": "x", "input": "q", "expected": "23", "scorer": "numeric"},
        "scorer 'numeric': expected must be a number, got '23'",
    ),
    (
        "numeric_bad_tolerance",
        {"id": "x", "input": "q", "expected": 23, "scorer": "numeric", "tolerance": -1},
        "scorer 'numeric': tolerance must be a non-negative number, got -1",
    ),
    (
        "choice_letter_out_of_range",
        {"id": "x", "input": "q", "expected": "C", "scorer": "choice", "choices": ["Yes", "No"]},
        "scorer 'choice': expected must be one of the letters A, B, got 'C'",
    ),
    (
        "tool_call_shape",
        {"id": "x", "input": "q", "expected": {"name": "get_weather"}, "scorer": "tool_call"},
        'scorer \'tool_call\': expected must be {"name": "<tool>", "arguments": {...}}',
    ),
    (
        "tool_call_not_offered",
        {
            "id": "x",
            "input": "q",
            "tools": [WEATHER_TOOL],
            "expected": {"name": "get_time", "arguments": {}},
            "scorer": "tool_call",
        },
        "expected tool 'get_time' is not among the tools offered (get_weather)",
    ),
    (
        "regex_bad_pattern",
        {"id": "x", "input": "q", "expected": "a", "scorer": "regex", "pattern": "(a"},
        "scorer 'regex': invalid pattern '(a': missing ) at position 2",
    ),
    (
        "json_needs_fields",
        {"id": "x", "input": "q", "expected": ["a"], "scorer": "json"},
        "scorer 'json': expected must be a non-empty object of field -> value",
    ),
    (
        "exact_needs_expected",
        {"id": "x", "input": "q"},
        "scorer 'exact': expected must be a string or a non-empty list of strings",
    ),
    (
        "option_of_another_scorer",
        {"id": "x", "input": "q", "expected": ["a"], "scorer": "contains", "tolerance": 0.1},
        "unknown key 'tolerance' (it is an option of numeric, not of contains)",
    ),
    (
        "misspelled_key",
        {"id": "x", "input": "q", "expected": "a", "metdata": {}},
        "unknown key 'metdata' (did you mean 'metadata'?)",
    ),
    ("unknown_key", {"id": "x", "input": "q", "expected": "a", "weight": 2}, "unknown key 'weight'"),
]


@pytest.mark.parametrize(
    ("line", "message"), [(b[1], b[2]) for b in BAD_LINES], ids=[b[0] for b in BAD_LINES]
)
def test_bad_line_is_reported_with_file_and_line(tmp_path: Path, line: Any, message: str) -> None:
    path = write(tmp_path, GOOD, line)
    assert errors_of(path) == [f"{path}:2: {message}"]


def test_every_problem_of_every_line_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "{oops",
        GOOD,
        {"id": "ok", "input": "q", "expected": "a", "metadata": 3, "colour": "red"},
        "",
        {"input": "q", "expected": "x", "scorer": "numeric"},
    )
    assert errors_of(path) == [
        f"{path}:1: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:3: duplicate id 'ok' (first on line 2)",
        f"{path}:3: metadata must be an object, got a number",
        f"{path}:3: unknown key 'colour'",
        f"{path}:5: scorer 'numeric': expected must be a number, got 'x'",
    ]


def test_skip_invalid_returns_valid_cases_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, {"id": "bad", "input": 3, "expected": "a"}, {"input": "q", "expected": "a"})
    loaded = load_eval_file(path, skip_invalid=True)
    assert [c.id for c in loaded.cases] == ["ok", "line-3"]
    assert loaded.errors == [EvalLineError(str(path), 2, "input must be a string, got a number")]


def test_skip_invalid_with_no_valid_case_still_raises(tmp_path: Path) -> None:
    path = write(tmp_path, {"id": "bad", "input": 3, "expected": "a"})
    assert errors_of(path, skip_invalid=True) == [
        f"{path}:1: input must be a string, got a number",
        f"{path}: no valid cases",
    ]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    assert errors_of(empty) == [f"{empty}: no cases (the file is empty)"]
    missing = tmp_path / "missing.jsonl"
    assert errors_of(missing) == [f"{missing}: cannot read the file: No such file or directory"]


def test_bad_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"input": "caf\xe9", "expected": "a"}\n')
    assert errors_of(path) == [f"{path}:2: not valid UTF-8 (byte 15 of the line: invalid continuation byte)"]


def test_generated_ids_sha256_and_case_fields(tmp_path: Path) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "Last question"}]},
    ]
    path = write(
        tmp_path,
        {"input": "What is 2+2?", "expected": ["4", "four"]},
        "",
        {
            "id": 7,
            "messages": conversation,
            "expected": "B",
            "scorer": "choice",
            "choices": ["x", "y"],
            "metadata": {"tags": ["t1"], "difficulty": "easy"},
        },
        {
            "input": "q",
            "expected": 1,
            "scorer": "numeric",
            "tolerance": 0.5,
            "tools": [WEATHER_TOOL],
            "tool_choice": "auto",
        },
    )
    loaded = load_eval_file(str(path))
    assert loaded.path == path and loaded.errors == []
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    first, second, third = loaded.cases
    assert first == EvalCase(
        id="line-1",
        line=1,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        expected=["4", "four"],
        scorer="exact",
        options={},
    )
    assert first.tags == [] and first.metadata == {} and first.input_text == "What is 2+2?"
    assert (second.id, second.line, second.scorer, second.options) == (
        "7",
        3,
        "choice",
        {"choices": ["x", "y"]},
    )
    assert second.tags == ["t1"] and second.input_text == "Last question"
    assert second.messages == conversation
    assert (third.options, third.tools, third.tool_choice) == ({"tolerance": 0.5}, [WEATHER_TOOL], "auto")


def test_generated_id_clashing_with_an_explicit_one(tmp_path: Path) -> None:
    path = write(tmp_path, {"id": "line-2", "input": "q", "expected": "a"}, {"input": "q", "expected": "a"})
    assert errors_of(path) == [f"{path}:2: duplicate id 'line-2' (first on line 1)"]


def test_default_scorer_from_the_caller(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"input": "q", "expected": ["Paris"]},
        {"input": "q", "expected": "Paris", "scorer": "exact"},
    )
    loaded = load_eval_file(path, default_scorer="contains")
    assert [c.scorer for c in loaded.cases] == ["contains", "exact"]
    assert errors_of(path, default_scorer="fuzzy")[0].startswith(
        f"{path}: default scorer: unknown scorer 'fuzzy'"
    )


def test_crlf_and_bom_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + json.dumps(GOOD).encode()
        + b"\r\n"
        + json.dumps({"input": "q", "expected": "a"}).encode()
        + b"\r\n"
    )
    assert [c.id for c in load_eval_file(path).cases] == ["ok", "line-2"]


def test_custom_scorer_options_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_dataset_scorer.py").write_text(
        "def length_at_least(output, expected, case):\n"
        "    return len(output) >= case.options['min_length']\n"
        "length_at_least.options = {'min_length'}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(
        tmp_path,
        {"input": "q", "scorer": "my_dataset_scorer:length_at_least", "min_length": 3},
        {"input": "q", "scorer": "my_dataset_scorer:length_at_least", "max_length": 3},
    )
    allow = ("my_dataset_scorer",)
    assert errors_of(path, allow_code=allow) == [
        f"{path}:2: unknown key 'max_length' (did you mean 'min_length'?)"
    ]
    loaded = load_eval_file(path, skip_invalid=True, allow_code=allow)
    assert loaded.cases[0].options == {"min_length": 3}


def test_judge_case_without_expected(tmp_path: Path) -> None:
    path = write(
        tmp_path, {"input": "Write a haiku", "scorer": "judge", "rubric": "5-7-5", "judge_model": "strong"}
    )
    (only,) = load_eval_file(path).cases
    assert only.expected is None and only.options == {"rubric": "5-7-5", "judge_model": "strong"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_eval_files_load_without_errors(path: Path) -> None:
    loaded = load_eval_file(path)
    assert loaded.errors == []
    assert len(loaded.cases) == sum(
        1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    assert all(get_scorer(c.scorer).check(c.expected, c.options) is None for c in loaded.cases)
    assert all(c.tags for c in loaded.cases)


def test_shipped_case_counts() -> None:
    counts = {p.name: len(load_eval_file(p).cases) for p in SHIPPED}
    assert counts == {
        "arithmetic.jsonl": 54,
        "chess.jsonl": 112,
        "long_context.jsonl": 18,
        "tools.jsonl": 26,
        "word_problems.jsonl": 60,
    }


# --------------------------------------------------------------------------- data files run no code

TRAP_MODULE = (
    "import pathlib\npathlib.Path({marker!r}).write_text('imported')\ndef score(o, e, c):\n    return True\n"
)


@pytest.fixture
def trap_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module `trap_scorers` whose import (its top level) writes a marker file."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "trap_scorers.py").write_text(TRAP_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "trap_scorers", raising=False)
    monkeypatch.setattr(custom, "_CUSTOM", {})  # scorers loaded (so allowed) by earlier tests
    return marker


def test_a_line_naming_code_is_refused_before_import(tmp_path: Path, trap_module: Path) -> None:
    path = write(tmp_path, GOOD, {"input": "q", "expected": "a", "scorer": "trap_scorers:score"})
    (problem,) = errors_of(path)
    assert problem.startswith(f"{path}:2: scorer: 'trap_scorers:score' names Python code")
    assert "--allow-code trap_scorers" in problem
    assert not trap_module.exists() and "trap_scorers" not in sys.modules


@pytest.mark.parametrize("allow", ["trap_scorers", "trap_scorers:score"])
def test_an_allowed_module_loads(tmp_path: Path, trap_module: Path, allow: str) -> None:
    path = write(tmp_path, {"input": "q", "expected": "a", "scorer": "trap_scorers:score"})
    (case,) = load_eval_file(path, allow_code=[allow]).cases
    assert case.scorer == "trap_scorers:score" and trap_module.exists()


@pytest.mark.parametrize("allow", ["trap", "trap_scorers:other", "os"])
def test_an_allowance_covers_its_module_only(tmp_path: Path, trap_module: Path, allow: str) -> None:
    path = write(tmp_path, {"input": "q", "expected": "a", "scorer": "trap_scorers:score"})
    assert "names Python code" in errors_of(path, allow_code=[allow])[0]
    assert not trap_module.exists()


def test_default_scorer_is_checked_like_a_line(tmp_path: Path, trap_module: Path) -> None:
    path = write(tmp_path, {"input": "q", "expected": "a"})
    (problem,) = errors_of(path, default_scorer="trap_scorers:score")
    assert problem.startswith(f"{path}: default scorer: 'trap_scorers:score' names Python code")
    assert not trap_module.exists()


def test_an_allowed_scorer_that_does_not_import_says_why(tmp_path: Path) -> None:
    path = write(tmp_path, {"input": "q", "expected": "a", "scorer": "no_such_pkg_xyz.mod:score"})
    assert errors_of(path, allow_code=["no_such_pkg_xyz"]) == [
        f"{path}:1: cannot import 'no_such_pkg_xyz.mod' for scorer 'no_such_pkg_xyz.mod:score': "
        "No module named 'no_such_pkg_xyz'"
    ]


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_deeply_nested_metadata_is_one_line(tmp_path: Path, levels: int) -> None:
    line = '{"input": "q", "expected": "a", "metadata": {"x": ' + "[" * levels + "]" * levels + "}}"
    path = write(tmp_path, GOOD, line)
    assert errors_of(path) == [f"{path}:2: nested deeper than 100 levels (the limit for an eval line)"]


def test_nesting_up_to_the_limit_loads(tmp_path: Path) -> None:
    # the line is level 1, metadata level 2, so 98 lists make 100 levels
    path = write(
        tmp_path, {"input": "q", "expected": "a", "metadata": {"x": json.loads("[" * 98 + "]" * 98)}}
    )
    assert len(load_eval_file(path).cases) == 1
