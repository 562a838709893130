"""Checks on chat-completion request bodies that the LiteLLM proxy itself gets wrong.

LiteLLM inspects `messages` before any provider runs, and some malformed bodies make it answer
500 (a number as content, a part with no type), 400 with a traceback in the message, or a broken
stream (a `stream` that is not a boolean). These are answered 400 here, with one clear line,
before the proxy sees them. Everything else is left to the proxy and to composite's own checks.
"""

from __future__ import annotations

import json
from typing import Any

from litellm.types.llms.openai import ValidUserMessageContentTypes

# The part types LiteLLM accepts in a user message (anything else makes it answer 500).
USER_PART_TYPES = tuple(ValidUserMessageContentTypes)

CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")
MAX_BODY_BYTES = 64 * 1024 * 1024


def is_chat_completion(method: str | None, path: str) -> bool:
    return method == "POST" and (path in CHAT_PATHS or path.endswith("/chat/completions"))


def problem(body: bytes) -> str | None:
    """What is wrong with a chat-completion body, in one line, or None when it may go on."""
    if len(body) > MAX_BODY_BYTES:
        return f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB"
    try:
        data: Any = json.loads(body or b"null")
    except (ValueError, RecursionError):
        return "the request body is not valid JSON"
    if not isinstance(data, dict):
        return "the request body must be a JSON object"
    if "stream" in data and not isinstance(data["stream"], bool):
        return "'stream' must be true or false"
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of messages"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] must be an object with 'role' and 'content'"
        if not isinstance(message.get("role"), str):
            return f"messages[{i}].role must be a string"
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"messages[{i}].content must be a string or a list of content parts"
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                return f"messages[{i}].content[{j}] must be an object with a 'type'"
            if message["role"] == "user" and part["type"] not in USER_PART_TYPES:
                known = ", ".join(USER_PART_TYPES)
                return (
                    f"messages[{i}].content[{j}].type {part['type']!r} is not a user content type ({known})"
                )
    return None
