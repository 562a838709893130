"""The one step-tree builder: a run's step rows nested by `parent_id`, for every view (CLI
`traces show`, the HTTP introspection API, the Datasette timeline, the TUI trace screen).

Safe with damaged or partial traces: a step whose parent is missing (or is itself) is shown at the
root, never dropped; a cycle of parents never loops, it is broken at its earliest step, which
becomes a root; a repeated id is shown once. Every step row appears exactly once.
Pure Python over rows (no SQL); children and roots keep start order (offset, then seq).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepNode:
    """One step row and its children, in start order."""

    row: Mapping[str, Any]
    children: list[StepNode] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.row["id"])


def start_order(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Steps by start: offset (missing = 0), then seq."""
    return sorted(steps, key=lambda s: (s.get("offset_ms") or 0.0, s.get("seq") or 0))


def step_tree(steps: Sequence[Mapping[str, Any]]) -> list[StepNode]:
    """Nest step rows by parent_id; every row appears once (see the module's docstring)."""
    nodes: dict[str, StepNode] = {}
    for row in start_order(steps):
        nodes.setdefault(str(row["id"]), StepNode(row))  # a repeated id: the first start wins
    children: dict[str, list[StepNode]] = {}
    roots: list[StepNode] = []
    for node in nodes.values():
        parent = node.row.get("parent_id")
        parent_id = None if parent is None else str(parent)
        if parent_id is None or parent_id == node.id or parent_id not in nodes:
            roots.append(node)  # top level, or an orphan: its parent is not in this trace
        else:
            children.setdefault(parent_id, []).append(node)
    placed: set[str] = set()
    tree: list[StepNode] = []

    def attach(root: StepNode) -> None:
        # iterative, so a deep trace cannot hit the recursion limit
        placed.add(root.id)
        stack = [root]
        while stack:
            node = stack.pop()
            for child in children.get(node.id, []):
                if child.id in placed:
                    continue
                placed.add(child.id)
                node.children.append(child)
                stack.append(child)
        tree.append(root)

    for root in roots:
        attach(root)
    for node in nodes.values():  # what is left hangs off a cycle: break it at its earliest step
        if node.id not in placed:
            attach(node)
    if len(tree) > len(roots):  # the roots found by breaking cycles take their place in start order
        position = {node_id: i for i, node_id in enumerate(nodes)}
        tree.sort(key=lambda n: position[n.id])
    return tree


def walk(nodes: list[StepNode], level: int = 0) -> Iterator[tuple[StepNode, int]]:
    """The tree depth-first (each node before its children) with each node's nesting level."""
    stack = [(node, level) for node in reversed(nodes)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in reversed(node.children))


def loop_rounds(nodes: list[StepNode]) -> dict[str, int]:
    """The round of each direct child of every `loop` step in the tree: {step id: 1, 2, ...}.
    A round starts each time the loop's first child (by name) starts again."""
    rounds: dict[str, int] = {}
    for node, _ in walk(nodes):
        if str(node.row.get("kind")) != "loop":
            continue
        first, number = None, 0
        for child in node.children:
            name = child.row.get("name")
            if first is None or name == first:
                first, number = name, number + 1
            rounds[child.id] = number
    return rounds
