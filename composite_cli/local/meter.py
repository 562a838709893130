"""Token metering and cancellation for one request."""

from __future__ import annotations

import threading
import time

import litellm
from litellm.types.llms.openai import ChatCompletionUsageBlock

from composite_cli.local.model_info import MODEL_NAME, N_CTX, PROVIDER
from composite_cli.local.repetition import RepetitionDetector


class Cancelled(Exception):
    """The consumer went away; raised inside llama's token loop to stop generating."""


class Meter:
    """Counts the tokens of one request and stops generation on cancel or deadline.

    llama-cpp-python reports no usage when streaming, so counting happens in `MeteredLlama.generate`,
    the loop every completion (plain chat and function calling) runs through. A request may run several
    completions (tool choice "auto" first decides, then writes): prompt_tokens is the first prompt,
    completion_tokens every token generated. For one completion the counts equal llama's own usage.

    With `watch_repetition()` on, the meter also ends a completion whose tokens fall into a loop (see
    `repetition`): `on_token` returns True, the token loop stops there, and `stopped` says why.

    It also holds each completion to `max_tokens`, as OpenAI does. llama's own check misses it when the
    last tokens spell part of a multi-byte character (an emoji is several tokens): it skips the check
    until the character is whole, so "max_tokens 8" could answer 10 tokens. A token past the limit is
    not counted nor passed on; the completion ends there with finish_reason "length" (llama's default),
    and the unfinished character is dropped from the text.
    """

    def __init__(self, cancel: threading.Event, deadline: float | None, max_tokens: int | None = None):
        self.cancel = cancel
        self.deadline = deadline
        self.max_tokens = max_tokens
        self._limit: int | None = max_tokens  # of the current completion (the context may cut it)
        self.prompt_tokens: int | None = None  # the first prompt of the request
        self.completion_tokens = 0  # every token generated for the request (end-of-turn excluded)
        self.last_call_tokens = 0
        self.stopped: str | None = None  # "repetition" once a completion was ended for looping
        self.note: str | None = None  # what the provider did on the model's behalf, for the trace
        self._detector: RepetitionDetector | None = None

    def watch_repetition(self) -> None:
        """End the next completion early if it starts repeating itself."""
        self._detector = RepetitionDetector()

    def begin(self, n_prompt: int) -> None:
        if self.prompt_tokens is None:
            self.prompt_tokens = n_prompt
        self.last_call_tokens = 0
        # llama shortens max_tokens to what the context window leaves; so does the limit here
        self._limit = None if self.max_tokens is None else min(self.max_tokens, max(N_CTX - n_prompt, 1))

    def on_token(self, token: int, is_end: bool) -> bool:
        """Count one generated token; True if generation should end before it (a loop was detected, or
        the completion already has `max_tokens` tokens)."""
        if self.cancel.is_set():
            raise Cancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise litellm.Timeout(message="local model timed out", model=MODEL_NAME, llm_provider=PROVIDER)
        if not is_end and self._limit is not None and self.last_call_tokens >= self._limit:
            return True
        if not is_end:  # llama's own usage does not count the end-of-turn token either
            self.completion_tokens += 1
            self.last_call_tokens += 1
            if self._detector is not None and self._detector.feed(token):
                self._detector = None
                self.stopped = "repetition"
                return True
        return False

    def usage(self) -> ChatCompletionUsageBlock:
        prompt = self.prompt_tokens or 0
        return ChatCompletionUsageBlock(
            prompt_tokens=prompt,
            completion_tokens=self.completion_tokens,
            total_tokens=prompt + self.completion_tokens,
        )
