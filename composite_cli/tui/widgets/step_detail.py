"""A step of a trace in full: what was asked (messages, parameters), what came back, the
scratchpad or think notes, the error, tokens and cost."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from composite_cli.tui import units


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "\n".join(str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in value)
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _message(message: dict[str, Any], theme: dict[str, str]) -> Text:
    role = str(message.get("role", "?"))
    out = Text()
    out.append(f"[{role}]", style=f"bold {theme.get('accent', '')}")
    out.append(" " + _content(message.get("content")))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        out.append(f"\n  → tool call {fn.get('name')}({fn.get('arguments')})", style=theme.get("warning", ""))
    return out


def summary_line(step: dict[str, Any]) -> str:
    parts = [f"{step.get('kind')} {step.get('name')}"]
    if step.get("model"):
        alias = f" (alias {step['alias']})" if step.get("alias") else ""
        parts.append(f"{step['model']}{alias}")
    parts += [str(step.get("status")), units.duration(step.get("latency_ms"))]
    parts.append(f"tokens {units.tokens(step.get('prompt_tokens'), step.get('completion_tokens'))}")
    unpriced = step.get("kind") == "llm" and step.get("status") == "ok" and step.get("cost_usd") is None
    parts.append(f"cost {units.cost(step.get('cost_usd'), 1 if unpriced else 0)}")
    if step.get("retries"):
        parts.append(f"{step['retries']} retries")
    if step.get("cached"):
        parts.append("cached")
    return " · ".join(parts)


def step_detail(step: dict[str, Any], theme: dict[str, str]) -> RenderableType:
    """Everything the trace holds about one step."""
    rule_style = "dim"
    parts: list[RenderableType] = [Text(summary_line(step), style="bold")]
    if step.get("offset_ms") is not None:
        parts.append(Text(f"started {units.duration(step['offset_ms'])} into the run", style=rule_style))

    def section(title: str, body: RenderableType) -> None:
        parts.append(Rule(title, style=rule_style, align="left"))
        parts.append(body)

    request = _json(step.get("request_json"))
    if isinstance(request, dict) and "messages" in request:
        section("request", Group(*(_message(m, theme) for m in request.get("messages") or [])))
        if request.get("params"):
            parts.append(
                Text("params " + json.dumps(request["params"], ensure_ascii=False), style=rule_style)
            )
    elif request is not None:
        section("input", Text(request if isinstance(request, str) else json.dumps(request, indent=1)))
    response = _json(step.get("response_json"))
    if isinstance(response, dict) and isinstance(response.get("message"), dict):
        reply = _message(response["message"], theme)
        if response.get("finish_reason"):
            reply.append("\n")
            reply.append(f"finish_reason {response['finish_reason']}", style=rule_style)
        section("response", reply)
    elif step.get("output"):
        section("output", Text(str(step["output"])))
    if step.get("scratchpad"):
        title = "think notes" if step.get("kind") == "think" else "scratchpad"
        section(title, Text(str(step["scratchpad"]), style="italic"))
    if step.get("error"):
        section("error", Text(str(step["error"]), style=theme.get("error", "")))
    return Group(*parts)


def run_summary(run: dict[str, Any]) -> str:
    tokens = units.tokens(run.get("prompt_tokens"), run.get("completion_tokens"))
    return (
        f"{run.get('mode')} · {run.get('status')} · {run.get('source')} · profile {run.get('profile')} · "
        f"{run.get('calls') or 0} calls · tokens {tokens} · "
        f"cost {units.cost(run.get('cost_usd'), int(run.get('unpriced_calls') or 0))} · "
        f"latency {units.duration(run.get('latency_ms'))}"
    )
