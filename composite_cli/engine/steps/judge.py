"""`judge`: a structured analysis of candidate answers, as JSON (OpenRouter Fusion's judge).

The judge reads the candidates and answers with one JSON object: where they agree (`consensus`),
where they contradict each other (`contradictions`), what only one of them saw (`unique_points`)
and what all of them missed (`blind_spots`), each a list of short strings. The reply is validated;
an invalid one gets one retry, with the problem named. The analysis is the step's value (the JSON,
normalized) and, readable, its scratchpad in the trace. When the retry is invalid too the step's
value is the judge's raw text, marked partial (the step is recorded `partial`, with a note naming
the problem), so a later writer still sees what the judge said and the trace says it was not valid.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from composite_cli.engine.registry import step_kind
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.call_settings import CallSettings, call_fields
from composite_cli.engine.steps.fields import step_refs
from composite_cli.engine.steps.synthesize import (
    SOURCES,
    anonymize_field,
    gather_candidates,
    present_candidates,
    shuffle_field,
)
from composite_cli.engine.values import TextValue
from composite_cli.errors import StepFailed
from composite_cli.jsonvalues import depth_over, json_type

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

ANALYSIS_KEYS = ("consensus", "contradictions", "unique_points", "blind_spots")
MAX_ITEMS = 50  # per key: a longer list is a runaway reply, not an analysis
MAX_ITEM_CHARS = 2000

ANALYZE = (
    "Here are {{ candidates | length }} candidate answers to the user's last message, from "
    "different sources:\n\n{{ candidates }}\n\n"
    "Analyze them; do not answer the question yourself. Reply with one JSON object and nothing "
    "else, with exactly these keys, each a list of short strings:\n"
    '- "consensus": points the candidates agree on\n'
    '- "contradictions": points where they contradict each other (say which candidates)\n'
    '- "unique_points": points only one candidate made (say which one)\n'
    '- "blind_spots": what all of them missed or got wrong\n'
    "An empty list is fine when there is nothing to say."
)

RETRY = (
    "Your reply was not a valid analysis: {problem}. Reply again with one JSON object only, "
    "with the keys " + ", ".join(f'"{k}"' for k in ANALYSIS_KEYS) + ", each a list of strings."
)


class InvalidAnalysis(ValueError):
    """A judge's reply that is not the analysis asked for; the message names the problem."""


def _strip_fence(text: str) -> str:
    """The text inside a Markdown code fence (```json ... ```), when the reply is one."""
    body = text.strip()
    if body.startswith("```"):
        first_newline = body.find("\n")
        if first_newline == -1:
            return body
        body = body[first_newline + 1 :]
        if body.rstrip().endswith("```"):
            body = body.rstrip()[:-3]
    return body.strip()


def parse_analysis(text: str) -> dict[str, list[str]]:
    """The analysis in a judge's reply. Raises InvalidAnalysis naming the first problem."""
    body = _strip_fence(text)
    if not body:
        raise InvalidAnalysis("the reply is empty")
    try:
        data: Any = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidAnalysis(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InvalidAnalysis("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidAnalysis(f"expected a JSON object, got {json_type(data)}")
    if depth_over(data, 3):
        raise InvalidAnalysis("nested too deeply: each key holds a list of strings")
    missing = [k for k in ANALYSIS_KEYS if k not in data]
    if missing:
        raise InvalidAnalysis("missing key " + ", ".join(repr(k) for k in missing))
    extra = sorted(k for k in data if k not in ANALYSIS_KEYS)
    if extra:
        raise InvalidAnalysis("unknown key " + ", ".join(repr(k) for k in extra))
    out: dict[str, list[str]] = {}
    for key in ANALYSIS_KEYS:
        items = data[key]
        if not isinstance(items, list):
            raise InvalidAnalysis(f"{key!r} must be a list of strings, got {json_type(items)}")
        if len(items) > MAX_ITEMS:
            raise InvalidAnalysis(f"{key!r} has {len(items)} items (at most {MAX_ITEMS})")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise InvalidAnalysis(f"{key}[{i}] must be a string, got {json_type(item)}")
            if len(item) > MAX_ITEM_CHARS:
                raise InvalidAnalysis(f"{key}[{i}] is longer than {MAX_ITEM_CHARS} characters")
        out[key] = [item.strip() for item in items]
    return out


def readable(analysis: dict[str, list[str]]) -> str:
    """The analysis as the trace shows it: a heading per key, a line per point."""
    lines: list[str] = []
    for key in ANALYSIS_KEYS:
        lines.append(f"{key.replace('_', ' ')}:")
        lines.extend([f"  - {item}" for item in analysis[key]] or ["  (none)"])
    return "\n".join(lines)


@step_kind("judge")
@dataclass(eq=False)
class JudgeStep(Step):
    """A structured analysis of the candidates as JSON (consensus, contradictions, unique points,
    blind spots), validated with one retry; shown in the trace as the step's scratchpad. Still
    invalid after the retry: the value is the raw reply and the step is `partial`."""

    # Its value is an analysis for a later writer, made without the client's tools.
    answers_with_client_tools: ClassVar[bool] = False
    client_tools_refusal: ClassVar[str] = (
        "answers with a judge's analysis, which does not see the client's tools"
    )

    sources: list[str] = step_refs(SOURCES, key="from", required=True, show="from")
    settings: CallSettings = call_fields(defaults={"prompt": ANALYZE}, scope=("candidates",), show=True)
    shuffle: bool = shuffle_field()
    anonymize: bool = anonymize_field()

    def aliases(self) -> list[str]:
        return [self.settings.model]

    def expected_calls(self, params: Mapping[str, Any]) -> tuple[int, int | None]:
        return 1, 2  # the analysis, and one retry when it is not valid

    async def run(self, rt: StepRuntime) -> TextValue:
        candidates = gather_candidates(rt, self.sources)
        if not candidates:
            raise StepFailed(f"step {self.id!r}: no candidates to analyze")
        shown = present_candidates(rt, candidates, shuffle=self.shuffle, anonymize=self.anonymize)
        variables = {"candidates": shown}
        record = await rt.call(self.settings, name=self.id, variables=variables)
        try:
            return self._valid(rt, record.text, attempt=1)
        except InvalidAnalysis as exc:
            first_problem = str(exc)
            rt.note(f"attempt 1: invalid analysis ({first_problem}); retrying once")
        # The retry sees its own first reply and the problem, after the original prompt.
        prompt = rt.render(self.settings.prompt, **variables)
        turns: list[dict[str, Any]] = [{"role": "user", "content": prompt}] if prompt else []
        turns += [
            {"role": "assistant", "content": record.text},
            {"role": "user", "content": RETRY.format(problem=first_problem)},
        ]
        retry_settings = dataclasses.replace(self.settings, prompt=None)
        record = await rt.call(
            retry_settings, name=f"{self.id}_retry", variables=variables, after=turns, cache_salt="retry"
        )
        try:
            return self._valid(rt, record.text, attempt=2)
        except InvalidAnalysis as exc:
            note = f"attempt 2: invalid analysis ({exc}); the next step gets the judge's raw reply"
            rt.note(note)
            return TextValue(
                record.text,
                message=record.message,
                partial=True,
                stopped_by="invalid analysis JSON after 1 retry",
                notes={"analysis": "invalid", "analysis_problem": str(exc)},
            )

    def _valid(self, rt: StepRuntime, text: str, *, attempt: int) -> TextValue:
        analysis = parse_analysis(text)
        rt.note(f"analysis (valid JSON, attempt {attempt}):\n{readable(analysis)}")
        return TextValue(json.dumps(analysis, ensure_ascii=False, indent=1))
