"""The session's side of the REPL protocol: the code that prepares a REPL, reading a FINAL answer
(set in the REPL, or written in the reply), what a block's outcome means, a reply's prose."""

from __future__ import annotations

import re

from composite_cli.engine.rlm import fallback
from composite_cli.engine.rlm.protocol import code_blocks, find_final
from composite_cli.sandbox import ExecResult, Sandbox, SandboxVariableError

# Run once in each new REPL: FINAL / FINAL_VAR record the answer; the tools are kept aside so the
# fallback program can use them even if the model's code rebound their names.
SETUP = f"""
import collections, json, math, re
_final_set = False
_final_answer = ""
def FINAL(answer):
    global _final_set, _final_answer
    _final_set, _final_answer = True, str(answer)
    print("FINAL answer recorded.")
def FINAL_VAR(name):
    global _final_set, _final_answer
    value = globals()[name] if isinstance(name, str) and name in globals() else name
    _final_set, _final_answer = True, str(value)
    print("FINAL answer recorded.")
{fallback.SAVED_TOOLS} = {{
    "llm_query": llm_query, "llm_query_batched": llm_query_batched, "FINAL": FINAL, "FINAL_VAR": FINAL_VAR
}}
"""

_EXCEPTION = re.compile(r"^(\w+)(?::|$)", re.M)
_NOT_A_PROGRAM = {"SyntaxError", "IndentationError", "TabError", "NameError"}


async def final_in_repl(sandbox: Sandbox) -> str | None:
    """The answer the code gave with FINAL() / FINAL_VAR(), if it did."""
    try:
        if await sandbox.get_variable("_final_set") != "True":
            return None
        return await sandbox.get_variable("_final_answer")
    except SandboxVariableError:
        return None


async def final_from_text(sandbox: Sandbox, reply: str, outputs: list[str]) -> str | None:
    """The answer a reply gives in its text (FINAL(...) or FINAL_VAR(name)); a FINAL_VAR that
    cannot be read is told to the model through `outputs`."""
    final = find_final(reply)
    if final is None:
        return None
    if final.kind == "text":
        return final.value
    try:
        return await sandbox.get_variable(final.value)
    except SandboxVariableError as exc:
        outputs.append(f"FINAL_VAR({final.value}) failed: {exc}")
        return None


def block_status(result: ExecResult) -> str:
    """What one executed block amounts to: "ok"; "error" (it raised); "invalid" (SyntaxError or
    NameError: not a program for this REPL, what a model that cannot follow the protocol writes);
    "killed" (a limit killed the REPL)."""
    if result.killed:
        return "killed"
    if not result.error:
        return "ok"
    raised = _EXCEPTION.findall(result.error)
    return "invalid" if raised and raised[-1] in _NOT_A_PROGRAM else "error"


def strip_code(reply: str) -> str:
    """A reply's prose: its text without the code blocks."""
    for block in code_blocks(reply):
        reply = reply.replace(block, "")
    return reply.replace("```repl", "").replace("```python", "").replace("```", "").strip()
