"""The `python` internal tool: run a snippet in the RLM sandbox and return what it printed.

Each call gets a fresh sandboxed process (no network, no files outside its own temporary
directory, no API keys, time/memory/output limits; see composite_cli.sandbox.GUARANTEES), so
nothing persists between calls.
"""

from __future__ import annotations

from composite_cli.sandbox import Sandbox, SandboxLimits
from composite_cli.tools.base import InternalTool, ToolError

LIMITS = SandboxLimits(timeout_s=10.0, total_timeout_s=20.0, cpu_s=10.0, memory_mb=512, max_output_chars=4000)


async def run_python(code: str) -> str:
    """Run Python code in a sandbox and return its printed output (errors raise ToolError)."""
    async with Sandbox(limits=LIMITS) as sandbox:
        await sandbox.start({})
        result = await sandbox.execute(code)
    if result.error:
        raise ToolError(result.for_model())
    return result.output or "(no output)"


PYTHON = InternalTool(
    name="python",
    description=(
        "Run a Python 3 snippet in an isolated sandbox (standard library only, no network, no "
        "files) and get back what it prints. Use print() for results. Nothing persists between calls."
    ),
    parameters={
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python source code to run"}},
        "required": ["code"],
    },
    fn=run_python,
)
