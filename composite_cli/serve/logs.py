"""The server log: one line for a client's mistake, the full traceback for ours.

LiteLLM logs a request that failed with a traceback whenever a provider raised, and composite is
a provider: a bad mode parameter printed 40 lines for what is the client's mistake. In a worker,
`quiet_client_errors()` drops LiteLLM's records about exceptions that are answered 4xx, and the
edge writes one line instead (`client_error`): method, path, status, the message. An exception
answered 5xx (our bug, or an upstream's) keeps LiteLLM's record and its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from composite_cli.redact import redact_text

LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router")
# A child of uvicorn's logger: the line lands beside uvicorn's own, in its format.
logger = logging.getLogger("uvicorn.error.composite")
_MESSAGE_LIMIT = 300


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, bool):
            continue
        try:
            return int(str(value))
        except (TypeError, ValueError):
            continue
    return None


def is_client_error(exc: BaseException | None) -> bool:
    """An exception the proxy answers with a 4xx."""
    status = _status(exc) if exc is not None else None
    return status is not None and 400 <= status < 500


class ClientErrorFilter(logging.Filter):
    """Drops a record whose exception (attached, or among its arguments) is answered 4xx."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            args: Any = record.args if isinstance(record.args, tuple) else ()
            exc = next((a for a in args if isinstance(a, BaseException)), None)
        return not is_client_error(exc)


_FILTER = ClientErrorFilter()


def quiet_client_errors() -> None:
    """Install the filter on LiteLLM's loggers (idempotent)."""
    for name in LITELLM_LOGGERS:
        named = logging.getLogger(name)
        if _FILTER not in named.filters:
            named.addFilter(_FILTER)


def client_error(method: str, path: str, status: int, message: str) -> None:
    """The one log line for a request refused with a 4xx."""
    first = (message.strip().splitlines() or [""])[0]
    if len(first) > _MESSAGE_LIMIT:
        first = first[: _MESSAGE_LIMIT - 3] + "..."
    logger.warning("%s %s %d: %s", method, path, status, redact_text(first))
