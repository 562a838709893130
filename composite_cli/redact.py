"""Keep secrets (API keys, tokens, master keys) out of traces, logs and error messages.

The one owner of what a secret is. Two rules, used by every sink (the trace database, exports,
Datasette, `composite models`, logs, error messages):

- By name: a parameter, header or environment variable whose name says key, token, secret,
  password, authorization, credential or cookie holds a secret (`api_key`, `X-Api-Key`,
  `anthropic-api-key`, `Authorization`, `OPENAI_API_KEY`). A name that counts tokens
  (`max_tokens`, `prompt_tokens`, `top_logprobs`) or names a tokenizer's symbol is not a secret.
- By value, in free text: the values of secret environment variables and of secrets seen in
  parameters, and text shaped like a key (`sk-...`, `Bearer ...`, `AKIA...`, `api_key=...`).
  A file path is never a secret value, so error messages keep the paths they name.
"""

from __future__ import annotations

import functools
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

MASK = "[REDACTED]"

# A word in a name that says the value is a secret; compounds ending in one count too (`apikey`,
# `accesstoken`, `clientsecret`).
_SECRET_WORDS = frozenset(
    {"key", "token", "secret", "password", "passwd", "passphrase", "authorization", "credential",
     "credentials", "cookie"}
)  # fmt: skip
_SECRET_SUFFIXES = ("key", "token", "secret", "password")
# Words that make a name a count, a size or a setting about secrets rather than a secret.
_COUNT_WORDS = frozenset(
    {"tokens", "max", "min", "num", "count", "limit", "budget", "length", "size", "type", "env"}
)
# Names that hold no secret although a secret word is in them (compared lower-case, `-` as `_`).
NON_SECRET_NAMES = frozenset(
    {
        "max_tokens", "max_completion_tokens", "max_output_tokens", "max_input_tokens",
        "max_new_tokens", "prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens",
        "cached_tokens", "budget_tokens", "top_logprobs", "logprobs", "eos_token", "bos_token",
        "pad_token", "unk_token", "sep_token", "stop_token", "tokenizer", "keep_alive",
    }
)  # fmt: skip
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=1024)
def is_secret_key(name: str) -> bool:
    """Whether a parameter, header or environment variable of this name holds a secret."""
    normal = name.strip().lower().replace("-", "_")
    if normal in NON_SECRET_NAMES:
        return False
    words = [w for w in _NOT_ALNUM.split(_CAMEL.sub("_", name.strip()).lower()) if w]
    if not words or _COUNT_WORDS.intersection(words):
        return False
    if words[-1] == "auth":  # `basic_auth`, `proxy_auth`; but not `auth_type`
        return True
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) for w in words)


# -- values seen in parameters -------------------------------------------------------------------

_MIN_SECRET_CHARS = 8  # shorter values would mask ordinary words in every message
_REMEMBERED_LIMIT = 512
_remembered: OrderedDict[str, None] = OrderedDict()


def remember_secret(value: Any) -> None:
    """Mask this value wherever it shows up in text from now on (most recent 512 kept)."""
    if isinstance(value, str) and len(value.strip()) >= _MIN_SECRET_CHARS:
        value = value.strip()
        if value.lower().startswith("bearer "):
            value = value[7:].strip()
        _remembered[value] = None
        _remembered.move_to_end(value)
        while len(_remembered) > _REMEMBERED_LIMIT:
            _remembered.popitem(last=False)
    elif isinstance(value, Mapping):
        for item in value.values():
            remember_secret(item)
    elif isinstance(value, list | tuple):
        for item in value:
            remember_secret(item)


def sanitize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of LiteLLM parameters (or headers, or mode parameters) fit for a trace or a screen:
    the value of every secret-named entry masked at any depth, and key-shaped text in the other
    strings masked. The masked values are remembered, so error text that quotes them is masked too."""
    _remember_named(params)
    secrets = known_secrets()  # once: reading the environment is most of the cost
    return {str(key): _clean(key, value, secrets) for key, value in params.items()}


def _remember_named(value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key):
                remember_secret(item)
            else:
                _remember_named(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _remember_named(item)


# Parameters that hold the request's content (tool schemas, output formats), not where a call goes:
# masked by name only, their text left as written (and not scanned: it can be long).
_CONTENT_PARAMS = frozenset({"tools", "functions", "tool_choice", "response_format", "stop", "logit_bias"})


def _clean(key: Any, value: Any, secrets: list[str] | None) -> Any:
    if isinstance(key, str) and is_secret_key(key) and value not in (None, ""):
        return MASK
    if key in _CONTENT_PARAMS:
        secrets = None
    if isinstance(value, Mapping):
        return {str(k): _clean(k, v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(None, item, secrets) for item in value]
    if isinstance(value, str) and secrets is not None and len(value) >= _MIN_SECRET_CHARS:
        return _redact(value, secrets)
    return value


# -- free text -----------------------------------------------------------------------------------

_KEY_SHAPES = [
    # OpenAI / Anthropic style keys; not a path component (`/home/me/sk-project-files/`)
    re.compile(r"(?<![\w/\\.-])sk-[A-Za-z0-9_\-]{16,}(?![\w-]*[/\\])"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    re.compile(r"\b(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"),  # a JWT
]
# `api_key=VALUE`, `?key=VALUE&`, `'api_key': 'VALUE'`, `"X-Api-Key": "VALUE"`: masked when the
# name is a secret's (decided by is_secret_key). A bare `name: text` is left alone: that is how
# error messages name a field (`profiles.p.fast.api_key: must be a string`).
_ASSIGNED = re.compile(r"(?<![\w\-])(?P<name>[A-Za-z_][\w\-]*)(?P<sep>=[\"']?)(?P<value>[^\s\"'&,;)}\[\]]+)")
_QUOTED = re.compile(
    r"(?P<q>[\"'])(?P<name>[A-Za-z_][\w\-]*)(?P=q)(?P<sep>\s*:\s*(?P<q2>[\"']))(?P<value>[^\"']*)(?P=q2)"
)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)(?P<value>[^\s@/]+)(?=@)")


def _looks_like_path(value: str) -> bool:
    """A value naming a file or a directory that exists (or would, in an existing directory):
    `GOOGLE_APPLICATION_CREDENTIALS` holds a path to a secret, not the secret."""
    if os.sep not in value and "/" not in value:
        return False
    path = os.path.expanduser(value)
    return os.path.exists(path) or os.path.isdir(os.path.dirname(path) or ".")


def _env_secrets(environ: Mapping[str, str]) -> list[str]:
    return [value for value in _secret_named_values(environ) if not _looks_like_path(value)]


def _secret_named_values(environ: Mapping[str, str]) -> list[str]:
    return [
        value.strip()
        for name, value in environ.items()
        if is_secret_key(name) and len(value.strip()) >= _MIN_SECRET_CHARS
    ]


# The secret-named values of os.environ, kept with the environment they were read from: reading
# every variable through os.environ (decoding each) was most of the cost of a trace row. The
# environment is compared whole on every use (its raw bytes, a C-speed tuple compare), so a
# variable set or removed since is seen at once; the path check stays live (files come and go).
_env_cache: tuple[tuple[Any, ...], list[str]] | None = None


def _environ_secrets() -> list[str]:
    global _env_cache
    raw = getattr(os.environ, "_data", None)
    if not isinstance(raw, dict):  # not CPython's os.environ: read it the slow way
        return _env_secrets(os.environ)
    snapshot = tuple(raw.items())
    cached = _env_cache
    if cached is None or cached[0] != snapshot:
        cached = (snapshot, _secret_named_values(os.environ))
        _env_cache = cached
    return [value for value in cached[1] if not _looks_like_path(value)]


def known_secrets(extra: list[str] | None = None) -> list[str]:
    """Secret values to mask in text, longest first: `extra`, the environment's, the remembered."""
    values = {v for v in (extra or []) if v and len(v) >= _MIN_SECRET_CHARS}
    values.update(_environ_secrets())
    values.update(_remembered)
    return sorted(values, key=len, reverse=True)


# What usage text writes in a value's place (`--param KEY=VALUE`, `api_key=<your key>`): kept.
_PLACEHOLDER = re.compile(r"[A-Z_]+|value|\.\.\.|<[^>]*>?|\{[^}]*\}?")


def _mask_named(match: re.Match[str]) -> str:
    value = match["value"]
    if not is_secret_key(match["name"]) or value in ("", MASK) or _PLACEHOLDER.fullmatch(value):
        return match[0]
    start = match.start("value") - match.start()
    return match[0][:start] + MASK + match[0][start + len(match["value"]) :]


def redact_text(text: str, extra_secrets: list[str] | None = None) -> str:
    """Mask known secret values (the environment's, those seen in parameters, `extra_secrets`) and
    text shaped like a key or a secret assignment. Paths and ordinary field names are kept."""
    if not text:
        return text
    return _redact(text, known_secrets(extra_secrets))


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _KEY_SHAPES:
        text = pattern.sub(MASK, text)
    text = _QUOTED.sub(_mask_named, text)
    text = _ASSIGNED.sub(_mask_named, text)
    return _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
