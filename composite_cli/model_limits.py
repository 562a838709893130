"""How much text a model can take: its context window, from LiteLLM's model map, and a token estimate.

A leaf: the engine asks here instead of importing litellm. The embedded model registers its own
entry (composite_cli/local/model_info.py), so `local/smollm2` reports its real 2,048 tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from composite_cli.litellm_loader import get_litellm

# Assumed when LiteLLM does not know the model (a custom name, a local server): small enough for
# most models served today, so trimming errs on the side of fitting.
FALLBACK_WINDOW = 8192


def context_window(params: Mapping[str, Any]) -> int | None:
    """The input window in tokens of the model in `params` (LiteLLM parameters), None if unknown."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return None
    litellm = get_litellm()
    provider = params.get("custom_llm_provider")
    try:
        info = litellm.get_model_info(
            model, custom_llm_provider=provider if isinstance(provider, str) else None
        )
    except litellm.exceptions.ModelNotMappedError:
        return None
    for key in ("max_input_tokens", "max_tokens"):
        value = info.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def window_or_fallback(candidates: list[dict[str, Any]]) -> tuple[int, bool]:
    """The smallest window among an alias's models (its fallbacks too) and whether it was known.

    Any unknown model counts as `FALLBACK_WINDOW`, so text trimmed to the result fits them all.
    """
    windows = [context_window(params) for params in candidates]
    known = all(w is not None for w in windows) and bool(windows)
    return min([w if w is not None else FALLBACK_WINDOW for w in windows] or [FALLBACK_WINDOW]), known


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate of `text`'s token count for common tokenizers.

    Small-vocabulary tokenizers (SmolLM2's, Llama 2's) give each digit its own token, split
    punctuation and often the space before a number, so logs and tables run at 1.5-1.9 characters
    a token against 3-4 for prose. Counted: one per digit or symbol, one per started four letters
    of a word, one per space before a digit or symbol, one per non-ASCII character. On SmolLM2 it
    reads 1.0-1.5x the real count (prose, code, logs, CSV, JSON), ~0.93x on hexadecimal ids.
    """
    symbols = len(_SYMBOL.findall(text))
    words = sum((len(word) + 3) // 4 for word in _WORD.findall(text))
    gaps = len(_GAP.findall(text))
    wide = len(_WIDE.findall(text))
    return symbols + words + gaps + wide + 1


_WORD = re.compile(r"[^\W\d_]+")
_SYMBOL = re.compile(r"[\d_]|[^\w\s]")  # digits, underscores, punctuation
_GAP = re.compile(r"\s(?=[^\s\w]|\d)")
_WIDE = re.compile(r"[^\x00-\x7f]")
