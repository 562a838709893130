"""The call fields several kinds share (`call`, `synthesize`, `reflect`, a fan-out's experts, a
judge vote): declared once here as a group, read into `CallSettings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from composite_cli.engine.spec import ParamRef, ParseContext, resolve
from composite_cli.engine.steps.fields import Decl, compile_default, declare, read_field
from composite_cli.engine.templates import Template
from composite_cli.tools import InternalTool, ToolError, load_tool
from composite_cli.yamlfile import LineDict

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
# Passed to LiteLLM as they are (the `generation` of CallSettings).
_GENERATION = ("temperature", "top_p", "max_tokens", "seed", "stop")

# The group, in the order the reference lists it.
CALL_GROUP: tuple[Decl, ...] = (
    Decl("alias", "the model alias", key="model", required=True),
    Decl("template", "system prompt", key="system"),
    Decl("template", "a final user message", key="prompt"),
    Decl("boolean", "whether the step sees the caller's conversation", key="conversation", default=True),
    Decl("number", "", key="temperature", minimum=0.0),
    Decl("integer", "", key="max_tokens", minimum=1),
    Decl("number", "", key="top_p", minimum=0.0),
    Decl("custom", "a string or a list of them", key="stop"),
    Decl("integer", "", key="seed"),
    Decl(
        "custom",
        "extra generation parameters: "
        + ", ".join(f"`{p}`" for p in sorted(MODE_LITELLM_PARAMS - set(_GENERATION)))
        + "; anything else, such as `api_base`, `api_key` or `extra_headers`, belongs to a profile",
        key="params",
    ),
    Decl("integer", "retries of a failed call", key="retries", default=0, minimum=0),
    Decl("number", "seconds before the first retry, doubling", key="backoff", default=0.5, minimum=0.0),
    Decl("number", "seconds one call may take", key="call_timeout", minimum=0.001),
    Decl(
        "custom", "internal tools: `think`, `calculator`, `python` or `package.module:function`", key="tools"
    ),
    Decl("integer", "", key="max_tool_rounds", default=5, minimum=0),
    Decl("number", "seconds", key="tool_timeout", default=30.0, minimum=0.001),
    Decl(
        "boolean",
        "a non-final step that may call the client's tools: see Tools",
        key="client_tools",
        default=False,
    ),
)
CALL_FIELDS = frozenset(d.key for d in CALL_GROUP)


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
        defaults: dict[str, str] | None = None,
    ) -> CallSettings:
        """Read call fields from `node`; fields it lacks come from `inherit` (e.g. the fan-out
        step's settings for one of its experts), then from the built-in `defaults` templates."""
        base = inherit or cls(model="")
        values: dict[str, Any] = {}
        for decl in CALL_GROUP:
            if decl.type != "custom" and decl.key != "model" and node.get(decl.key) is not None:
                values[decl.key] = read_field(decl, node, pc, where, names)
        model = pc.string(node, "model", where, required=require_model and not base.model)
        generation: dict[str, Any] = dict(base.generation)
        for key in _GENERATION:
            if values.get(key) is not None:
                generation[key] = values[key]
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
        conversation = values.get("conversation", base.conversation)
        prompt = values.get("prompt") if "prompt" in node else base.prompt
        system = values.get("system") if "system" in node else base.system
        for key, source in (defaults or {}).items():
            if key not in node and (prompt if key == "prompt" else system) is None:
                if key == "prompt":
                    prompt = compile_default(source, names)
                else:
                    system = compile_default(source, names)
        if not conversation and prompt is None and "prompt" not in node:
            pc.error(
                node,
                "conversation",
                f"{where}.conversation",
                "a step that does not see the conversation needs a prompt",
            )

        def given(key: str) -> Any:
            value = values.get(key)
            return getattr(base, key) if value is None else value

        return cls(
            model=model or base.model,
            system=system,
            prompt=prompt,
            conversation=conversation,
            generation=generation,
            retries=given("retries"),
            backoff=given("backoff"),
            call_timeout=given("call_timeout"),
            tools=_parse_tools(node, pc, where) if "tools" in node else list(base.tools),
            max_tool_rounds=given("max_tool_rounds"),
            tool_timeout=given("tool_timeout"),
            client_tools=given("client_tools"),
        )

    def resolved_generation(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: resolve(v, params) for k, v in self.generation.items()}


def call_fields(doc: str = "", *, defaults: dict[str, str] | None = None, **options: Any) -> Any:
    """A step's call fields, as one declared field holding CallSettings. `defaults`: built-in
    templates for `system` / `prompt` when the file gives none; `scope`: names the templates see
    besides earlier steps' ids."""
    template_defaults = dict(defaults or {})

    def reader(decl: Decl, node: LineDict, pc: ParseContext, where: str, names: set[str], _: bool) -> Any:
        return CallSettings.parse(node, pc, where, names | set(decl.scope), defaults=template_defaults)

    note = "; ".join(f"a built-in `{key}` when none is given" for key in template_defaults)
    if "value" not in options:
        options["default_factory"] = lambda: CallSettings(model="")
    return declare(
        "call",
        doc or "call fields",
        group=CALL_GROUP,
        reader=reader,
        note=note,
        **options,
    )


def read_call(
    decl: Decl, node: LineDict, pc: ParseContext, where: str, names: set[str], **options: Any
) -> CallSettings:
    """A call group read with other options than its declaration's (a fan-out's experts)."""
    return CallSettings.parse(node, pc, where, names | set(decl.scope), **options)


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
