"""Find a tool by name: a built-in (`think`, `calculator`, `python`) or a dotted path
`package.module:function`, imported only when the user allowed its module (`--allow-code`,
`allow_code:` in the config): a mode file is data and does not choose code to run.

A dotted-path tool's JSON schema comes from its signature (str, int, float, bool, list, dict
annotations) and its description from the docstring's first paragraph.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, get_type_hints

from composite_cli.dotted import DottedPathError, Registry
from composite_cli.tools.base import InternalTool, ToolError
from composite_cli.tools.calculator import calculate
from composite_cli.tools.python_tool import PYTHON

# Anthropic's published "think" tool (https://www.anthropic.com/engineering/claude-think-tool).
THINK = InternalTool(
    name="think",
    description=(
        "Use the tool to think about something. It will not obtain new information or change the "
        "database, but just append the thought to the log. Use it when complex reasoning or some "
        "cache memory is needed."
    ),
    parameters={
        "type": "object",
        "properties": {"thought": {"type": "string", "description": "A thought to think about."}},
        "required": ["thought"],
    },
    fn=lambda thought: "Thought recorded.",
    is_think=True,
)

CALCULATOR = InternalTool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly. Supports + - * / // % **, parentheses, pi, e "
        "and sqrt, log, log10, exp, sin, cos, tan, floor, ceil, abs, round, min, max."
    ),
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (17 * 23) + sqrt(16)"}},
        "required": ["expression"],
    },
    fn=calculate,
)

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def _schema(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        hints = get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat the parameters as untyped
        hints = {}
    properties: dict[str, Any] = {}
    required = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        kind = _JSON_TYPES.get(hints.get(name, str), "string")
        properties[name] = {"type": kind}
        if param.default is inspect.Parameter.empty:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _from_function(path: str, fn: Any) -> InternalTool:
    attr = path.partition(":")[2]
    doc = inspect.getdoc(fn) or f"The {attr} tool."
    return InternalTool(name=attr, description=doc.split("\n\n")[0], parameters=_schema(fn), fn=fn)


# The built-ins by name (a Mapping); any other name is `package.module:function`.
BUILTIN_TOOLS: Registry[InternalTool] = Registry("tool", adapt=_from_function)
for _tool in (THINK, CALCULATOR, PYTHON):
    BUILTIN_TOOLS.add(_tool.name, _tool)


def load_tool(spec: str, allow: Iterable[str] = ()) -> InternalTool:
    """The tool a mode names. Raises ToolError for an unknown built-in, a dotted path no entry of
    `allow` covers (nothing is imported then), or an import failure."""
    try:
        return BUILTIN_TOOLS.resolve(spec, allow)
    except DottedPathError as exc:
        raise ToolError(exc.reason) from None
