"""One step's model call with tools: the client's (returned to the client, never run here) and
the mode's internal ones (run here, never shown to the client).

The loop: call the model → run the internal tools it asked for → feed the results back → call
again, up to `max_rounds` times. Each internal tool call is a child step in the trace (`tool`, or
`think` with the thought in its scratchpad). A call to a tool the step did not declare is refused
and recorded, and the model is told so. When the model asks for client tools, composite runs the
internal calls of that response and returns only the client's calls.

Out of rounds, the model is asked for its final answer: the internal tools are no longer offered and
a last message tells it to answer now. A step with internal tools never returns an empty answer
silently: an empty reply is asked again once in that way, and a second one is a StepFailed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from composite_cli.calls import CallRequest, complete, describe_error
from composite_cli.errors import StepFailed
from composite_cli.events import CallRecord
from composite_cli.tools.base import InternalTool, ToolError

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

DEFAULT_TOOL_TIMEOUT = 30.0

# The last message of a step's final call once its internal tool rounds are used up.
FINAL_ANSWER = "You have no tool rounds left. Answer my last message now, in plain text."
FINAL_ANSWER_OR_TOOL = (
    "You have no private tool rounds left. Answer my last message now, in plain text, or call one "
    "of my tools if you still need one."
)


def tool_names(tools: Sequence[dict[str, Any]] | None) -> set[str]:
    return {t.get("function", {}).get("name", "") for t in tools or [] if isinstance(t, dict)}


def _has_tool_history(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


def _call_name(call: dict[str, Any]) -> str:
    return str((call.get("function") or {}).get("name") or "")


async def call_with_tools(
    rt: StepRuntime,
    request: CallRequest,
    *,
    internal: Sequence[InternalTool],
    client_allowed: bool,
    max_rounds: int,
    tool_timeout: float = DEFAULT_TOOL_TIMEOUT,
) -> CallRecord:
    """Make the step's call, running internal tools until the model answers or asks the client."""
    client = list(rt.ctx.request.tools or [])
    client_choice = rt.ctx.request.tool_choice
    by_name = {tool.name: tool for tool in internal}
    offered_client: list[dict[str, Any]] = []
    choice: Any = None
    if client_allowed and client and client_choice != "none":
        offered_client, choice = client, client_choice
    elif client and _has_tool_history(request.messages):
        # The conversation holds tool calls: some providers reject that unless the tools are
        # declared, so declare them but let the model call none of them.
        offered_client = client
        choice = "none" if not internal else None
    messages = list(request.messages)
    rounds = 0
    asked_again = False  # an empty answer was met by asking for the final answer
    while True:
        final = rounds >= max_rounds or asked_again  # no internal tools any more
        offered = ([t.definition() for t in internal] if not final else []) + offered_client
        sent = messages
        if internal and final and (rounds or asked_again):
            ask = FINAL_ANSWER_OR_TOOL if offered_client and choice != "none" else FINAL_ANSWER
            sent = [*messages, {"role": "user", "content": ask}]
        attempt = dataclasses.replace(
            request, messages=sent, tools=offered or None, tool_choice=choice if offered else None
        )
        record = await complete(rt.ctx, attempt)
        calls = list(record.message.get("tool_calls") or [])
        if not calls:
            if internal and not record.text.strip():
                if final:
                    raise StepFailed(_empty_answer(rounds))
                rt.note("the model gave an empty answer: asked again for its final answer")
                asked_again = True
                continue
            return record
        if not internal:
            if not client_allowed:
                record = _drop_tool_calls(rt, record, calls)
            return record  # plain pass-through: the client gets the calls as the model made them
        mine = [c for c in calls if _call_name(c) in by_name and not final]
        theirs = [c for c in calls if client_allowed and _call_name(c) in tool_names(offered_client)]
        refused = [c for c in calls if c not in mine and c not in theirs]
        if final and not theirs:
            # Asked for the final answer and the model still wants internal tools: keep its text.
            record = _drop_tool_calls(rt, record, calls)
            if not record.text.strip():
                raise StepFailed(_empty_answer(rounds))
            return record
        results = [await _run_internal(rt, by_name[_call_name(c)], c, tool_timeout) for c in mine]
        results += [await _refuse(rt, c) for c in refused]
        if theirs:
            # Internal calls are done; the client gets only its own calls (ids intact).
            message = {**record.message, "tool_calls": theirs}
            return dataclasses.replace(record, message=message, finish_reason="tool_calls")
        assistant = {"role": "assistant", "content": record.message.get("content") or "", "tool_calls": calls}
        messages = [*messages, assistant, *results]
        rounds += 1


def _empty_answer(rounds: int) -> str:
    return (
        f"the model gave no answer: asked for its final answer after {rounds} tool round(s), "
        "it replied with nothing but tool calls it may no longer make, or with empty text"
    )


def _drop_tool_calls(rt: StepRuntime, record: CallRecord, calls: list[dict[str, Any]]) -> CallRecord:
    """An intermediate step asked for tools it may not use: keep its text, drop the calls. A new
    record: the call's own (already in the trace as the model answered) is left as it is."""
    rt.note(f"ignored tool calls this step may not make: {', '.join(_call_name(c) for c in calls)}")
    message = {k: v for k, v in record.message.items() if k != "tool_calls"}
    return dataclasses.replace(record, message=message, finish_reason="stop")


def _tool_message(call: dict[str, Any], content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.get("id"), "content": content}


def _detail(call: dict[str, Any]) -> dict[str, Any]:
    return {"tool_call_id": call.get("id"), "arguments": (call.get("function") or {}).get("arguments")}


async def _run_internal(
    rt: StepRuntime, tool: InternalTool, call: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Run one internal tool call as a child step (`think` or `tool`). Its failure goes back to
    the model as the tool's result (the step records it); the run goes on."""
    kind = "think" if tool.is_think else "tool"
    async with rt.child_step(kind=kind, name=tool.name, detail=_detail(call)) as step:
        try:
            arguments = tool.parse_arguments((call.get("function") or {}).get("arguments"))
            if tool.is_think:
                thought = str(arguments.get("thought", ""))
                step.scratchpad.append(thought)
                rt.note(f"think: {thought}")
            output = await tool.run(arguments, timeout)
        except TimeoutError:
            step.fail(f"tool {tool.name} timed out after {timeout:g}s", status="timeout")
        except ToolError as exc:
            step.fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - a raising tool is reported to the model and recorded
            step.fail(describe_error(exc))
        else:
            step.done(output)
            return _tool_message(call, output)
    return _tool_message(call, f"Error: {step.error}")


async def _refuse(rt: StepRuntime, call: dict[str, Any]) -> dict[str, Any]:
    """A call of a tool the step did not declare: recorded as a skipped step, never run."""
    name = _call_name(call)
    error = f"tool {name!r} is not available in this step; it was not run"
    async with rt.child_step(kind="tool", name=name or "(unnamed)", detail=_detail(call)) as step:
        step.skip(error)
    return _tool_message(call, f"Error: {error}")
