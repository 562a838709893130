"""The Step base class and the model-call settings that several kinds share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from composite_cli.engine.spec import ParamRef, ParseContext, resolve
from composite_cli.engine.templates import Template
from composite_cli.tools import InternalTool, ToolError, load_tool
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

COMMON_FIELDS = {"id", "kind", "timeout", "updates", "description"}
CALL_FIELDS = {
    "model",
    "system",
    "prompt",
    "conversation",
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "seed",
    "params",
    "retries",
    "backoff",
    "call_timeout",
    "tools",
    "max_tool_rounds",
    "tool_timeout",
    "client_tools",
}
DEFAULT_TIMEOUT = 300.0
# The most a mode file (shared data) or a request's composite.params may ask of this machine.
MAX_SAMPLES = 128  # a fan-out's parallel samples (`n`), as the server's `n`
MAX_CONCURRENCY = 64  # parallel sub-calls of an rlm step
MAX_RLM_DEPTH = 8  # nested RLMs, each with its own sandboxed REPL process
MAX_REPL_MEMORY_MB = 16_384  # one REPL's address space
# What a step's `params:` may pass to LiteLLM: how the model generates, nothing else. Where a call
# goes (model, api_base), with which key, headers, callbacks, costs and mock answers belong to the
# profile in the user's config: a mode file is data, and one from someone else must not be able to
# send the user's key to another server.
MODE_LITELLM_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "thinking",
        "verbosity",
        "parallel_tool_calls",
    }
)


@dataclass
class CallSettings:
    """How a step calls a model: alias, prompt templates and generation parameters."""

    model: str
    system: Template | None = None
    prompt: Template | None = None
    conversation: bool = True
    generation: dict[str, Any] = field(default_factory=dict)
    retries: int | ParamRef = 0
    backoff: float | ParamRef = 0.5
    call_timeout: float | ParamRef | None = None
    # Internal tools composite runs for this step, and how many rounds of them it allows.
    tools: list[InternalTool] = field(default_factory=list)
    max_tool_rounds: int | ParamRef = 5
    tool_timeout: float | ParamRef = 30.0
    # A non-final step that may call the client's tools; if it does, the run returns those calls.
    client_tools: bool = False

    @classmethod
    def parse(
        cls,
        node: LineDict,
        pc: ParseContext,
        where: str,
        names: set[str],
        *,
        inherit: CallSettings | None = None,
        require_model: bool = True,
    ) -> CallSettings:
        """Read call fields from `node`; fields it lacks come from `inherit` (e.g. the fan-out
        step's settings for one of its experts)."""
        base = inherit or cls(model="")
        model = pc.string(node, "model", where, required=require_model and not base.model)
        generation: dict[str, Any] = dict(base.generation)
        for key, integer, minimum in (
            ("temperature", False, 0.0),
            ("top_p", False, 0.0),
            ("max_tokens", True, 1),
            ("seed", True, None),
        ):
            value = pc.number(node, key, where, None, integer=integer, minimum=minimum)
            if value is not None:
                generation[key] = value
        if "stop" in node:
            stop = node["stop"]
            if isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
                generation["stop"] = stop
            else:
                pc.error(node, "stop", f"{where}.stop", "must be a string or a list of strings")
        extra = node.get("params")
        if extra is not None:
            if isinstance(extra, dict):
                generation.update(_generation_params(extra, pc, f"{where}.params"))
            else:
                pc.error(node, "params", f"{where}.params", "must be a mapping of extra LiteLLM parameters")
        conversation = pc.boolean(node, "conversation", where, base.conversation)
        prompt = pc.template(node, "prompt", where, names) if "prompt" in node else base.prompt
        if not conversation and prompt is None and "prompt" not in node:
            pc.error(
                node,
                "conversation",
                f"{where}.conversation",
                "a step that does not see the conversation needs a prompt",
            )
        return cls(
            model=model or base.model,
            system=pc.template(node, "system", where, names) if "system" in node else base.system,
            prompt=prompt,
            conversation=conversation,
            generation=generation,
            retries=pc.number(node, "retries", where, base.retries, integer=True, minimum=0),
            backoff=pc.number(node, "backoff", where, base.backoff, minimum=0.0),
            call_timeout=pc.number(node, "call_timeout", where, base.call_timeout, minimum=0.001),
            tools=_parse_tools(node, pc, where) if "tools" in node else list(base.tools),
            max_tool_rounds=pc.number(
                node, "max_tool_rounds", where, base.max_tool_rounds, integer=True, minimum=0
            ),
            tool_timeout=pc.number(node, "tool_timeout", where, base.tool_timeout, minimum=0.001),
            client_tools=pc.boolean(node, "client_tools", where, base.client_tools),
        )

    def resolved_generation(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: resolve(v, params) for k, v in self.generation.items()}


def _generation_params(extra: dict[str, Any], pc: ParseContext, where: str) -> dict[str, Any]:
    """The step's extra LiteLLM parameters that a mode may set (MODE_LITELLM_PARAMS)."""
    allowed: dict[str, Any] = {}
    for key, value in extra.items():
        if key in MODE_LITELLM_PARAMS:
            allowed[key] = value
            continue
        pc.error(
            extra,
            key,
            f"{where}.{key}",
            "a mode may set generation parameters only (where a call goes, its key, headers and "
            "callbacks belong to a profile in your config); allowed: "
            + ", ".join(sorted(MODE_LITELLM_PARAMS)),
        )
    return allowed


def _parse_tools(node: LineDict, pc: ParseContext, where: str) -> list[InternalTool]:
    """`tools: [think, calculator, package.module:function]`: internal tools, loaded now."""
    raw = node["tools"]
    if not isinstance(raw, list):
        pc.error(node, "tools", f"{where}.tools", "must be a list of tool names")
        return []
    tools: list[InternalTool] = []
    for i, spec in enumerate(raw):
        field_name = f"{where}.tools[{i}]"
        if not isinstance(spec, str):
            pc.error(raw, i, field_name, "must be a tool name or package.module:function")
            continue
        try:
            tool = load_tool(spec, pc.allow_code)
        except ToolError as exc:
            pc.error(raw, i, field_name, str(exc))
            continue
        if any(t.name == tool.name for t in tools):
            pc.error(raw, i, field_name, f"duplicate tool {tool.name!r}")
            continue
        tools.append(tool)
    return tools


class Step(ABC):
    """One step of a mode. Subclasses register with @step_kind and implement parse() and run()."""

    kind: ClassVar[str] = ""
    FIELDS: ClassVar[set[str]] = COMMON_FIELDS

    id: str
    line: int
    where: str
    timeout: float | ParamRef
    updates: str | None
    description: str

    def init_common(self, node: LineDict, pc: ParseContext, where: str, names: set[str]) -> None:
        self.id = str(node["id"])
        self.line = node.line
        self.where = where
        self.timeout = pc.number(node, "timeout", where, DEFAULT_TIMEOUT, minimum=0.001)
        self.updates = pc.step_ref(node, "updates", where, names, required=False)
        self.description = pc.string(node, "description", where) or ""
        pc.check_keys(node, self.FIELDS, where)

    @classmethod
    @abstractmethod
    def parse(cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool) -> Step:
        """Build the step from its YAML node, reporting problems to `pc`."""

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
        """A short description for `composite modes show`."""
        return ""

    @abstractmethod
    async def run(self, rt: StepRuntime) -> Any:
        """Execute the step and return its value (TextValue or Candidates)."""


def value_names(step: Step) -> set[str]:
    """Names that hold this step's value once it finishes: its id, what it updates, and so on."""
    names = {step.id}
    if step.updates:
        names.add(step.updates)
    return names | step.passes_value_to()
