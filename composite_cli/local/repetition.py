"""Spotting a generation that has fallen into a loop, token by token.

A 135M model sometimes repeats itself forever ("classical classical classical ...", or the same
sentence over and over). Sampling penalties make that rare, not impossible, so plain generation also
watches the tokens it produces and ends the answer once its tail is one block of tokens repeated back
to back: at least `MIN_REPEATS` copies covering at least `MIN_SPAN` tokens, for blocks of 1 to
`MAX_PERIOD` tokens. So a single token must repeat 48 times, a 4-token phrase 12 times, and a sentence
of 16 to 64 tokens 3 times. Legitimate text rarely does that (a list of 24 zeros would), and stopping
at 48 identical tokens keeps well under LiteLLM's own guard (100 identical streamed chunks, which
raises instead of ending the answer).

The check is incremental: for every period n it keeps how many tokens in a row have equalled the token
n places before, so each new token costs O(MAX_PERIOD).
"""

from __future__ import annotations

from collections import deque

MIN_REPEATS = 3
MIN_SPAN = 48
MAX_PERIOD = 64


class RepetitionDetector:
    """Feed tokens one at a time; `feed` returns True once the tail is a degenerate loop."""

    def __init__(
        self, min_repeats: int = MIN_REPEATS, min_span: int = MIN_SPAN, max_period: int = MAX_PERIOD
    ) -> None:
        self.max_period = max_period
        self._recent: deque[int] = deque(maxlen=max_period)  # newest first
        self._runs = [0] * (max_period + 1)  # _runs[n]: tokens in a row equal to the one n earlier
        # A block of n tokens repeated r times: n*(r-1) tokens each equal to the one n earlier.
        self._needed = [0] + [max(n * (min_repeats - 1), min_span - n) for n in range(1, max_period + 1)]
        self.period: int | None = None  # the loop's block length, once detected

    def feed(self, token: int) -> bool:
        """Add the next generated token; True if the tokens so far end in a loop."""
        recent = self._recent
        runs, needed = self._runs, self._needed
        for n in range(1, len(recent) + 1):
            if recent[n - 1] == token:
                runs[n] += 1
                if runs[n] >= needed[n] and self.period is None:
                    self.period = n
            else:
                runs[n] = 0
        recent.appendleft(token)
        return self.period is not None
