"""Chat messages in the embedded model's prompt formats: SmolLM2's own template and llama-cpp-python's
chatml function-calling template."""

from __future__ import annotations

import json
from typing import Any

from markupsafe import Markup

# The system prompt SmolLM2's own chat template inserts when a conversation has none.
_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _text(content: Any) -> str:
    """Message content as plain text: None → "", content parts → their text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(t) for t in texts)
    return str(content)


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments")
        calls.append(
            {
                "id": call.get("id") or "",
                "type": "function",
                "function": {
                    "name": fn.get("name") or "",
                    "arguments": args if isinstance(args, str) else json.dumps(args or {}),
                },
            }
        )
    return calls


def call_key(call: dict[str, Any]) -> tuple[str, str]:
    """A tool call's function name and arguments, the arguments as canonical JSON when they parse."""
    fn = call.get("function") or {}
    args = fn.get("arguments")
    try:
        parsed = json.loads(args) if isinstance(args, str) else args
        canonical = json.dumps(parsed, sort_keys=True)
    except (TypeError, ValueError):
        canonical = str(args).strip()
    return str(fn.get("name") or ""), canonical


def answered_calls(messages: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The tool calls (as `call_key`) in `messages` that a later `tool` message answered."""
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    return {
        call_key(c)
        for m in messages
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or []
        if c.get("id") in answered
    }


def _render_calls(calls: list[dict[str, Any]]) -> str:
    # The same "functions.<name>:\n<arguments>" text the function-calling prompt uses.
    return "\n".join(f"functions.{c['function']['name']}:\n{c['function']['arguments']}" for c in calls)


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages for SmolLM2's own chat template, which only reads `role` and string `content`."""
    out = []
    for m in messages:
        role = "system" if m.get("role") == "developer" else str(m.get("role") or "user")
        content = _text(m.get("content"))
        calls = _tool_calls(m) if role == "assistant" else []
        if calls:  # the template has no tool_calls field: show the calls as text
            content = "\n".join(part for part in (content, _render_calls(calls)) if part)
        if role == "function":
            role = "tool"
        out.append({"role": role, "content": content})
    return out


def _raw(text: str) -> Markup:
    """Text the function-calling template must not HTML-escape (it builds a prompt, not a web page)."""
    return Markup(text)  # noqa: S704


def function_calling_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for llama-cpp-python's chatml function-calling template.

    That template autoescapes HTML (quotes would reach the model as &#34;), so text goes in as Markup;
    it lists the tools only inside a system message, so one is added when missing; and it drops the
    content of `tool` messages, so tool results are passed as user messages.
    """
    names = {c["id"]: c["function"]["name"] for m in messages for c in _tool_calls(m)}
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "system" if m.get("role") == "developer" else str(m.get("role") or "user")
        content = _text(m.get("content"))
        if role in ("tool", "function"):
            name = m.get("name") or names.get(m.get("tool_call_id") or "", "tool")
            out.append({"role": "user", "content": _raw(f"Result of functions.{name}:\n{content}")})
            continue
        entry: dict[str, Any] = {"role": role, "content": _raw(content)}
        calls = _tool_calls(m) if role == "assistant" else []
        if calls:
            for c in calls:
                c["function"]["arguments"] = _raw(c["function"]["arguments"])
            entry["tool_calls"] = calls
        out.append(entry)
    if not out or out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": _raw(_DEFAULT_SYSTEM)})
    return out
