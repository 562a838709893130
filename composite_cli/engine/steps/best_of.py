"""`best_of`: best-of-N (DSPy BestOfN): sample candidates one at a time, score each with a judge
rubric or a scorer function, stop early when one reaches `threshold`, return the best.

Scores go to the trace: a scratchpad line per candidate and a summary, and the value's notes (the
response's metadata). A judge reply with no `SCORE: <0-10>` line leaves that candidate unscored
(noted, never a silent 0). A scorer function is the user's code (`package.module:function` under
`--allow-code`, resolved through a dotted.Registry like eval scorers): `fn(answer, input)` returns
a number; one that raises or returns something else fails the step with that in one line.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from composite_cli.dotted import DottedPathError, Registry, is_dotted_path
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParamRef, ParseContext, resolve
from composite_cli.engine.steps.base import MAX_SAMPLES, Step
from composite_cli.engine.steps.call_settings import CallSettings, call_fields
from composite_cli.engine.steps.fields import compile_default, declare, number, text
from composite_cli.engine.templates import Template
from composite_cli.engine.values import TextValue
from composite_cli.errors import StepFailed
from composite_cli.yamlfile import LineDict, field_path

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

RUBRIC = (
    "Rate the answer you just gave to the user's last message for correctness, completeness and "
    "clarity, from 0 (useless or wrong) to 10 (correct and complete). Give one or two sentences "
    "of reasons, then a last line of the form: SCORE: <number>"
)
JUDGE_SCALE = 10.0
_SCORE = re.compile(r"SCORE\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)

# Scorer functions a mode names by dotted path (no built-ins): imported only under --allow-code.
BON_SCORERS: Registry[Callable[..., Any]] = Registry("scorer")


def judge_score(reply: str) -> float | None:
    """The score on the judge's last `SCORE:` line, when it is within 0-10; else None."""
    found = _SCORE.findall(reply)
    if not found:
        return None
    score = float(found[-1])
    return score if 0.0 <= score <= JUDGE_SCALE else None


@step_kind("best_of")
@dataclass(eq=False)
class BestOfStep(Step):
    """Best-of-N: candidates one at a time, each scored by a judge (`judge_model`, `rubric`) or a
    scorer function (`scorer`); stops at the first that reaches `threshold`; the best is the value."""

    # Its answer is one of its candidates, internal calls: the client's tools reach none of them.
    answers_with_client_tools: ClassVar[bool] = False
    client_tools_refusal: ClassVar[str] = (
        "answers with the best of its candidates, which do not see the client's tools"
    )

    settings: CallSettings = call_fields("the candidates' call fields", scope=("sample",), show=True)
    samples: int | ParamRef = number(
        "the most candidates", 4, integer=True, minimum=1, maximum=MAX_SAMPLES, key="n", show=True
    )
    threshold: float | ParamRef | None = number(
        "a score that stops the sampling early (judge scores are 0 to 10)", None, show=True
    )
    judge_model: str | None = declare(
        "alias", "the model that scores each candidate with the rubric", show="judge"
    )
    rubric: Template | None = declare(
        "template",
        "the judge's instructions, after the candidate (as the assistant's reply); its last line "
        "must be `SCORE: <0-10>`",
        note="a built-in rubric when none is given",
    )
    scorer: str = text(
        "instead of a judge, `package.module:function` (under `--allow-code`): fn(answer, input) -> number",
        "",
        show=True,
    )
    scorer_fn: Callable[..., Any] | None = None

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        if self.scorer and self.judge_model:
            pc.error(
                node, "scorer", field_path(self.where, "scorer"), "give a scorer or a judge_model, not both"
            )
        elif not self.scorer and not self.judge_model:
            pc.error(
                node,
                None,
                field_path(self.where, "judge_model"),
                "a best_of step needs judge_model or scorer",
            )
        if self.scorer:
            if "rubric" in node:
                pc.error(
                    node,
                    "rubric",
                    field_path(self.where, "rubric"),
                    "a rubric is for judge_model, not a scorer",
                )
            self._resolve_scorer(node, pc)
        elif self.rubric is None:
            self.rubric = compile_default(RUBRIC, names)
        if isinstance(self.threshold, (int, float)) and self.judge_model:
            if not 0 <= self.threshold <= JUDGE_SCALE:
                pc.error(
                    node,
                    "threshold",
                    field_path(self.where, "threshold"),
                    f"a judge scores 0 to 10, got {self.threshold:g}",
                )

    def _resolve_scorer(self, node: LineDict, pc: ParseContext) -> None:
        where = field_path(self.where, "scorer")
        if not is_dotted_path(self.scorer):
            pc.error(node, "scorer", where, f"{self.scorer!r} is not package.module:function")
            return
        try:
            self.scorer_fn = BON_SCORERS.resolve(self.scorer, pc.allow_code)
        except DottedPathError as exc:
            pc.error(node, "scorer", where, exc.reason)

    def aliases(self) -> list[str]:
        return [self.settings.model] + ([self.judge_model] if self.judge_model else [])

    def expected_calls(self, params: Mapping[str, Any]) -> tuple[int, int | None]:
        n = int(resolve(self.samples, params))
        per = 2 if self.judge_model else 1
        return per, per * n

    async def run(self, rt: StepRuntime) -> TextValue:
        n = int(rt.resolve(self.samples))
        threshold = None if self.threshold is None else float(rt.resolve(self.threshold))
        best: TextValue | None = None
        best_score: float | None = None
        best_index = 0
        scores: list[float | None] = []
        for i in range(1, n + 1):
            record = await rt.call(
                self.settings, name=f"candidate{i}", variables={"sample": i}, cache_salt=f"candidate{i}"
            )
            candidate = TextValue.from_call(record)
            score = await self._score(rt, i, candidate)
            scores.append(score)
            if best is None or (score is not None and (best_score is None or score > best_score)):
                best, best_score, best_index = candidate, score, i
            if threshold is not None and score is not None and score >= threshold:
                rt.note(f"candidate {i} reached the threshold {threshold:g}: stopped after {i} of {n}")
                break
        assert best is not None  # n >= 1
        shown = ", ".join("-" if s is None else f"{s:g}" for s in scores)
        if best_score is None:
            rt.note(f"scores: [{shown}]; no candidate could be scored: the answer is candidate 1")
        else:
            rt.note(f"scores: [{shown}]; picked candidate {best_index} (score {best_score:g})")
        best.notes.update(best_of={"scores": scores, "picked": best_index, "threshold": threshold})
        return best

    async def _score(self, rt: StepRuntime, i: int, candidate: TextValue) -> float | None:
        if self.scorer_fn is not None:
            question = str(rt.variables().get("input") or "")
            try:
                value = await asyncio.to_thread(self.scorer_fn, candidate.text, question)
            except Exception as exc:  # the user's code: its failure ends the step, named
                raise StepFailed(
                    f"step {self.id!r}: scorer {self.scorer} raised {type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise StepFailed(
                    f"step {self.id!r}: scorer {self.scorer} returned {value!r} for candidate {i}, "
                    "not a number"
                )
            rt.note(f"candidate {i}: score {float(value):g} (scorer)")
            return float(value)
        judge = CallSettings(model=self.judge_model or "", prompt=self.rubric, generation={"temperature": 0})
        record = await rt.call(
            judge,
            name=f"score{i}",
            after=[{"role": "assistant", "content": candidate.text}],
            cache_salt=f"score{i}",
        )
        score = judge_score(record.text)
        if score is None:
            rt.note(f"candidate {i}: unscored (the judge's reply has no SCORE: line within 0-10)")
        else:
            rt.note(f"candidate {i}: score {score:g} (judge)")
        return score
