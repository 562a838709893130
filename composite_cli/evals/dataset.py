"""Eval files: JSONL, one case per line, every line checked before anything runs.

A line is a JSON object with `input` (one user message) or `messages` (an OpenAI chat list),
`expected`, an optional `scorer` and the scorer's own options (`tolerance`, `choices`, ...),
plus optional `id`, `tools`, `tool_choice` and `metadata` (see evals/README.md). Each problem is
reported as `file:line: message`; by default all of them are raised together.

An eval file is data: a line may name a custom scorer (`package.module:function`) only inside the
module prefixes the user allowed (`allow_code`), and nothing is imported otherwise. A line nested
deeper than MAX_DEPTH levels is refused (deep values would later crash copying and JSON output).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composite_cli.dotted import CodeNotAllowed
from composite_cli.engine.conversation import content_text, last_user_text, validate_messages
from composite_cli.errors import BadRequest, CompositeError
from composite_cli.evals.scorers import SCORERS, Scorer, ScorerError, get_scorer
from composite_cli.jsonvalues import MAX_DEPTH, depth_over, json_type

KNOWN_KEYS = frozenset({"id", "input", "messages", "expected", "scorer", "tools", "tool_choice", "metadata"})
DEFAULT_SCORER = "exact"


@dataclass(frozen=True)
class EvalCase:
    """One case of an eval file, validated; `scorer` is already resolved to a name."""

    id: str
    line: int  # 1-based line in the file
    messages: list[dict[str, Any]]  # `messages`, or [{"role": "user", "content": input}]
    expected: Any  # str | list[str] | int | float | dict | None
    scorer: str  # the line's `scorer`, else the caller's default, else "exact"
    options: dict[str, Any]  # the line's options for its scorer (tolerance, choices, ...)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def tags(self) -> list[str]:
        """`metadata.tags`, or an empty list."""
        return list(self.metadata.get("tags", []))

    @property
    def input_text(self) -> str:
        """The last user message's text (what reports show as the question)."""
        return last_user_text(self.messages)


@dataclass(frozen=True)
class EvalLineError:
    """One problem at one line of an eval file (line 0: the file as a whole)."""

    path: str
    line: int
    message: str

    def one_line(self) -> str:
        """`file:line: message`, or `file: message` for a problem with the whole file."""
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class EvalFileError(CompositeError):
    """An eval file has problems; `errors` lists each with its line."""

    def __init__(self, errors: list[EvalLineError]):
        self.errors = errors
        super().__init__("\n".join(e.one_line() for e in errors))


@dataclass
class EvalFile:
    """A loaded eval file: its valid cases, the sha256 of its bytes, and the skipped lines' errors."""

    path: Path
    sha256: str
    cases: list[EvalCase]
    errors: list[EvalLineError]


def load_eval_file(
    path: str | Path,
    *,
    default_scorer: str | None = None,
    skip_invalid: bool = False,
    allow_code: Iterable[str] = (),
) -> EvalFile:
    """Load and check every line of a JSONL eval file.

    `default_scorer` applies to lines without a `scorer` (else "exact"). `allow_code` holds the
    module prefixes (or `module:function`s) the user allowed; a custom scorer outside them, named
    by a line or by `default_scorer`, is refused (a caller that got `default_scorer` from the
    user's command line adds it to `allow_code`). By default any problem raises EvalFileError
    listing all of them; with `skip_invalid=True` the valid cases are returned with the problems
    in `errors`. A file with no valid case always raises.
    """
    shown = str(path)
    path = Path(path)
    allow = tuple(allow_code)
    if default_scorer is not None:
        try:
            get_scorer(default_scorer, allow)
        except ScorerError as exc:
            raise EvalFileError([EvalLineError(shown, 0, f"default scorer: {exc}")]) from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalFileError([EvalLineError(shown, 0, f"cannot read the file: {exc.strerror}")]) from None

    parser = _LineParser(shown, default_scorer or DEFAULT_SCORER, allow)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        parser.parse(number, raw)

    errors = parser.errors
    if errors and not skip_invalid:
        raise EvalFileError(errors)  # each line says what is wrong; nothing to add
    if not parser.cases:
        reason = "no valid cases" if errors else "no cases (the file is empty)"
        raise EvalFileError([*errors, EvalLineError(shown, 0, reason)])
    return EvalFile(path=path, sha256=hashlib.sha256(data).hexdigest(), cases=parser.cases, errors=errors)


class _LineParser:
    """Checks lines one at a time; remembers ids across lines to find duplicates."""

    def __init__(self, path: str, default_scorer: str, allow_code: tuple[str, ...] = ()):
        self.path = path
        self.default_scorer = default_scorer
        self.allow_code = allow_code
        self.cases: list[EvalCase] = []
        self.errors: list[EvalLineError] = []
        self.ids: dict[str, int] = {}

    def parse(self, number: int, raw: bytes) -> None:
        problems: list[str] = []
        case = self._case(number, raw, problems)
        self.errors.extend(EvalLineError(self.path, number, p) for p in problems)
        if case is not None and not problems:
            self.cases.append(case)

    def _case(self, number: int, raw: bytes, problems: list[str]) -> EvalCase | None:
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte order mark
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"not valid UTF-8 (byte {exc.start + 1} of the line: {exc.reason})")
            return None
        if not text.strip():
            return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"invalid JSON: {exc.msg} (column {exc.colno})")
            return None
        except ValueError as exc:  # a number longer than Python converts (4300 digits)
            problems.append(f"invalid JSON: {str(exc).split(';')[0]}")
            return None
        except RecursionError:
            # the decoder recurses once per level: far deeper than MAX_DEPTH, it gives up first
            problems.append(f"nested deeper than {MAX_DEPTH} levels (the limit for an eval line)")
            return None
        if depth_over(obj, MAX_DEPTH):
            problems.append(f"nested deeper than {MAX_DEPTH} levels (the limit for an eval line)")
            return None
        if not isinstance(obj, dict):
            problems.append(f"a case must be a JSON object, got {json_type(obj)}")
            return None

        case_id = self._id(obj, number, problems)
        messages = _messages(obj, problems)
        metadata = _metadata(obj, problems)
        scorer = self._scorer(obj, problems)
        options: dict[str, Any] = {}
        if scorer is not None:
            options = _options(obj, scorer, problems)
            problem = scorer.check(obj.get("expected"), options)
            if problem:
                problems.append(f"scorer {scorer.name!r}: {problem}")
            elif scorer.name == "tool_call":
                _check_tool_offered(obj, problems)
        if messages is None or scorer is None or case_id is None:
            return None
        return EvalCase(
            id=case_id,
            line=number,
            messages=messages,
            expected=obj.get("expected"),
            scorer=scorer.name,
            options=options,
            tools=obj.get("tools"),
            tool_choice=obj.get("tool_choice"),
            metadata=metadata,
        )

    def _id(self, obj: dict[str, Any], number: int, problems: list[str]) -> str | None:
        if "id" not in obj:
            case_id = f"line-{number}"
        else:
            raw = obj["id"]
            if isinstance(raw, bool) or not isinstance(raw, (str, int)):
                problems.append(f"id must be a string or an integer, got {json_type(raw)}")
                return None
            case_id = str(raw)
            if not case_id.strip():
                problems.append("id is empty")
                return None
        first = self.ids.get(case_id)
        if first is not None:
            problems.append(f"duplicate id {case_id!r} (first on line {first})")
            return None
        self.ids[case_id] = number
        return case_id

    def _scorer(self, obj: dict[str, Any], problems: list[str]) -> Scorer | None:
        name = obj.get("scorer", self.default_scorer)
        if not isinstance(name, str):
            problems.append(f"scorer must be a string, got {json_type(name)}")
            return None
        try:
            return get_scorer(name, self.allow_code)
        except ScorerError as exc:
            refused = isinstance(exc.__cause__, CodeNotAllowed)
            problems.append(f"scorer: {exc}" if refused else str(exc))
            return None


def _messages(obj: dict[str, Any], problems: list[str]) -> list[dict[str, Any]] | None:
    """The case's conversation, checked as a request would be (tools and tool_choice too)."""
    has_input, has_messages = "input" in obj, "messages" in obj
    if has_input and has_messages:
        problems.append('give either "input" or "messages", not both')
        return None
    if not has_input and not has_messages:
        problems.append('missing input: give "input" (a string) or "messages" (a chat list)')
        return None
    if has_input:
        if not isinstance(obj["input"], str):
            problems.append(f"input must be a string, got {json_type(obj['input'])}")
            return None
        if not obj["input"].strip():
            problems.append("input is empty")
            return None
        messages: Any = [{"role": "user", "content": obj["input"]}]
    else:
        messages = obj["messages"]
    try:
        validate_messages(messages, obj.get("tools"), obj.get("tool_choice"))
    except BadRequest as exc:
        problems.append(str(exc))
        return None
    last = messages[-1].get("role")
    if last not in ("user", "tool"):
        problems.append(f"messages must end with a user or tool message, not {last}")
        return None
    if not content_text(messages[-1].get("content")).strip():
        problems.append("the last message has no text")
        return None
    return list(messages)


def _metadata(obj: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(f"metadata must be an object, got {json_type(metadata)}")
        return {}
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append("metadata.tags must be a list of strings")
    return metadata


def _options(obj: dict[str, Any], scorer: Scorer, problems: list[str]) -> dict[str, Any]:
    """The line's keys that are options of its scorer; any other unknown key is a problem."""
    options = {}
    for key, value in obj.items():
        if key in KNOWN_KEYS:
            continue
        if key in scorer.options:
            options[key] = value
            continue
        owners = sorted(s.name for s in SCORERS.values() if key in s.options)
        if owners:
            hint = f"it is an option of {', '.join(owners)}, not of {scorer.name}"
        else:
            close = difflib.get_close_matches(key, sorted(KNOWN_KEYS | scorer.options), n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
        problems.append(f"unknown key {key!r}" + (f" ({hint})" if hint else ""))
    return options


def _check_tool_offered(obj: dict[str, Any], problems: list[str]) -> None:
    """A tool_call case that offers tools must expect one of them."""
    tools = obj.get("tools")
    if not isinstance(tools, list):
        return
    names = [
        t["function"]["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    want = obj["expected"]["name"]
    if want not in names:
        problems.append(f"expected tool {want!r} is not among the tools offered ({', '.join(names)})")
