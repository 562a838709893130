"""Deterministic stand-in models for the long-context benchmark, as a LiteLLM custom provider.

    from benchmarks.scripted_models import register
    register()   # after this, profiles may map aliases to scripted/root, scripted/sub, scripted/reader

- `scripted/root`: a root model for rlm-v1. It reads only the conversation it is sent (system prompt,
  the head/tail preview, then "REPL output:" messages). Turn 1: code that takes the question from
  the last lines of `context`, splits the document into ~3,000-character chunks on line
  boundaries, asks `llm_query_batched` one prompt per chunk and prints what came back. Turn 2: it
  reads the printed question and answers, picks the reduction (code, sum, max, most frequent city),
  writes the code for it and ends with FINAL_VAR(answer). If the REPL printed an error instead, it
  says so in a FINAL line (an honest failure, scored wrong).
- `scripted/sub`: answers ONE chunk question from the text in its prompt (regexes over the lines):
  a code or NONE, a number, or a JSON object of per-city counts. 8,000-character window.
- `scripted/reader`: the `direct` baseline. Reads the whole conversation and answers the question
  with the same regexes, so it is a perfect reader, but its window is also 8,000 characters.

Every reply reports usage (about 4 characters per token); prices are unknown (cost stays null).
Options a profile may pass: `latency` (seconds to sleep per call), `window` (characters).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import

import litellm

from composite_cli.litellm_loader import add_custom_provider, get_litellm

WINDOW_CHARS = 8000
CHUNK_CHARS = 3000
PROVIDER = "scripted"

# --------------------------------------------------------------------------------------------
# Reading log lines (the sub-model and the reader)
# --------------------------------------------------------------------------------------------

_LOG = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:DEBUG|INFO|WARN|ERROR) "
_CODE = re.compile(r"\b[A-Z]{2}-\d{4}\b")


def _question_kind(question: str) -> tuple[str, str | None]:
    """(kind, argument) of one of the benchmark's questions, from its wording."""
    q = question.lower()
    if m := re.search(r"secret code .*warehouse in (\w+)", question):
        return "needle", m.group(1)
    if m := re.search(r"how many log lines have level (\w+)", q):
        return "level", m.group(1).upper()
    if m := re.search(r"how many orders were shipped to (\w+)", question, re.I):
        return "shipped_to", m.group(1)
    if "refund" in q and "total" in q:
        return "refund_sum", None
    if m := re.search(r"units in total were received at the (\w+) warehouse", question, re.I):
        return "units_sum", m.group(1)
    if "largest single payment" in q:
        return "payment_max", None
    if "most often" in q and "destination" in q:
        return "destination_mode", None
    return "unknown", None


def read_text(question: str, text: str, *, whole: bool) -> str:
    """The answer to `question` from `text`: per chunk (whole=False) or final (whole=True)."""
    kind, arg = _question_kind(question)
    if kind == "needle":
        for line in text.splitlines():
            if "secret code" in line and arg and arg in line and (m := _CODE.search(line)):
                return m.group(0)
        return "NONE"
    if kind == "level":
        return str(
            len(re.findall(_LOG.replace("(?:DEBUG|INFO|WARN|ERROR)", re.escape(arg or "")), text, re.M))
        )
    if kind == "shipped_to":
        pattern = _LOG + r"order \d+ shipped from \w+ to " + re.escape(arg or "") + r"$"
        return str(len(re.findall(pattern, text, re.M)))
    if kind == "refund_sum":
        return str(
            sum(int(x) for x in re.findall(_LOG + r"refund issued for order \d+: (\d+) EUR$", text, re.M))
        )
    if kind == "units_sum":
        pattern = _LOG + r"received (\d+) units at " + re.escape(arg or "") + r" warehouse$"
        return str(sum(int(x) for x in re.findall(pattern, text, re.M)))
    if kind == "payment_max":
        amounts = [
            int(x) for x in re.findall(_LOG + r"payment received for order \d+: (\d+) EUR$", text, re.M)
        ]
        return str(max(amounts)) if amounts else "NONE"
    if kind == "destination_mode":
        counts = Counter(re.findall(_LOG + r"order \d+ shipped from \w+ to (\w+)$", text, re.M))
        if whole:
            return counts.most_common(1)[0][0] if counts else "NONE"
        return json.dumps(dict(sorted(counts.items())))
    return "I cannot answer that."


def _sub_reply(prompt: str) -> str:
    """One chunk question: `Question: ...` then `Text:` then the chunk, then the instruction."""
    m = re.search(r"^Question:[ \t]*(.*)$", prompt, re.M)
    question = m.group(1) if m else ""
    start = prompt.find("\nText:\n")
    body = prompt[start + 7 :] if start >= 0 else prompt
    end = body.rfind("\nAnswer")
    body = body[:end] if end >= 0 else body
    return read_text(question, body, whole=False)


def _reader_reply(text: str) -> str:
    """The whole input: the question is its last `Question:` line, the document is the rest."""
    questions = re.findall(r"^Question:[ \t]*(.*)$", text, re.M)
    if not questions:
        return "I cannot find a question."
    return read_text(questions[-1], text, whole=True)


# --------------------------------------------------------------------------------------------
# The root model
# --------------------------------------------------------------------------------------------

FIRST_CODE = f"""\
```repl
import json
lines = context.rstrip("\\n").split("\\n")
question = ""
while lines and not question:
    last = lines.pop().strip()
    if last.startswith("Question:"):
        question = last[len("Question:"):].strip()
doc = [l for l in lines if l.strip() not in ("<document>", "</document>")]
chunks, cur, size = [], [], 0
for line in doc:
    if cur and size + len(line) + 1 > {CHUNK_CHARS}:
        chunks.append("\\n".join(cur)); cur, size = [], 0
    cur.append(line); size += len(line) + 1
if cur:
    chunks.append("\\n".join(cur))
prompts = [
    "Question: " + question + "\\nText:\\n" + c + "\\nAnswer for this text only: the code (or NONE), "
    "the number, or a JSON object of counts per city, as the question needs."
    for c in chunks
]
answers = llm_query_batched(prompts)
print("question:", question)
print("chunks:", len(chunks), "answers:", len(answers))
print("answers:", json.dumps(answers))
```"""

_REDUCE = {
    "code": (
        'hits = [a.strip() for a in answers if a.strip() and a.strip().upper() != "NONE"]\n'
        'answer = hits[0] if hits else "NONE"\n'
        'print("hits:", hits)'
    ),
    "sum": (
        "import re\n"
        'nums = [int(m.group()) for a in answers for m in [re.search(r"-?\\d+", a)] if m]\n'
        "answer = sum(nums)\n"
        'print("numbers:", len(nums), "of", len(answers), "sum:", answer)'
    ),
    "max": (
        "import re\n"
        'nums = [int(m.group()) for a in answers for m in [re.search(r"-?\\d+", a)] if m]\n'
        'answer = max(nums) if nums else "NONE"\n'
        'print("numbers:", len(nums), "of", len(answers), "max:", answer)'
    ),
    "mode": (
        "import json\n"
        "from collections import Counter\n"
        "totals = Counter()\n"
        "for a in answers:\n"
        "    try:\n"
        "        totals.update({k: int(v) for k, v in json.loads(a).items()})\n"
        "    except (ValueError, AttributeError):\n"
        "        pass\n"
        'answer = totals.most_common(1)[0][0] if totals else "NONE"\n'
        'print("top:", totals.most_common(3))'
    ),
}


def _reduction(question: str) -> str | None:
    """Which reduction the printed question calls for (read the way a model would)."""
    q = question.lower()
    if "secret code" in q or "code only" in q:
        return "code"
    if "most often" in q or "which city" in q:
        return "mode"
    if "largest" in q or "maximum" in q:
        return "max"
    if "how many" in q or "total" in q:
        return "sum"
    return None


def _root_reply(messages: list[dict[str, Any]]) -> str:
    turns = sum(1 for m in messages if m.get("role") == "assistant")
    last = _content(messages[-1]) if messages else ""
    if turns == 0:
        return "I will split the context into chunks and ask the sub-model about each one.\n" + FIRST_CODE
    if not last.startswith("REPL output:"):
        return "FINAL(I could not run my code.)"
    output = last[len("REPL output:") :]
    if turns >= 2:  # the reduction ran but did not end the session: report what the REPL said
        error = next((x for x in output.strip().splitlines()[::-1] if "rror" in x or "failed" in x), "")
        return f"FINAL(no answer: {(error or output.strip()[-200:]).strip()[:200]})"
    m = re.search(r"^question: (.*)$", output, re.M)
    counts = re.search(r"^chunks: (\d+) answers: (\d+)$", output, re.M)
    if not m or not counts:
        error = next((x for x in output.strip().splitlines()[::-1] if "Error" in x), output.strip()[-200:])
        return f"My code failed, so I cannot answer.\nFINAL(no answer: {error.strip()[:200]})"
    if counts.group(1) != counts.group(2):
        return f"FINAL(no answer: {counts.group(2)} answers for {counts.group(1)} chunks)"
    kind = _reduction(m.group(1))
    if kind is None:
        return "FINAL(no answer: I do not know how to combine the chunk answers for this question.)"
    intro = f"Combining the {counts.group(1)} chunk answers ({kind})."
    return f"{intro}\n```repl\n{_REDUCE[kind]}\n```\nFINAL_VAR(answer)"


# --------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------


def _content(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


class ScriptedLLM(litellm.CustomLLM):
    """`scripted/root`, `scripted/sub` and `scripted/reader` (see the module docstring)."""

    def _reply(self, model: str, messages: list[Any], options: dict[str, Any]) -> str:
        name = model.split("/", 1)[-1]
        texts = [_content(m) for m in messages]
        size = sum(len(t) for t in texts)
        window = int(options.get("window") or WINDOW_CHARS)
        if name in ("sub", "reader") and size > window:
            raise litellm.ContextWindowExceededError(
                message=f"{size} characters of input; scripted/{name} reads at most {window}",
                model=model,
                llm_provider=PROVIDER,
            )
        if name == "root":
            return _root_reply([m if isinstance(m, dict) else dict(m) for m in messages])
        if name == "sub":
            return _sub_reply(texts[-1] if texts else "")
        if name == "reader":
            return _reader_reply("\n".join(texts))
        raise litellm.BadRequestError(
            message=f"unknown scripted model {model!r}", model=model, llm_provider=PROVIDER
        )

    def _fill(self, model: str, messages: list[Any], reply: str, response: Any) -> Any:
        prompt_chars = sum(len(_content(m)) for m in messages)
        response.choices[0].message = litellm.Message(role="assistant", content=reply)
        response.choices[0].finish_reason = "stop"
        response.model = f"{PROVIDER}/{model.split('/', 1)[-1]}"
        prompt, completion = _tokens(prompt_chars), _tokens(len(reply))
        response.usage = litellm.Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        return response

    def completion(  # type: ignore[override]
        self,
        *,
        model: str,
        messages: list[Any],
        model_response: Any,
        optional_params: dict[str, Any],
        **kw: Any,
    ) -> Any:
        latency = float(optional_params.get("latency") or 0)
        if latency:
            time.sleep(latency)
        return self._fill(model, messages, self._reply(model, messages, optional_params), model_response)

    async def acompletion(  # type: ignore[override]
        self,
        *,
        model: str,
        messages: list[Any],
        model_response: Any,
        optional_params: dict[str, Any],
        **kw: Any,
    ) -> Any:
        latency = float(optional_params.get("latency") or 0)
        if latency:
            await asyncio.sleep(latency)
        return self._fill(model, messages, self._reply(model, messages, optional_params), model_response)


HANDLER = ScriptedLLM()


def register() -> ScriptedLLM:
    """Add the `scripted` provider to LiteLLM (idempotent)."""
    add_custom_provider(get_litellm(), PROVIDER, HANDLER)
    return HANDLER
