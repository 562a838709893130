"""A run's step tree laid out as a timeline (a Gantt chart): one bar per step, placed by its start
(`offset_ms`) and sized by its duration (`latency_ms`), rows in tree order and indented by
nesting, so a fan-out's parallel calls show as bars that overlap in time."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from composite_cli.datasette.display import format_cost, plain_error
from composite_cli.events import FAILED_STEP_STATUSES
from composite_cli.traces.steptree import loop_rounds, step_tree, walk

MAX_BARS = 1000
OUTPUT_MAX_CHARS = 20_000  # of one step's output on a run's page (the step's page has all of it)


@dataclass(frozen=True)
class LegendEntry:
    """One bar colour and the step kinds drawn in it (`kinds` empty: a look, not a kind)."""

    label: str
    colour: str
    kinds: tuple[str, ...] = ()


# Every bar colour of the timeline: the style sheet is made from this table, and the legend lists
# it, so the two cannot disagree. A kind not listed is drawn in OTHER_COLOUR.
KIND_COLOURS: tuple[LegendEntry, ...] = (
    LegendEntry("llm", "#3b7dd8", ("llm",)),
    LegendEntry("call", "#4a5d7e", ("call",)),
    LegendEntry("fanout / debate", "#8e5ad6", ("fanout", "debate", "round")),
    LegendEntry("synthesize / vote / judge", "#1f9e89", ("synthesize", "vote", "judge", "best_of")),
    LegendEntry("loop / reflect / if", "#6b8e23", ("loop", "reflect", "if", "switch")),
    LegendEntry("tool / think", "#e08a1e", ("tool", "think")),
    LegendEntry("rlm / repl", "#c2477e", ("rlm", "repl")),
)
OTHER_COLOUR = "#8a8a8a"
ERROR_COLOUR = "#d83b3b"
LEGEND: tuple[LegendEntry, ...] = (
    *KIND_COLOURS,
    LegendEntry("other", OTHER_COLOUR),
    LegendEntry("error", ERROR_COLOUR),
)


def format_ms(value: float | None) -> str:
    """Milliseconds for people: `264ms`, `2.50s`, `-` when unknown."""
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


@dataclass(frozen=True)
class Bar:
    """One step as drawn: its row (label, indentation) and its bar (percent of the run's span)."""

    step_id: str
    kind: str
    name: str
    model: str | None
    status: str
    level: int
    start_ms: float
    duration_ms: float | None
    left_pct: float
    width_pct: float
    url: str
    tooltip: str
    duration_label: str
    running: bool = False
    cached: bool = False
    highlight: bool = False


@dataclass(frozen=True)
class Tick:
    pct: float
    label: str


@dataclass
class Timeline:
    run_id: str
    run_url: str | None
    total_ms: float
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    hidden: int = 0  # steps beyond MAX_BARS, not drawn

    @property
    def tick_step_pct(self) -> float:
        """The distance between two ticks, in percent of the span (for gridlines)."""
        return self.ticks[1].pct if len(self.ticks) > 1 else 100.0


def tree_order(steps: list[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """Steps depth-first (children by start time, then seq) with their nesting level, from the one
    step-tree builder (traces/steptree.py): a step whose parent is missing is top-level, so a
    partial trace still draws; a cycle in damaged data is broken; each step is drawn once."""
    return [(node.row, level) for node, level in walk(step_tree(steps))]


def round_prefixes(steps: list[Mapping[str, Any]]) -> dict[str, str]:
    """`r2 ` for each step in the 2nd round of its loop (steptree.loop_rounds), by step id."""
    return {step_id: f"r{n} " for step_id, n in loop_rounds(step_tree(steps)).items()}


def nice_ticks(total_ms: float, target: int = 6) -> list[Tick]:
    """Axis ticks at round intervals (1, 2 or 5 times a power of ten) from 0 to the span."""
    if total_ms <= 0:
        return [Tick(0.0, "0ms")]
    raw = total_ms / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    ticks, value = [], 0.0
    while value <= total_ms + 1e-9:
        ticks.append(Tick(round(100 * value / total_ms, 3), "0" if value == 0 else format_ms(value)))
        value += step
    return ticks


def _tooltip(step: Mapping[str, Any], start: float, duration: float | None) -> str:
    parts = [f"{step.get('kind')} {step.get('name')}"]
    if step.get("model"):
        parts.append(str(step["model"]))
    parts.append(str(step.get("status")))
    parts.append(f"start {format_ms(start)}")
    parts.append("running" if duration is None else format_ms(duration))
    if step.get("prompt_tokens") or step.get("completion_tokens"):
        parts.append(f"{step.get('prompt_tokens') or 0}+{step.get('completion_tokens') or 0} tok")
    if step.get("cost_usd") is not None:
        parts.append(f"${format_cost(float(step['cost_usd']))}")
    if step.get("cached"):
        parts.append("cached")
    if step.get("error"):
        parts.append(f"error: {plain_error(str(step['error']))[:200]}")
    return " · ".join(parts)


def build_timeline(
    run: Mapping[str, Any] | None,
    steps: list[Mapping[str, Any]],
    *,
    step_url: Callable[[str], str],
    run_url: str | None = None,
    highlight: str | None = None,
    max_bars: int = MAX_BARS,
) -> Timeline:
    """Lay out a run's steps. `run` may be None (a steps row whose run row is gone)."""
    ends = [(s.get("offset_ms") or 0.0) + (s.get("latency_ms") or 0.0) for s in steps]
    run_latency = (run or {}).get("latency_ms") or 0.0
    total = max([run_latency, *ends]) or 1.0
    run_id = str((run or {}).get("id") or (steps[0]["run_id"] if steps else ""))
    timeline = Timeline(run_id=run_id, run_url=run_url, total_ms=total, ticks=nice_ticks(total))
    ordered = tree_order(steps)
    rounds = round_prefixes(steps)
    for step, level in ordered[:max_bars]:
        start = max(0.0, float(step.get("offset_ms") or 0.0))
        latency = step.get("latency_ms")
        duration = None if latency is None else float(latency)
        running = duration is None
        end = total if duration is None else start + duration
        left = min(100.0, 100 * start / total)
        width = max(0.0, min(100.0 - left, 100 * (end - start) / total))
        timeline.bars.append(
            Bar(
                step_id=str(step["id"]),
                kind=str(step.get("kind") or "step"),
                name=rounds.get(str(step["id"]), "") + str(step.get("name") or ""),
                model=step.get("model"),
                status=str(step.get("status") or ""),
                level=level,
                start_ms=start,
                duration_ms=duration,
                left_pct=round(left, 4),
                width_pct=round(width, 4),
                url=step_url(str(step["id"])),
                tooltip=_tooltip(step, start, duration),
                duration_label="running" if duration is None else format_ms(duration),
                running=running,
                cached=bool(step.get("cached")),
                highlight=step["id"] == highlight,
            )
        )
    timeline.hidden = max(0, len(ordered) - max_bars)
    llm = [s for s in steps if s.get("kind") == "llm"]
    busy = sum(float(s.get("latency_ms") or 0.0) for s in llm)
    timeline.summary = {
        "steps": len(steps),
        "llm_calls": len(llm),
        "max_level": max((level for _, level in ordered), default=0),
        "wall": format_ms(total),
        "llm_time": format_ms(busy),
        # Time spent in model calls per unit of wall time: above 1 means calls overlapped.
        "parallelism": round(busy / total, 2) if llm else None,
        "errors": sum(1 for s in steps if s.get("status") in FAILED_STEP_STATUSES),
    }
    return timeline


@dataclass(frozen=True)
class StepOutput:
    """What one step said, for the run's page: its answer (or its error), with a link to it."""

    step_id: str
    kind: str
    name: str
    model: str | None
    status: str
    level: int
    within: str  # the names of the enclosing steps, outermost first: "layers › refined"
    url: str
    duration_label: str
    output: str
    more_chars: int  # characters cut off (see the step's page)
    error: str | None


def step_outputs(
    steps: list[Mapping[str, Any]],
    outputs: Mapping[str, Mapping[str, Any]],
    *,
    step_url: Callable[[str], str],
    max_chars: int = OUTPUT_MAX_CHARS,
) -> list[StepOutput]:
    """The outputs of a run's leaf steps (the model calls, tools and REPL blocks: expert answers,
    critiques, the final call), in timeline order, and the errors of failed leaves.

    A step with children only gathers what they said (a fan-out lists its experts' answers), so
    showing it would repeat them. `outputs` maps a step id to `output`, `output_chars`, `error`."""
    parents = {s.get("parent_id") for s in steps}
    by_id = {s["id"]: s for s in steps}
    found = []
    for step, level in tree_order(steps):
        step_id = str(step["id"])
        got = outputs.get(step_id)
        if step_id in parents or not got:
            continue
        text = str(got.get("output") or "")
        error = got.get("error")
        if not text and not error:
            continue
        total = int(got.get("output_chars") or len(text))
        within: list[str] = []
        parent = by_id.get(step.get("parent_id"))
        while parent is not None and len(within) <= level:  # bounded: damaged data may loop
            within.insert(0, str(parent.get("name") or parent.get("kind") or ""))
            parent = by_id.get(parent.get("parent_id"))
        latency = step.get("latency_ms")
        found.append(
            StepOutput(
                step_id=step_id,
                kind=str(step.get("kind") or "step"),
                name=str(step.get("name") or ""),
                model=step.get("model"),
                status=str(step.get("status") or ""),
                level=level,
                within=" › ".join(within),
                url=step_url(step_id),
                duration_label="running" if latency is None else format_ms(float(latency)),
                output=text[:max_chars],
                more_chars=max(0, total - min(len(text), max_chars)),
                error=plain_error(str(error)) if error else None,
            )
        )
    return found
