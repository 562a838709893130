"""The worker's wire format: one JSON object per line, UTF-8, over a Unix socket.

A client sends one request line (`op`: run, status or stop). For a run the worker answers
`accepted` (or `refused` with the reason), then one `event` line per engine event, in order, and
ends with exactly one of `result`, `error` or `cancelled`. Events and results are the engine's own
dataclasses, so a client's subscribers see what they would see in-process. A client that closes
its end (or shuts down its writing side) cancels its run.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from typing import Any

from composite_cli.errors import CompositeError, ModeError, ModeValidationError, describe_error
from composite_cli.events import (
    CallDelta,
    CallFinished,
    CallRecord,
    CallStarted,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    TokenDelta,
)

MAX_LINE = 64 * 1024 * 1024  # one message (a long conversation or a big trace record)
DEFAULT_IDLE_S = 600.0  # the worker exits after this long without a connection

EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        StepStarted,
        StepFinished,
        CallStarted,
        CallDelta,
        CallFinished,
        TokenDelta,
        RunFinished,
    )
}


class ProtocolError(CompositeError):
    """The other end sent something that is not a message of this protocol."""


class RemoteRunError(CompositeError):
    """The run failed in the worker; the message is the one-line error it would print in-process."""


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line. Values JSON cannot carry become their text (never silently dropped)."""
    return (json.dumps(message, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"malformed message from the worker: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed message from the worker: not an object")
    return message


def _fields(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in skip}


def event_message(event: Event) -> dict[str, Any]:
    """An engine event as a message (a finished call as its CallRecord's fields; its `error`
    field holds the one-line description of what failed)."""
    if isinstance(event, CallFinished):
        data: dict[str, Any] = {"record": _fields(event.record)}
    else:
        data = _fields(event)
    return {"type": "event", "event": type(event).__name__, "data": data}


def event_from(message: dict[str, Any]) -> Event:
    """The engine event a message carries; ProtocolError when it is not one (events are
    keyword-only: a field that is missing or not the event's is named)."""
    name = message.get("event")
    cls = EVENT_TYPES.get(str(name))
    data = message.get("data")
    if cls is None or not isinstance(data, dict):
        raise ProtocolError(f"unknown event from the worker: {name!r}")
    try:
        if cls is CallFinished:
            record = data.get("record")
            if not isinstance(record, dict):
                raise TypeError("record: not an object")
            return CallFinished(record=CallRecord(**record))
        event: Event = cls(**data)
    except TypeError as exc:
        raise ProtocolError(f"malformed {name} event from the worker: {exc}") from None
    return event


def result_message(result: Any) -> dict[str, Any]:
    """A RunResult as a message."""
    return {"type": "result", "result": _fields(result)}


def result_from(message: dict[str, Any]) -> Any:
    from composite_cli.engine.runtime import RunResult

    return RunResult(**message["result"])


def error_message(exc: BaseException, line: str | None) -> dict[str, Any]:
    """A failed run: validation errors keep their structure, the rest is the one-line message
    the CLI would print (None for an unexpected error: `internal`)."""
    if isinstance(exc, ModeValidationError):
        errors = [
            {"path": e.path, "line": e.line, "field": e.field, "message": e.message} for e in exc.errors
        ]
        return {"type": "error", "kind": "validation", "errors": errors}
    if line is None:
        return {"type": "error", "kind": "internal", "message": describe_error(exc)}  # secrets masked
    return {"type": "error", "kind": "error", "message": line}


def error_from(message: dict[str, Any], log: str) -> CompositeError:
    """The exception a client raises for an `error` message."""
    if message.get("kind") == "validation":
        return ModeValidationError([ModeError(**e) for e in message.get("errors") or []])
    text = str(message.get("message") or "the run failed in the worker")
    if message.get("kind") == "internal":
        return RemoteRunError(f"internal error in the background worker: {text} (details in {log})")
    return RemoteRunError(text)


class LineReader:
    """Reads whole lines from a blocking socket (a Ctrl-C between reads loses nothing)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()

    def readline(self) -> bytes | None:
        """The next line, without its newline; None at end of stream."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_LINE:
                raise ProtocolError("message from the worker too long")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buffer += chunk

    def message(self) -> dict[str, Any] | None:
        line = self.readline()
        return None if line is None else decode(line)


def settings_from_message(data: dict[str, Any]) -> Any:
    """The client's settings, resolved again in the worker from paths and names."""
    from composite_cli.config import load_settings

    return load_settings(
        config=data.get("config"),
        profile=data.get("profile"),
        models=list(data.get("models") or []),
        db=data.get("db"),
        no_content=bool(data.get("no_content")),
    )
