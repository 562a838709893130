"""The ranges of the generation parameters a user sets from outside: OpenAI's where it names one.

One owner for the server's edge (serve/body_check) and the command line's flags (chat, tui), so a
value the server answers 400 is a usage error on the command line too, never a silent accept.
"""

from __future__ import annotations

TEMPERATURE = (0.0, 2.0)  # OpenAI's range
MAX_TOKENS = 1 << 20  # a token limit's upper bound where OpenAI names none: beyond any model's output today
