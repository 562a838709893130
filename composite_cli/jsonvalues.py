"""JSON values from outside (eval lines, request bodies, tool-call arguments): the words messages
use for their types, and the nesting limit, checked without recursion so that a hostile value
cannot exhaust the stack. YAML files have the same limit (composite_cli/yamlfile.py)."""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 100  # levels of nested lists and objects (the value itself is one)


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages ("a string", "an object", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def depth_over(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when lists and dicts in `value` nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
