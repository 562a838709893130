"""Chat messages: check a request's conversation and build each step's messages from it.

The conversation is always passed on as real messages (roles, tool calls and tool results
intact), never flattened into one string.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from composite_cli.errors import BadRequest
from composite_cli.jsonvalues import MAX_DEPTH, depth_over

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# Limits on what one request may carry (the trace keeps every step's messages).
MAX_MESSAGES = 4096
MAX_INPUT_CHARS = int(os.environ.get("COMPOSITE_MAX_INPUT_CHARS", 16_000_000))
MAX_TOOLS = 128
PART_TYPES = {"text", "image_url", "input_audio", "file"}


_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def content_text(content: Any) -> str:
    """The text of a message's content (a string or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The latest user message's text (what templates call `input`)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def system_text(messages: list[dict[str, Any]]) -> str:
    """The caller's system prompt text, if any (what templates call `system`)."""
    return "\n\n".join(
        content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )


def _clean(text: str) -> str:
    """Text that UTF-8 can carry: lone surrogates (from bad bytes or broken escapes) become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text


def clean_messages(messages: Any) -> Any:
    """The conversation with undecodable characters replaced, so no layer (provider, trace) fails on them."""
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            cleaned = _clean(message["content"])
            if cleaned is not message["content"]:
                message = {**message, "content": cleaned}
        out.append(message)
    return out


def validate_messages(messages: Any, tools: Any = None, tool_choice: Any = None) -> None:
    """Raise BadRequest for a conversation no provider would accept, or beyond our limits."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(f"too many messages: {len(messages)} (the limit is {MAX_MESSAGES})")
    total = sum(len(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    if total > MAX_INPUT_CHARS:
        raise BadRequest(
            f"the conversation is {total:,} characters; the limit is {MAX_INPUT_CHARS:,} "
            "(set COMPOSITE_MAX_INPUT_CHARS to change it)"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}, got {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(f"messages[{i}].content must be a string or a list of parts")
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in PART_TYPES:
                    raise BadRequest(
                        f"messages[{i}].content[{j}] must be a part with type {', '.join(sorted(PART_TYPES))}"
                    )
                if kind == "text" and not isinstance(part.get("text"), str):
                    raise BadRequest(f"messages[{i}].content[{j}].text must be a string")
        if content is None and role in ("system", "user", "tool"):
            raise BadRequest(f"messages[{i}] ({role}) has no content")
    _validate_tool_history(messages)
    _validate_tools(tools, tool_choice)


def _validate_tool_history(messages: list[dict[str, Any]]) -> None:
    """Every tool result answers an earlier call; every call's arguments are a JSON object."""
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        calls = message.get("tool_calls")
        if calls is not None:
            if message.get("role") != "assistant" or not isinstance(calls, list):
                raise BadRequest(f"messages[{i}].tool_calls must be a list on an assistant message")
            for j, call in enumerate(calls):
                where = f"messages[{i}].tool_calls[{j}]"
                if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
                    raise BadRequest(f"{where} needs an id")
                fn = call.get("function")
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    raise BadRequest(f"{where}.function needs a name")
                arguments = fn.get("arguments")
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else None
                except json.JSONDecodeError:
                    parsed = None
                except RecursionError:
                    raise BadRequest(f"{where}.function.arguments are nested too deeply") from None
                if not isinstance(parsed, dict):
                    raise BadRequest(f"{where}.function.arguments must be a JSON object in a string")
                if depth_over(parsed):
                    raise BadRequest(f"{where}.function.arguments are nested more than {MAX_DEPTH} levels")
                open_calls.add(call["id"])
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                raise BadRequest(
                    f"messages[{i}] is a tool result for {call_id!r}, which no earlier message called"
                )


def _validate_tools(tools: Any, tool_choice: Any) -> None:
    if tools is None:
        if isinstance(tool_choice, dict):
            raise BadRequest("tool_choice names a function but no tools were given")
        return
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    if len(tools) > MAX_TOOLS:
        raise BadRequest(f"too many tools: {len(tools)} (the limit is {MAX_TOOLS})")
    names = set()
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise BadRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise BadRequest(f"tools[{i}].function.name must match [a-zA-Z0-9_-]{{1,64}}")
        names.add(name)
    if isinstance(tool_choice, dict):
        chosen = (tool_choice.get("function") or {}).get("name")
        if chosen not in names:
            raise BadRequest(f"tool_choice names {chosen!r}, which is not in tools")
    elif tool_choice not in (None, "auto", "none", "required"):
        raise BadRequest(f"tool_choice must be auto, none, required or a function, got {tool_choice!r}")


def build_messages(
    conversation: list[dict[str, Any]],
    *,
    system: str | None = None,
    after: list[dict[str, Any]] | None = None,
    prompt: str | None = None,
) -> list[dict[str, Any]]:
    """A step's messages: its system prompt, the conversation, extra turns, then its prompt.

    The step's system prompt goes first; when the caller sent a system message of its own, the
    two are joined into one (several providers accept only one, at the start).
    """
    messages = [dict(m) for m in conversation]
    if system:
        if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
            messages[0]["content"] = f"{system}\n\n{messages[0]['content']}"
        else:
            messages.insert(0, {"role": "system", "content": system})
    messages.extend(after or [])
    if prompt:
        messages.append({"role": "user", "content": prompt})
    return messages
