"""Chat messages: check a request's conversation and build each step's messages from it.

The conversation is always passed on as real messages (roles, tool calls and tool results
intact), never flattened into one string.
"""

from __future__ import annotations

from typing import Any

from composite_cli.errors import BadRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


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


def validate_messages(messages: Any, tools: Any = None) -> None:
    """Raise BadRequest for a conversation no provider would accept."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}, got {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(f"messages[{i}].content must be a string or a list of parts")
        if content is None and role in ("system", "user", "tool"):
            raise BadRequest(f"messages[{i}] ({role}) has no content")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("tools must be a list")


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
