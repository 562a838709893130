"""Regular expressions that come from data files: a `regex` scorer's pattern in an eval file, a
reflect step's `ok_when` in a mode file.

A shared file may hold a pattern that backtracks for hours on some answer (`(a|aa)+$` on sixty
"a"s and a "b"); Python's `re` cannot be interrupted. These patterns are compiled with the
`regex` module in its `re`-compatible mode (VERSION0: the same syntax and flags) and every match
has a time limit: one that runs over MATCH_TIMEOUT_S raises PatternTimeout, so an eval records
that case's error and a run fails with one line, instead of a hung eval or server.
"""

from __future__ import annotations

from typing import Any

import regex

from composite_cli.errors import PatternTimeout

MATCH_TIMEOUT_S = 1.0  # legitimate patterns match a model's answer in microseconds
FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}
"""Flag letters a data file may use (as in `re`)."""

PatternError = regex.error
"""What `compile_pattern` raises for an invalid pattern (its message says where)."""


class DataPattern:
    """A compiled pattern from a data file whose matches are bounded in time."""

    def __init__(self, source: str, flags: str = "") -> None:
        value = regex.VERSION0
        for letter in flags:
            value |= FLAGS[letter]
        self.pattern = source
        self.flags = flags
        self._compiled = regex.compile(source, value)

    def search(self, text: str) -> Any:
        """The first match in `text`, or None; PatternTimeout if it takes over MATCH_TIMEOUT_S."""
        try:
            return self._compiled.search(text, timeout=MATCH_TIMEOUT_S)
        except TimeoutError:
            raise PatternTimeout(
                f"pattern {self.pattern!r} took over {MATCH_TIMEOUT_S:g}s on a {len(text):,}-character "
                "text (a pattern that backtracks without end); simplify it"
            ) from None


def compile_pattern(source: str, flags: str = "") -> DataPattern:
    """Compile a data file's pattern; PatternError (with the reason) if it is invalid."""
    return DataPattern(source, flags)
