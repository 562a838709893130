"""Text renderings of traces for the terminal (step trees, run lines)."""

from __future__ import annotations

from typing import Any

from composite_cli.traces.steptree import StepNode
from composite_cli.traces.steptree import step_tree as build_step_tree


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
    """The run's steps as an indented tree, children in start order (the one tree builder's:
    a step whose parent is missing shows at the top level, each step once)."""
    lines = [run_line(run)]
    roots = build_step_tree(steps)
    # (node, prefix of its line, is it the last of its siblings), depth first without recursion
    stack: list[tuple[StepNode, str, bool]] = [(n, "", i == len(roots) - 1) for i, n in enumerate(roots)][
        ::-1
    ]
    while stack:
        node, prefix, last = stack.pop()
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{step_line(dict(node.row))}")
        inner = prefix + ("   " if last else "│  ")
        kids = node.children
        stack.extend((kid, inner, i == len(kids) - 1) for i, kid in reversed(list(enumerate(kids))))
    return "\n".join(lines)
