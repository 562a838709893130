"""What the root model is sent: the system prompt, the worked example, the first and next turns."""

from __future__ import annotations

from typing import Any

from composite_cli.engine.rlm import prompts
from composite_cli.engine.rlm.window import MESSAGE_OVERHEAD, Window, fit, message_tokens, preview
from composite_cli.engine.templates import Template
from composite_cli.model_limits import estimate_tokens

SYSTEM_VALUES = {
    "context_type",
    "context_length",
    "sub_context_chars",
    "recursive",
    "max_output_chars",
    "max_iterations",
    "max_calls",
}
_SYSTEM = Template.compile(prompts.SYSTEM, SYSTEM_VALUES)
_EXAMPLE = Template.compile(prompts.EXAMPLE, {"chunk_chars"})
_FIRST = Template.compile(prompts.FIRST_TURN, {"context_type", "context_length", "head", "tail"})
_NEXT = Template.compile(prompts.NEXT_TURN, {"output"})


def first_messages(
    text: str, kind: str, window: Window, values: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str], bool]:
    """System prompt, worked example and first message, fitted to the root's window; notes on
    what was left out; and whether the context was shown whole.

    The system prompt and the example take at most half the prompt's room (the example is left
    out first); the preview of the context's head and tail at most 30% of what is left, so the rest
    stays for the latest turns.
    """
    budget = window.prompt_tokens
    notes: list[str] = []
    system = _SYSTEM.render(values)
    with_example = system + "\n\n" + _EXAMPLE.render({"chunk_chars": values["sub_context_chars"]})
    if estimate_tokens(with_example) + MESSAGE_OVERHEAD <= budget // 2:
        system = with_example
    elif estimate_tokens(system) + MESSAGE_OVERHEAD <= budget // 2:
        notes.append("worked example left out: the root's window is too small for it")
    else:
        system = fit(system, budget // 2 - MESSAGE_OVERHEAD)
        notes.append("system prompt cut to fit the root's window; no worked example")
    messages = [{"role": "system", "content": system}]
    used = message_tokens(messages[0])
    shape = {"context_type": kind, "context_length": len(text)}
    frame = estimate_tokens(_FIRST.render({**shape, "head": "", "tail": ""}))
    head, tail = preview(text, max(0, int((budget - used) * 0.3) - frame))
    first = _FIRST.render({**shape, "head": head, "tail": tail})
    return [*messages, {"role": "user", "content": first}], notes, not tail


def next_message(outputs: list[str], refused: str | None = None) -> str:
    """The user turn after a reply: what its code printed, or a reminder of the form; and why
    its FINAL was not accepted, if it was not."""
    message = _NEXT.render({"output": "\n\n".join(outputs)}) if outputs else prompts.NO_CODE
    return f"{refused}\n\n{message}" if refused else message
