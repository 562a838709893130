"""What a step produces, as seen by later steps' templates and by the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composite_cli.calls import CallRecord


class TextValue(str):
    """A step's text output. Renders as the text; carries the assistant message it came from.

    `ok` is set by `reflect` steps (the critique found nothing to fix). A value marked `partial` is
    the best answer so far after a cap was hit; `stopped_by` names that cap ("max_iterations (8)").
    `notes` carries facts a caller may want in the response metadata (e.g. which path answered).
    """

    message: dict[str, Any]
    finish_reason: str
    ok: bool
    partial: bool
    stopped_by: str | None
    notes: dict[str, Any]

    def __new__(
        cls,
        text: str,
        *,
        message: dict[str, Any] | None = None,
        finish_reason: str = "stop",
        ok: bool = False,
        partial: bool = False,
        stopped_by: str | None = None,
        notes: dict[str, Any] | None = None,
    ) -> TextValue:
        value = super().__new__(cls, text)
        value.message = message if message is not None else {"role": "assistant", "content": text}
        value.finish_reason = finish_reason
        value.ok = ok
        value.partial = partial  # a cap was hit: the best answer so far (finish_reason "length")
        value.stopped_by = stopped_by
        value.notes = dict(notes or {})
        return value

    @classmethod
    def from_call(cls, record: CallRecord) -> TextValue:
        """A model call's result as a step value (message and finish_reason kept; a call cut short,
        e.g. because the model looped, says so in `notes["stopped"]`)."""
        return cls(
            record.text,
            message=record.message,
            finish_reason=record.finish_reason or "stop",
            notes={"stopped": record.stopped} if record.stopped else None,
        )

    @property
    def text(self) -> str:
        return str.__str__(self)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])


class Candidates(list[TextValue]):
    """The answers of a fan-out. Renders as a numbered list, as the MoA aggregate prompt expects."""

    names: list[str]

    def __init__(self, values: list[TextValue], names: list[str]):
        super().__init__(values)
        self.names = names

    def __str__(self) -> str:
        return "\n\n".join(f"{i}. {text}" for i, text in enumerate(self, start=1))

    @property
    def text(self) -> str:
        return str(self)


def as_text(value: Any) -> str:
    """The plain text of any step value."""
    if value is None:
        return ""
    return str(value)
