"""The proxy's master key: where it comes from, where a generated one is kept, how a request shows it.

Precedence: `--master-key`, then `$LITELLM_MASTER_KEY`, then `general_settings.master_key` in the
user's `--litellm-config`, then a key stored by an earlier `composite serve`, else a new one
(printed once, stored with user-only permissions, reused next time).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from composite_cli.config import user_config_dir
from composite_cli.serve.errors import ServeError

ENV_VAR = "LITELLM_MASTER_KEY"
KEY_FILE_NAME = "serve-master-key"
EXPLICIT_SOURCES = frozenset({"flag", "environment", "litellm-config"})


@dataclass(frozen=True)
class MasterKey:
    """A master key and where it came from. Its repr never shows the value."""

    value: str
    source: str  # flag | environment | litellm-config | stored | generated
    path: Path | None = None

    @property
    def explicit(self) -> bool:
        """Given by the operator (not generated or stored by composite)."""
        return self.source in EXPLICIT_SOURCES

    def __repr__(self) -> str:
        return f"MasterKey(source={self.source!r}, path={self.path!r})"

    __str__ = __repr__


def key_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where a generated key is stored: the user config dir, mode 0600."""
    return user_config_dir(environ) / KEY_FILE_NAME


def new_key() -> str:
    """A fresh random key in the shape LiteLLM expects (`sk-...`)."""
    return "sk-" + secrets.token_hex(32)


def _read_stored(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServeError(f"cannot read the stored master key {path}: {exc.strerror}") from None
    if not text:
        return None
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # someone loosened it: a key file is for its owner only
    return text


def _store(path: Path, key: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key + "\n")
        path.chmod(0o600)
    except OSError as exc:
        raise ServeError(f"cannot store the master key in {path}: {exc.strerror}") from None


def resolve_master_key(
    flag: str | None,
    *,
    config_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> MasterKey:
    """The master key to serve with; generates and stores one when none is given or stored."""
    env = os.environ if environ is None else environ
    for value, source in ((flag, "flag"), (env.get(ENV_VAR), "environment"), (config_key, "litellm-config")):
        if value is not None:
            if not value.strip():
                raise ServeError(f"the master key from {source} is empty")
            return MasterKey(value.strip(), source)
    path = key_file(env)
    stored = _read_stored(path)
    if stored:
        return MasterKey(stored, "stored", path)
    key = new_key()
    _store(path, key)
    return MasterKey(key, "generated", path)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


def check_bind(host: str, key: MasterKey) -> None:
    """Refuse to listen beyond this machine with a key nobody chose on purpose."""
    if not is_loopback(host) and not key.explicit:
        raise ServeError(
            f"refusing to listen on {host} (not a loopback address) without an explicit master key: "
            f"pass --master-key or set ${ENV_VAR}"
        )


_KEY_HEADERS = (b"authorization", b"x-api-key", b"api-key")


def request_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key a request presents (`Authorization: Bearer`, `x-api-key` or `api-key`)."""
    found = {name.lower(): value for name, value in headers if name.lower() in _KEY_HEADERS}
    auth = found.get(b"authorization")
    if auth is not None:
        text = auth.decode("latin-1").strip()
        scheme, _, rest = text.partition(" ")
        key = rest.strip() if scheme.lower() == "bearer" else text
        if key:
            return key
    for name in _KEY_HEADERS[1:]:
        if found.get(name):
            return found[name].decode("latin-1").strip() or None
    return None


def same_key(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so timing tells nothing about the key."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
