"""Keep secrets (API keys, tokens, master keys) out of traces, logs and error messages."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_SECRET_KEY = re.compile(
    r"(api_?key|token|secret|password|authorization|credential|master_key)", re.IGNORECASE
)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)
_SECRET_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{8,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
]
MASK = "[REDACTED]"


def is_secret_key(name: str) -> bool:
    """Whether a parameter or header name holds a secret."""
    return bool(_SECRET_KEY.search(name))


def sanitize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of LiteLLM parameters fit for a trace: secret values masked, headers dropped."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if is_secret_key(key):
            clean[key] = MASK
        elif key in ("extra_headers", "headers") and isinstance(value, Mapping):
            clean[key] = {k: (MASK if is_secret_key(k) else v) for k, v in value.items()}
        elif isinstance(value, Mapping):
            clean[key] = sanitize_params(value)
        else:
            clean[key] = value
    return clean


def _secret_values(environ: Mapping[str, str]) -> list[str]:
    return sorted(
        (v for k, v in environ.items() if _SECRET_ENV.search(k) and v and len(v) >= 6),
        key=len,
        reverse=True,
    )


def redact_text(text: str, extra_secrets: list[str] | None = None) -> str:
    """Mask secret values from the environment and things that look like keys."""
    if not text:
        return text
    for secret in [*(extra_secrets or []), *_secret_values(os.environ)]:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(MASK, text)
    return text
