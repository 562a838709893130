"""Text renderings of traces for the terminal (step trees, run lines)."""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def _cost(value: float | None) -> str:
    return "cost ?" if value is None else f"${value:.6f}"


def run_line(run: dict[str, Any]) -> str:
    tokens = f"{run.get('prompt_tokens') or 0}+{run.get('completion_tokens') or 0} tok"
    return (
        f"run {run['id']}  {run['mode']}  {run['status']}  {run.get('calls') or 0} calls  "
        f"{_ms(run.get('latency_ms'))}  {tokens}  {_cost(run.get('cost_usd'))}"
    )


def step_line(step: dict[str, Any]) -> str:
    parts = [f"{step['kind']} {step['name']}"]
    if step.get("model"):
        parts.append(str(step["model"]))
    parts.append(str(step["status"]))
    parts.append(_ms(step.get("latency_ms")))
    if step.get("prompt_tokens") or step.get("completion_tokens"):
        parts.append(f"{step.get('prompt_tokens') or 0}+{step.get('completion_tokens') or 0} tok")
    if step.get("retries"):
        parts.append(f"{step['retries']} retries")
    if step.get("error"):
        parts.append(f"error: {step['error']}")
    return "  ".join(parts)


def step_tree(run: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    """The run's steps as an indented tree, children in start order."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for step in sorted(steps, key=lambda s: (s.get("offset_ms") or 0, s.get("seq") or 0)):
        children.setdefault(step.get("parent_id"), []).append(step)
    lines = [run_line(run)]

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, step in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{step_line(step)}")
            walk(step["id"], prefix + ("   " if last else "│  "))

    walk(None, "")
    return "\n".join(lines)
