"""`vote`: pick one candidate, by majority over normalized answers or by a judge model."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import TYPE_CHECKING

from composite_cli.engine.prompts import JUDGE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import CALL_FIELDS, COMMON_FIELDS, CallSettings, Step
from composite_cli.engine.steps.synthesize import gather_candidates, parse_sources
from composite_cli.engine.templates import Template
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.errors import StepFailed
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    """Case, punctuation and whitespace folded, so 'Paris.' and ' paris' count as one answer."""
    return " ".join(text.lower().translate(_PUNCT).split())


def majority(candidates: Candidates) -> tuple[int, Counter[str]]:
    """Index of the winning candidate (ties: the earliest answer) and the tally."""
    keys = [normalize(c) for c in candidates]
    tally = Counter(keys)
    best = max(tally.values())
    for i, key in enumerate(keys):
        if tally[key] == best:
            return i, tally
    raise ValueError("no candidates")


@step_kind("vote")
class VoteStep(Step):
    FIELDS = COMMON_FIELDS | CALL_FIELDS | {"from", "method"}
    sources: list[str]
    method: str
    settings: CallSettings | None

    @classmethod
    def parse(
        cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool
    ) -> VoteStep:
        step = cls()
        step.init_common(node, pc, where, names)
        step.sources = parse_sources(node, pc, where, names)
        step.method = pc.string(node, "method", where) or "majority"
        step.settings = None
        if step.method == "judge":
            inner = names | {"candidates"}
            step.settings = CallSettings.parse(node, pc, where, inner)
            if step.settings.prompt is None and "prompt" not in node:
                step.settings.prompt = Template.compile(JUDGE, inner)
        elif step.method == "majority":
            extra = sorted(set(node) & (CALL_FIELDS - {"model"}))
            if "model" in node or extra:
                key = "model" if "model" in node else extra[0]
                pc.error(node, key, f"{where}.{key}", "a majority vote calls no model (use method: judge)")
        else:
            pc.error(node, "method", f"{where}.method", f"must be majority or judge, got {step.method!r}")
        return step

    def aliases(self) -> list[str]:
        return [self.settings.model] if self.settings else []

    def summary(self) -> str:
        judge = f" model={self.settings.model}" if self.settings else ""
        return f"from={','.join(self.sources)} method={self.method}{judge}"

    async def run(self, rt: StepRuntime) -> TextValue:
        candidates = gather_candidates(rt, self.sources)
        if not candidates:
            raise StepFailed(f"step {self.id!r}: nothing to vote on")
        if self.settings is None:
            index, tally = majority(candidates)
            rt.note(f"majority tally: {dict(tally)}")
            return candidates[index]
        record = await rt.call(self.settings, name=self.id, variables={"candidates": candidates})
        match = re.search(r"\d+", record.text)
        choice = int(match.group()) if match else 0
        if 1 <= choice <= len(candidates):
            rt.note(f"judge picked candidate {choice}")
            return candidates[choice - 1]
        index, tally = majority(candidates)
        rt.note(f"judge reply {record.text[:80]!r} named no candidate; used majority {dict(tally)}")
        return candidates[index]
