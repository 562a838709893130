"""Chat messages: check a request's conversation and build each step's messages from it.

The conversation is always passed on as real messages (roles, tool calls and tool results
intact), never flattened into one string.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from composite_cli.errors import BadParameter
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
    """Raise BadParameter (a BadRequest naming the field, OpenAI's `param`) for a conversation no
    provider would accept, or beyond our limits."""
    if not isinstance(messages, list) or not messages:
        raise BadParameter("messages must be a non-empty list", "messages")
    if len(messages) > MAX_MESSAGES:
        raise BadParameter(f"too many messages: {len(messages)} (the limit is {MAX_MESSAGES})", "messages")
    total = sum(len(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    if total > MAX_INPUT_CHARS:
        raise BadParameter(
            f"the conversation is {total:,} characters; the limit is {MAX_INPUT_CHARS:,} "
            "(set COMPOSITE_MAX_INPUT_CHARS to change it)",
            "messages",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadParameter(f"messages[{i}] must be an object with role and content", f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise BadParameter(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}, got {role!r}",
                f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadParameter(
                f"messages[{i}].content must be a string or a list of parts", f"messages[{i}].content"
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in PART_TYPES:
                    types = ", ".join(sorted(PART_TYPES))
                    raise BadParameter(
                        f"messages[{i}].content[{j}] must be a part with type {types}",
                        f"messages[{i}].content[{j}].type",
                    )
                if kind == "text" and not isinstance(part.get("text"), str):
                    raise BadParameter(
                        f"messages[{i}].content[{j}].text must be a string",
                        f"messages[{i}].content[{j}].text",
                    )
        if content is None and role in ("system", "user", "tool"):
            raise BadParameter(f"messages[{i}] ({role}) has no content", f"messages[{i}].content")
    _validate_tool_history(messages)
    _validate_tools(tools, tool_choice)


def _validate_tool_history(messages: list[dict[str, Any]]) -> None:
    """Every tool result answers an earlier call; every call's arguments are a JSON object."""
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        calls = message.get("tool_calls")
        if calls is not None:
            if message.get("role") != "assistant" or not isinstance(calls, list):
                raise BadParameter(
                    f"messages[{i}].tool_calls must be a list on an assistant message",
                    f"messages[{i}].tool_calls",
                )
            for j, call in enumerate(calls):
                where = f"messages[{i}].tool_calls[{j}]"
                if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
                    raise BadParameter(f"{where} needs an id", f"{where}.id")
                fn = call.get("function")
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    raise BadParameter(f"{where}.function needs a name", f"{where}.function.name")
                arguments = fn.get("arguments")
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else None
                except json.JSONDecodeError:
                    parsed = None
                except RecursionError:
                    raise BadParameter(
                        f"{where}.function.arguments are nested too deeply", f"{where}.function.arguments"
                    ) from None
                if not isinstance(parsed, dict):
                    raise BadParameter(
                        f"{where}.function.arguments must be a JSON object in a string",
                        f"{where}.function.arguments",
                    )
                if depth_over(parsed):
                    raise BadParameter(
                        f"{where}.function.arguments are nested more than {MAX_DEPTH} levels",
                        f"{where}.function.arguments",
                    )
                open_calls.add(call["id"])
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_calls:
                raise BadParameter(
                    f"messages[{i}] is a tool result for {call_id!r}, which no earlier message called",
                    f"messages[{i}].tool_call_id",
                )


def _validate_tools(tools: Any, tool_choice: Any) -> None:
    if tools is None:
        if isinstance(tool_choice, dict):
            raise BadParameter("tool_choice names a function but no tools were given", "tool_choice")
        return
    if not isinstance(tools, list):
        raise BadParameter("tools must be a list", "tools")
    if len(tools) > MAX_TOOLS:
        raise BadParameter(f"too many tools: {len(tools)} (the limit is {MAX_TOOLS})", "tools")
    names = set()
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise BadParameter(
                f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", f"tools[{i}]"
            )
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise BadParameter(
                f"tools[{i}].function.name must match [a-zA-Z0-9_-]{{1,64}}", f"tools[{i}].function.name"
            )
        names.add(name)
    if isinstance(tool_choice, dict):
        chosen = (tool_choice.get("function") or {}).get("name")
        if chosen not in names:
            raise BadParameter(f"tool_choice names {chosen!r}, which is not in tools", "tool_choice")
    elif tool_choice not in (None, "auto", "none", "required"):
        raise BadParameter(
            f"tool_choice must be auto, none, required or a function, got {tool_choice!r}", "tool_choice"
        )


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
