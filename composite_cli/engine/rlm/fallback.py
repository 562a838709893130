"""The built-in program the session runs when the root model cannot follow the REPL protocol.

It is ordinary Python executed in the same sandboxed REPL the root would have used, with the same
`llm_query_batched`, caps and trace (each cell is a `repl` step; each sub-call an `llm` row under
it). Two cells:

1. findings: split the document (the context without its question) into chunks of at most a
   quarter of the sub-model's window (small models read short passages better, and each call
   stays fast), at line or sentence ends; rank them by the question's words (rarer words weigh
   more, adjacent pairs of them more still); ask the sub-model, in parallel, about the best
   `max_chunks` that score at least half the best score (or evenly spread ones when no chunk
   shares a word with the question) for the sentence that answers the question, or NONE. A note
   is kept only if it is copied from its chunk word for word and shares a telling word with the
   question (one found in at most half the chunks): small models invent answers, or copy the
   wrong sentence. With no note left, the lines
   of the best chunk that score highest against the question (one or two) are the notes.
2. answer: one sub-call answers the question from the notes; FINAL_VAR ends the program.

A context that fits one sub-call whole is sent whole instead, in one call (what `direct` does).
Ranking means a question whose words are not in the text (a paraphrase, a summary of the whole
document) is answered from a few chunks, not all: the fallback is for finding facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from composite_cli.engine.rlm import prompts
from composite_cli.model_limits import estimate_tokens

# A note is one copied sentence: extraction, so no sampling.
NOTE_TOKENS = 48
NOTE_PARAMS = {"max_tokens": NOTE_TOKENS, "temperature": 0.0}
# The answer from the notes is short and copies values from them: sampling garbles digits.
ANSWER_PARAMS = {"max_tokens": 128, "temperature": 0.0}
WHOLE_PARAMS: dict[str, Any] = {}  # a context asked whole is an ordinary request: the profile's sampling
_LABEL = re.compile(r"^\s*(question|query|q)\s*[:.-]\s*", re.I)
_MAX_QUESTION = 1000


def context_text(context: Any) -> str:
    """The text the fallback reads: the string, or the conversation as `role: content` blocks.

    The REPL program computes the same text with `_TEXT_IN_REPL`; keep the two in step.
    """
    if isinstance(context, str):
        return context
    return "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in context)


# Saved by the session's REPL setup: the REPL's own functions, whatever the root later rebinds.
SAVED_TOOLS = "_composite_tools"
# First lines of the program: the root may have rebound print, len, llm_query_batched or FINAL_VAR
# in the shared namespace (SmolLM2 does); its rebindings of builtins go, the REPL's functions return.
_RESTORE = f"""\
for _name in [_n for _n in __builtins__.list(__builtins__.globals()) if not _n.startswith("_")]:
    if _name in __builtins__.vars(__builtins__):
        del __builtins__.globals()[_name]
__builtins__.globals().update({SAVED_TOOLS})
"""

_TEXT_IN_REPL = (
    "_text = context if isinstance(context, str) else "
    "'\\n\\n'.join(f\"{m.get('role')}: {m.get('content')}\" for m in context)"
)


def split_question(context: Any) -> tuple[str, int, int]:
    """(the question, start, end of the document around it) in `context_text(context)`.

    A conversation's question is its last user message. In a string it is the last paragraph
    when that is short, else a short first paragraph that asks something, else the last line.
    """
    text = context_text(context)
    if not isinstance(context, str):
        users = [m for m in context if m.get("role") == "user"]
        question = str(users[-1].get("content")) if users else text[-_MAX_QUESTION:]
        end = text.rfind(question) if question in text else len(text)
        return _clean(question), 0, end
    body = text.rstrip()
    cut = body.rfind("\n\n")
    last = body[cut + 2 :] if cut >= 0 else body
    if cut >= 0 and len(last) <= _MAX_QUESTION:
        return _clean(last), 0, cut
    first_end = body.find("\n\n")
    first = body[:first_end] if first_end >= 0 else ""
    if first and len(first) <= _MAX_QUESTION and "?" in first:
        return _clean(first), first_end, len(text)
    line_start = body.rfind("\n") + 1
    if 0 < line_start and len(body) - line_start <= _MAX_QUESTION:
        return _clean(body[line_start:]), 0, line_start
    return _clean(body[-_MAX_QUESTION:]), 0, len(text)


def _clean(question: str) -> str:
    return _LABEL.sub("", question.strip())


@dataclass(frozen=True)
class Plan:
    """What the fallback program will do, decided in the parent before any code runs."""

    question: str
    document: tuple[int, int]  # where the document (the context without its question) lies
    chunk_chars: int
    max_chunks: int
    whole: bool  # the context fits one sub-call: send it as it is

    def describe(self) -> str:
        if self.whole:
            return "the context fits one sub-call: asked whole"
        return (
            f"chunks of up to {self.chunk_chars} characters, the {self.max_chunks} best by the "
            f"question's words read in parallel, then one answer call"
        )


def plan(context: Any, sub_window: int, sub_context_chars: int, max_chunks: int) -> Plan:
    """Chunk sizes that fit the sub-model's window (estimated on this very text)."""
    text = context_text(context)
    question, start, end = split_question(context)
    document = text[start:end].strip() or text
    # The room left for a chunk once the instructions, the question and the note are counted.
    frame = estimate_tokens(prompts.FINDING.format(chunk="", question=question)) + 16
    room = min(sub_window // 4, int((sub_window - NOTE_TOKENS) * 0.9) - frame)
    density = estimate_tokens(document) / max(1, len(document))  # estimated tokens per character
    chunk_chars = max(200, min(sub_context_chars, int(room / max(density, 1e-6))))
    whole_room = int((sub_window - NOTE_TOKENS) * 0.9) - 16
    whole = estimate_tokens(text) <= whole_room and len(text) <= sub_context_chars
    return Plan(question, (start, end), chunk_chars, max_chunks, whole)


def whole_program() -> str:
    """The program for a context that fits one sub-call."""
    return f"{_RESTORE}{_TEXT_IN_REPL}\nanswer = llm_query(_text)\nFINAL_VAR('answer')\n"


def findings_program(p: Plan) -> str:
    """Cell 1: chunk, rank, read the best chunks in parallel, keep the answers that are not NONE."""
    return f"""\
{_RESTORE}import math
import re

{_TEXT_IN_REPL}
question = {p.question!r}
document = _text[{p.document[0]}:{p.document[1]}].strip() or _text


def split(text, size):
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):  # end at a line or a sentence when one is in the second half
            cut = max(text.rfind("\\n", start + size // 2, end), text.rfind(". ", start + size // 2, end) + 1)
            end = cut if cut > start else end
        out.append(text[start:end])
        start = end
    return out


chunks = split(document, {p.chunk_chars})
words = [w for w in re.findall(r"[a-z0-9]+", question.lower()) if len(w) > 2 and w not in {sorted(_STOP)!r}]
pairs = [a + " " + b for a, b in zip(words, words[1:])]
flat = [" " + " ".join(re.findall(r"[a-z0-9]+", c.lower())) + " " for c in chunks]


def has(f, w):  # the word, or its plural
    return " " + w + " " in f or " " + w + "s " in f


seen = {{w: sum(1 for f in flat if has(f, w)) for w in set(words)}}


def score(f):
    s = sum(math.log((1 + len(flat)) / seen[w]) + 1 for w in set(words) if has(f, w))
    return s + sum(3 for pair in pairs if " " + pair + " " in f)


scores = [score(f) for f in flat]
ranked = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))
picked = [i for i in ranked if scores[i] > 0 and scores[i] >= scores[ranked[0]] / 2][:{p.max_chunks}]
if not picked:  # no chunk shares a word with the question: spread the reading over the text
    step = max(1, len(chunks) / {p.max_chunks})
    picked = sorted({{int(k * step) for k in range({p.max_chunks}) if int(k * step) < len(chunks)}})
template = {prompts.FINDING!r}
answers = llm_query_batched([template.format(chunk=chunks[i], question=question) for i in picked])


def tokens(text):
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def grounded(note, chunk):  # copied from its chunk word for word (case and punctuation aside)
    return tokens(note).strip() != "" and tokens(note) in tokens(chunk)


# the question's words that tell chunks apart (in at most half of them), else all of them
telling = [w for w in set(words) if seen[w] <= len(flat) / 2] or list(set(words))


def relevant(note):  # says something about the question: shares one of its telling words
    return not telling or any(has(tokens(note), w) for w in telling)


notes, dropped, failed = [], [], []
for i, a in zip(picked, answers):
    a = a.strip()
    if a.startswith("Error: "):  # this chunk's read failed (the others keep their answers)
        failed.append(i)
    elif a and "NONE" not in a:
        (notes if grounded(a, chunks[i]) and relevant(a) else dropped).append(a)
if not notes:  # nothing the sub-model said holds up: the best chunk's lines that share most words
    lines = [x.strip() for x in re.split(r"(?<=[.!?])\\s+|\\n", chunks[picked[0]]) if x.strip()]
    best = max((score(tokens(x)) for x in lines), default=0)
    notes = [x for x in lines if score(tokens(x)) == best][:2]
print(f"{{len(chunks)}} chunks; read {{picked}} (scores {{[round(scores[i], 1) for i in picked]}})")
print("notes:", notes)
print("dropped (not copied from their chunk, or off the question):", dropped)
if failed:
    print("reads that failed (chunks):", failed)
"""


def answer_program() -> str:
    """Cell 2: one sub-call answers from the notes."""
    return f"""\
listed = "\\n".join("- " + n for n in notes) or {prompts.NOTHING_FOUND!r}
answer = llm_query({prompts.ANSWER!r}.format(notes=listed, question=question))
FINAL_VAR("answer")
"""


# Words that say nothing about where an answer is.
_STOP = frozenset(
    "the and for are was were what which who whom whose when where why how does did has have had "
    "this that these those with from into about than then there their them they its it's not "
    "can could should would will shall may might must our your you his her him she one any all "
    "question answer text document context please tell give name named called".split()
)
