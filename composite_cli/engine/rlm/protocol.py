"""Reading the root model's replies: ```repl code blocks, FINAL(answer) and FINAL_VAR(name).

The rules, chosen to survive what models actually write:
- Code runs from ```repl blocks; ```python blocks run only when a reply has no ```repl block
  (small models often say python). Other fences are prose.
- FINAL(...) / FINAL_VAR(...) count only at the start of a line (after spaces, quote marks `>`,
  list bullets or emphasis), outside the code that runs; a FINAL mentioned in the middle of a
  sentence ("when done I will call FINAL(answer)") is reasoning, not an answer.
- The argument runs to the matching parenthesis and may span lines; parentheses inside quotes
  do not count. One pair of surrounding quotes (', ", ''' or \"\"\") is removed.
- Placeholders such as FINAL(answer) or FINAL(...) are ignored.
- FINAL inside an executed block is a function call the REPL itself handles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
_START = re.compile(r"^[ \t>*_\-`]*(FINAL_VAR|FINAL)\(", re.M)
_PLACEHOLDERS = {
    "",
    "answer",
    "your answer",
    "the answer",
    "final answer",
    "your final answer",
    "your final answer here",
    "...",
    "…",
    "x",
    "result",
    "answer here",
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Final:
    kind: str  # "text" or "var"
    value: str


def code_blocks(reply: str) -> list[str]:
    """The code the REPL should run, in order."""
    fences = [(lang.lower(), body) for lang, body in _FENCE.findall(reply)]
    repl = [body for lang, body in fences if lang == "repl"]
    if repl:
        return repl
    return [body for lang, body in fences if lang in ("python", "py")]


def _prose(reply: str) -> str:
    """The reply without the fenced blocks that will run (other fences stay: they are text)."""
    runs = set(code_blocks(reply))

    def keep(match: re.Match[str]) -> str:
        return "\n" if match.group(2) in runs else match.group(2)

    return _FENCE.sub(keep, reply)


def _balanced(text: str, start: int) -> str | None:
    """The text from `start` up to the parenthesis that closes an already-open one."""
    depth, i, quote = 1, start, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
            if ch == "\\":
                i += 2
                continue
        elif text.startswith(('"""', "'''"), i):
            quote = text[i : i + 3]
            i += 3
            continue
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _unquote(value: str) -> str:
    value = value.strip()
    for quote in ('"""', "'''", '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return value[len(quote) : -len(quote)].strip()
    return value


def find_final(reply: str) -> Final | None:
    """The last real FINAL/FINAL_VAR in the reply's prose, if any."""
    prose = _prose(reply)
    found: Final | None = None
    for match in _START.finditer(prose):
        body = _balanced(prose, match.end())
        if body is None:
            # an unclosed FINAL( at the end of a reply: take the rest of it
            body = prose[match.end() :].rstrip().rstrip("`").rstrip()
        value = _unquote(body)
        if match.group(1) == "FINAL_VAR":
            if _IDENT.match(value) and value not in ("variable_name", "var_name", "name"):
                found = Final("var", value)
        elif value.lower().strip(" .") not in _PLACEHOLDERS:
            found = Final("text", value)
    return found


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with a visible marker."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... truncated {len(text) - limit} chars]"
