"""Internal tools: functions composite runs itself for a mode's steps (never sent to the client)."""

from composite_cli.tools.base import InternalTool, ToolError
from composite_cli.tools.loader import BUILTIN_TOOLS, load_tool

__all__ = ["BUILTIN_TOOLS", "InternalTool", "ToolError", "load_tool"]
