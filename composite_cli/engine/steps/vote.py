"""`vote`: pick one candidate, by majority over normalized answers or by a judge model."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from composite_cli.answers import EXTRACTS, extract_answer
from composite_cli.engine.prompts import JUDGE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.call_settings import CALL_FIELDS, CallSettings, call_fields
from composite_cli.engine.steps.fields import choice_list, decl_of, declare, read_field, step_refs
from composite_cli.engine.steps.synthesize import (
    SOURCES,
    anonymize_field,
    gather_candidates,
    present_candidates,
    shuffle_field,
)
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.errors import BadParameter, StepFailed
from composite_cli.yamlfile import LineDict, field_path

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

# What a majority vote counts (`extract`) is read by composite_cli/answers.py, which the eval
# scorers use too: a number is the one the answer marks ("the answer is 23", "Answer: 23",
# \\boxed{23}, a final "= 23"), else its last number; a letter A-E is the one it states (two
# stated letters: ambiguous, not counted); a phrase is the marked text, else the last line;
# phrases and whole texts are compared after `normalize_exact`.
__all__ = ["EXTRACTS", "VoteStep", "extract_answer", "majority"]


def majority(candidates: Candidates, how: str = "text") -> tuple[int | None, Counter[str], list[str | None]]:
    """Index of the winning candidate, the tally and each candidate's extracted answer.

    Ties go to the answer whose first sample comes earliest in the fan-out's order (sample1, then
    sample2, ...; experts in the order the mode lists them). Candidates that give no answer of
    the kind are not counted; when none gives one, there is no winner (None)."""
    keys = [extract_answer(c, how) for c in candidates]
    tally = Counter(k for k in keys if k is not None)
    if not tally:
        return None, tally, keys
    best = max(tally.values())
    for i, key in enumerate(keys):
        if key is not None and tally[key] == best:
            return i, tally, keys
    raise AssertionError("unreachable: a counted answer has a first sample")


@step_kind("vote")
@dataclass(eq=False)
class VoteStep(Step):
    """Picks one candidate: the most common normalized answer, or the one a judge model names."""

    # Its answer is one of the candidates as they were made: no call of its own sees the client's tools.
    answers_with_client_tools: ClassVar[bool] = False
    client_tools_refusal: ClassVar[str] = (
        "answers with one of its samples, which do not see the client's tools"
    )

    sources: list[str] = step_refs(SOURCES, key="from", required=True, show="from")
    method: str = declare(
        "choice",
        "how to pick: `majority` (normalized answers, no model call) or `judge` (a model picks a "
        "numbered candidate)",
        "majority",
        choices=(("majority", ""), ("judge", "")),
        show=True,
    )
    settings: CallSettings | None = call_fields(
        "with `method: judge`, the judge's call fields",
        defaults={"prompt": JUDGE},
        scope=("candidates",),
        hook=True,
        show=True,
        value=None,
    )
    extract: str | ParamRef = declare(
        "choice",
        "with `method: majority`, what is counted (or `$name`, a string mode parameter)",
        "text",
        choices=EXTRACTS,
        hook=True,
    )
    shuffle: bool = shuffle_field()
    anonymize: bool = anonymize_field()

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        self._read_extract(node, pc, names)
        method = node.get("method", "majority")
        if method == "judge":
            self.settings = read_field(decl_of(type(self), "settings"), node, pc, self.where, names)
        elif method == "majority":
            extra = sorted(set(node) & (CALL_FIELDS - {"model"}))
            if "model" in node or extra:
                key = "model" if "model" in node else extra[0]
                pc.error(
                    node, key, f"{self.where}.{key}", "a majority vote calls no model (use method: judge)"
                )
            for key in ("shuffle", "anonymize"):
                if key in node:
                    pc.error(
                        node,
                        key,
                        f"{self.where}.{key}",
                        "a majority vote shows the candidates to no model (use method: judge)",
                    )

    def _read_extract(self, node: LineDict, pc: ParseContext, names: set[str]) -> None:
        raw = node.get("extract")
        decl = decl_of(type(self), "extract")
        if not (isinstance(raw, str) and raw.startswith("$")):
            self.extract = read_field(decl, node, pc, self.where, names)
            return
        name = raw[1:]
        where = field_path(self.where, "extract")
        default = pc.params.get(name)
        allowed = [value for value, _ in EXTRACTS]
        if name not in pc.params:
            declared = ", ".join(sorted(pc.params)) or "(none)"
            pc.error(node, "extract", where, f"unknown parameter {name!r} (declared: {declared})")
        elif default not in allowed:
            pc.error(
                node, "extract", where, f"parameter {name!r} defaults to {default!r}, not {choice_list(decl)}"
            )
        else:
            self.extract = ParamRef(name)

    def _extract(self, rt: StepRuntime) -> str:
        value = rt.resolve(self.extract)
        if value not in [v for v, _ in EXTRACTS]:
            name = self.extract.name if isinstance(self.extract, ParamRef) else "extract"
            allowed = ", ".join(v for v, _ in EXTRACTS)
            raise BadParameter(
                f"parameter {name!r} must be one of {allowed}, got {value!r}", f"composite.params.{name}"
            )
        return str(value)

    def aliases(self) -> list[str]:
        return [self.settings.model] if self.settings else []

    async def run(self, rt: StepRuntime) -> TextValue:
        candidates = gather_candidates(rt, self.sources)
        if not candidates:
            raise StepFailed(f"step {self.id!r}: nothing to vote on")
        if self.settings is None:
            return self._majority(rt, candidates)
        shown = present_candidates(rt, candidates, shuffle=self.shuffle, anonymize=self.anonymize)
        record = await rt.call(self.settings, name=self.id, variables={"candidates": shown})
        match = re.search(r"\d+", record.text)
        choice = int(match.group()) if match else 0
        if 1 <= choice <= len(shown):
            rt.note(f"judge picked candidate {choice} ({shown.names[choice - 1]})")
            return shown[choice - 1]
        rt.note(f"judge reply {record.text[:80]!r} named no candidate; falling back to a majority")
        return self._majority(rt, candidates)

    def _majority(self, rt: StepRuntime, candidates: Candidates) -> TextValue:
        how = self._extract(rt)
        index, tally, keys = majority(candidates, how)
        if index is None:
            rt.note(f"no candidate gave a {how}: the whole texts are counted instead")
            how = "text"
            index, tally, keys = majority(candidates, how)
            if index is None:
                raise StepFailed(f"step {self.id!r}: every candidate is empty")
        answers = ", ".join(f"{name}={key!r}" for name, key in zip(candidates.names, keys, strict=True))
        rt.note(f"answers ({how}): {answers}")
        rt.note(f"majority tally: {dict(tally.most_common())}")
        answer = keys[index] or ""
        top = [key for key, count in tally.items() if count == tally[answer]]
        if len(top) > 1:
            rt.note(f"tie between {top}: the earliest sample's answer wins ({candidates.names[index]})")
        rt.note(
            f"winner: {answer!r}, {tally[answer]} of {len(candidates)}; "
            f"the reply is {candidates.names[index]}'s text"
        )
        winner = candidates[index]
        vote = {"answer": answer, "votes": tally[answer], "of": len(candidates)}
        return TextValue(
            winner.text,
            message=winner.message,
            finish_reason=winner.finish_reason,
            notes={**winner.notes, "vote": vote},
        )
