"""The session's side of the REPL protocol: the code that prepares a REPL, reading a FINAL answer
(set in the REPL with FINAL()/FINAL_VAR() or the `answer` dict, or written in the reply), what a
block's outcome means, a reply's prose.

The `answer` dict follows alexzhang13/rlm: code that sets `answer = {"content": ..., "ready": True}`
(or `answer["ready"] = True` on the prepared dict) answers with `content`. `ready` False or absent,
or an `answer` that is not a dict, does nothing (`answer` may be an ordinary variable). A `ready`
answer that cannot be taken (content not a string or number, more than the answer limit, `ready`
neither True nor False) is told to the root in that block's output, and `ready` is set back to False.
"""

from __future__ import annotations

import re

from composite_cli.engine.rlm import fallback
from composite_cli.engine.rlm.protocol import code_blocks, find_final
from composite_cli.sandbox import ExecResult, Sandbox, SandboxVariableError

ANSWER_TAKEN = "answer recorded."
ANSWER_REFUSED = "answer not accepted: "
# Run once in each new REPL: FINAL / FINAL_VAR record the answer; the tools are kept aside so the
# fallback program can use them even if the model's code rebound their names. The answer check
# reads `answer` with dict's own methods (a dict subclass's overrides are not called) and builtins
# bound here (model code may rebind the names).
SETUP = f"""
import collections, json, math, re
_final_set = False
_final_answer = ""
answer = {{"content": "", "ready": False}}
def _answer_check(
    limit, _type=type, _len=len, _str=str, _print=print, _get=dict.get, _set=dict.__setitem__,
    _globals=globals, _isinstance=isinstance,
):
    global _final_set, _final_answer
    value = _globals().get("answer")
    if not _isinstance(value, dict):
        return
    ready = _get(value, "ready", False)
    if ready is False or ready is None:
        return
    content = _get(value, "content", None)
    problem = None
    if ready is not True:
        problem = "answer['ready'] must be True or False, not " + _type(ready).__name__
    elif _type(content) in (int, float):
        try:
            content = _str(content)
        except ValueError as exc:
            problem = "answer['content'] could not be read: " + _str(exc)
    elif _type(content) is not str:
        problem = "answer['content'] must be a string, not " + _type(content).__name__
    if problem is None and _len(content) > limit:
        problem = "answer['content'] has " + _str(_len(content)) + " characters, more than " + _str(limit)
    if problem is None and not content.strip(" \\n\\t"):
        problem = "answer['content'] is empty"
    if problem is not None:
        _set(value, "ready", False)
        _print("{ANSWER_REFUSED}" + problem + ". answer['ready'] is False again: fix it and set it to True.")
        return
    _final_set, _final_answer = True, content
    _print("{ANSWER_TAKEN}")
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
{fallback.SAVED_TOOLS}["answer_check"] = _answer_check
del _answer_check
"""
# A refused answer is forgotten: FINAL()'s flag and the dict's `ready`.
FORGET_FINAL = """\
_final_set = False
if isinstance(globals().get("answer"), dict):
    dict.__setitem__(answer, "ready", False)
"""

_EXCEPTION = re.compile(r"^(\w+)(?::|$)", re.M)
_NOT_A_PROGRAM = {"SyntaxError", "IndentationError", "TabError", "NameError"}


async def check_answer(sandbox: Sandbox, limit: int) -> tuple[bool, str | None]:
    """Whether the code set a ready `answer` dict that was taken (then final_in_repl reads it), and
    what to tell the root when it set one that cannot be taken."""
    result = await sandbox.execute(f"{fallback.SAVED_TOOLS}['answer_check']({int(limit)})")
    if result.killed:
        return False, None
    output = result.output.strip()
    if result.error:
        await sandbox.execute(FORGET_FINAL)
        return False, f"{ANSWER_REFUSED}the answer check failed: {result.error.strip().splitlines()[-1]}"
    if output.endswith(ANSWER_TAKEN):
        return True, None
    refused = output.rfind(ANSWER_REFUSED)
    return False, (output[refused:] if refused >= 0 else None)


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


def new_turn(turn: int) -> str:
    """A kept REPL's next turn: the answer of the last one is forgotten; `context_<turn>` keeps this
    turn's context (context_0 the first's) while `context` is this turn's."""
    return (
        '_final_set = False\n_final_answer = ""\nanswer = {"content": "", "ready": False}\n'
        f"context_{int(turn)} = context\n"
    )


# The names the root's code defined in earlier turns (not the REPL's own).
_OWN = "context context_length question answer llm_query llm_query_batched rlm_query FINAL FINAL_VAR"
LIST_VARIABLES = f"""\
__builtins__.print(", ".join(__builtins__.sorted(
    _n for _n in __builtins__.list(__builtins__.globals())
    if not _n.startswith("_") and not _n.startswith("context_")
    and _n not in {_OWN.split()!r} and _n not in ("collections", "json", "math", "re", "LLMQueryError")
)))
"""


async def earlier_variables(sandbox: Sandbox, limit: int = 400) -> str:
    """The names the root's code defined in earlier turns, comma-separated, cut to `limit`."""
    result = await sandbox.execute(LIST_VARIABLES)
    if result.error or result.killed:
        return ""
    names = result.output.strip()
    return names if len(names) <= limit else names[:limit].rsplit(",", 1)[0] + ", ..."
