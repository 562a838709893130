"""The Step base class: the fields every kind has, and the generic parse that reads any kind's
declared fields (see fields.py). Limits on what a mode file may ask of this machine live here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.call_settings import CALL_FIELDS, MODE_LITELLM_PARAMS, CallSettings
from composite_cli.engine.steps.fields import number, read_declared, step_ref, summary_of, text, yaml_keys
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

__all__ = ["CALL_FIELDS", "MODE_LITELLM_PARAMS", "CallSettings", "Step", "value_names"]

DEFAULT_TIMEOUT = 300.0
# The most a mode file (shared data) or a request's composite.params may ask of this machine.
MAX_SAMPLES = 128  # a fan-out's parallel samples (`n`), as the server's `n`
MAX_CONCURRENCY = 64  # parallel sub-calls of an rlm step
MAX_RLM_DEPTH = 8  # nested RLMs, each with its own sandboxed REPL process
MAX_REPL_MEMORY_MB = 16_384  # one REPL's address space


@dataclass(eq=False)
class Step(ABC):
    """One step of a mode. A kind is a dataclass subclass registered with @step_kind; its YAML
    fields are declared once (fields.py) and read by the generic `parse`; `finish` reads what is
    nested (bodies, experts). Steps compare by identity."""

    kind: ClassVar[str] = ""

    id: str = ""
    line: int = 0
    where: str = ""
    timeout: float | ParamRef = number("seconds the step may take", DEFAULT_TIMEOUT, minimum=0.001)
    updates: str | None = step_ref("an earlier step whose value this step's value replaces")
    description: str = text("what the step is for", "")

    @classmethod
    def parse(cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool) -> Step:
        """Build the step from its YAML node, reporting problems to `pc`."""
        step = cls(id=str(node["id"]), line=node.line, where=where)
        read_declared(step, node, pc, names, in_loop)
        pc.check_keys(node, yaml_keys(cls), where)
        step.finish(node, pc, names, in_loop=in_loop)
        return step

    def finish(  # noqa: B027 - a hook: most kinds have nothing nested to read
        self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool
    ) -> None:
        """Read the kind's nested fields (declared with hook=True) and check across fields."""

    def children(self) -> list[list[Step]]:
        """Nested step lists (loop bodies, if branches)."""
        return []

    def aliases(self) -> list[str]:
        """Model aliases this step itself calls."""
        return []

    def passes_value_to(self) -> set[str]:
        """Other names that end up holding this step's value (an `if` passes on its branch's)."""
        return set()

    def summary(self) -> str:
        """A short description for `composite modes show`: the fields the kind declares shown."""
        return summary_of(self)

    @abstractmethod
    async def run(self, rt: StepRuntime) -> Any:
        """Execute the step and return its value (TextValue or Candidates)."""


def value_names(step: Step) -> set[str]:
    """Names that hold this step's value once it finishes: its id, what it updates, and so on."""
    names = {step.id}
    if step.updates:
        names.add(step.updates)
    return names | step.passes_value_to()
