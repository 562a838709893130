"""Fitting what the root model is sent into the window its model actually has.

Every root turn is built from the system prompt (with the worked example when there is room), the
first message (the context's length and a preview of its head and tail) and as many recent turns
(the root's replies and the REPL output they produced) as fit. Sizes are estimated with
`model_limits.estimate_tokens`, which reads high, and 10% is kept spare; a provider that still
reports a full window makes the session drop a turn and try again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from composite_cli.engine.rlm.protocol import truncate
from composite_cli.model_limits import estimate_tokens

MESSAGE_OVERHEAD = 8  # tokens a chat template adds around each message (role markers)
SPARE = 0.9  # the share of the estimated room that is used
MIN_REPLY = 128
DEFAULT_REPLY = 1024
PREVIEW_CHARS = 600  # the most of the context's head (and of its tail) shown
SMALL_WINDOW = 16_384  # at most this, sub-call replies are capped too (they run unbounded otherwise)


def reply_cap(tokens: int) -> int:
    """The longest reply worth asking of a model with this window: an eighth of it, at least 128."""
    return max(MIN_REPLY, tokens // 8)


@dataclass(frozen=True)
class Window:
    """One model's window in tokens and what a call to it may use."""

    tokens: int
    known: bool  # read from LiteLLM's model map, not assumed
    reply_tokens: int  # reserved for the model's reply (its max_tokens)

    @classmethod
    def for_root(cls, tokens: int, known: bool, max_tokens: int | None) -> Window:
        """The root's reply is at most an eighth of a small window: a code block, not an essay."""
        reply = min(max_tokens or DEFAULT_REPLY, reply_cap(tokens))
        return cls(tokens, known, reply)

    @property
    def prompt_tokens(self) -> int:
        """The estimated prompt size that fits (the reply's room and a spare 10% set aside)."""
        return max(0, int((self.tokens - self.reply_tokens) * SPARE))

    def describe(self) -> str:
        source = "from the model map" if self.known else "assumed: model not in LiteLLM's map"
        return f"{self.tokens} tokens ({source}); replies up to {self.reply_tokens} tokens"


def message_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    return estimate_tokens(content if isinstance(content, str) else str(content or "")) + MESSAGE_OVERHEAD


def fit(text: str, tokens: int) -> str:
    """`text` cut (with a visible marker) so that its estimate is at most `tokens`."""
    if estimate_tokens(text) <= tokens:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits, marker included
        mid = (low + high + 1) // 2
        if estimate_tokens(truncate(text, mid)) <= tokens:
            low = mid
        else:
            high = mid - 1
    return truncate(text, low)


def preview(text: str, tokens: int) -> tuple[str, str]:
    """The context's head and tail, as long as `tokens` allows and at most PREVIEW_CHARS each;
    a context that fits is the head, whole, with no tail."""
    if len(text) <= 2 * PREVIEW_CHARS and estimate_tokens(text) <= tokens:
        return text, ""
    chars = PREVIEW_CHARS
    while chars > 40 and estimate_tokens(text[:chars]) + estimate_tokens(text[-chars:]) > tokens:
        chars = int(chars * 0.8)
    return text[:chars], text[-chars:]


def recent_turns(turns: list[dict[str, Any]], tokens: int, max_pairs: int) -> list[dict[str, Any]]:
    """The latest (reply, output) pairs that fit in `tokens`, oldest first.

    The latest pair is always kept, its output (then its reply) cut to fit; older pairs are kept
    whole or not at all, up to `max_pairs`.
    """
    pairs = [turns[i : i + 2] for i in range(0, len(turns) - 1, 2)][-max_pairs:] if max_pairs else []
    kept: list[list[dict[str, Any]]] = []
    room = tokens
    for pair in reversed(pairs):
        size = sum(message_tokens(m) for m in pair)
        if size <= room:
            kept.append(pair)
            room -= size
            continue
        if kept:
            break
        reply, output = pair
        reply_room = max(MESSAGE_OVERHEAD, room // 2)
        reply = {**reply, "content": fit(str(reply["content"]), max(0, reply_room - MESSAGE_OVERHEAD))}
        left = room - message_tokens(reply) - MESSAGE_OVERHEAD
        output = {**output, "content": fit(str(output["content"]), max(0, left))}
        kept.append([reply, output])
        break
    return [m for pair in reversed(kept) for m in pair]
