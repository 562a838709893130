"""What an internal tool is: a name, a JSON schema for its arguments, and a Python callable."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from composite_cli.errors import CompositeError


class ToolError(CompositeError):
    """A tool could not be loaded, or was called with bad arguments."""


@dataclass(frozen=True)
class InternalTool:
    """A tool composite executes itself. `fn` takes the tool's arguments as keywords."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    # `think` only records its argument; the engine treats it as a scratchpad note.
    is_think: bool = False

    def definition(self) -> dict[str, Any]:
        """The OpenAI-style tool definition offered to the model."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def parse_arguments(self, raw: str | dict[str, Any] | None) -> dict[str, Any]:
        """The call's arguments as a dict; ToolError if they are not a JSON object."""
        if isinstance(raw, dict):
            return raw
        try:
            value = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            raise ToolError(f"arguments for {self.name} are not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise ToolError(f"arguments for {self.name} must be a JSON object")
        return value

    async def run(self, arguments: dict[str, Any], timeout: float) -> str:
        """Call the tool (sync tools in a worker thread) and return its result as text."""
        if inspect.iscoroutinefunction(self.fn):
            result = await asyncio.wait_for(self.fn(**arguments), timeout)
        else:
            result = await asyncio.wait_for(asyncio.to_thread(self.fn, **arguments), timeout)
        if isinstance(result, str):
            return result
        return json.dumps(result, ensure_ascii=False, default=str)
