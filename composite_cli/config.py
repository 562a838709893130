"""Config files and model profiles: which LiteLLM parameters each model alias stands for.

Lookup order for the config file: `--config FILE`, `$COMPOSITE_CONFIG`, `./composite.yaml`,
then `<user config dir>/config.yaml`. Relative paths inside a config file (`db`, `modes_path`)
are relative to the file's own directory.

`allow_code` lists the module prefixes whose functions data files (eval sets, mode files) may
name as scorers and tools. It is read only from a config the user chose (`--config`,
`$COMPOSITE_CONFIG`, the user config dir), never from a `./composite.yaml` that merely lies in
the working directory (a cloned repository could ship one).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from composite_cli.dotted import bad_allow_entry
from composite_cli.errors import ConfigError, UnknownAliasError, UnknownProfileError
from composite_cli.yamlfile import FieldReader, YamlSyntaxError, line_of, load_yaml_file

LOCAL_MODEL = "local/smollm2"
DEFAULT_PROFILE = "local"
DRY_PROFILE = "dry"
DEFAULT_DB = "traces.db"
APP_NAME = "composite"

# The built-in `dry` profile: mock models (the `dry/...` provider in composite_cli/faults.py), no
# network, cost 0, the same answers every time. Its answers let every shipped mode finish: the
# judge finds nothing to fix (reflect stops after one critique) and grades 10, the RLM root follows
# the REPL protocol in one turn (one sub-call on the context, then FINAL_VAR), every other alias
# says plainly that it is a dry run.
DRY_MODEL = "dry/mock"
DRY_ANSWER = "This is a dry run: no model was called."
DRY_JUDGE_ANSWER = "NO ISSUES. SCORE: 10. REASON: a dry run approves every answer."
DRY_ROOT_ANSWER = "```repl\nanswer = llm_query(str(context)[:4000])\n```\nFINAL_VAR(answer)"

BUILTIN_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    DEFAULT_PROFILE: {"*": {"model": LOCAL_MODEL}},
    DRY_PROFILE: {
        "judge": {"model": DRY_MODEL, "answer": DRY_JUDGE_ANSWER},
        "root": {"model": DRY_MODEL, "answer": DRY_ROOT_ANSWER},
        "*": {"model": DRY_MODEL, "answer": DRY_ANSWER},
    },
}

_CONFIG_KEYS = {"profile", "db", "modes_path", "profiles", "no_content", "allow_code"}


def user_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user config directory (XDG on Linux)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP_NAME


def _fresh(value: Any) -> Any:
    """A copy of a parameter value whose dicts and lists are new (strings and numbers are shared):
    what `copy.deepcopy` gives for YAML data, at a third of its cost (it runs for every model call)."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


@dataclass(frozen=True)
class Profile:
    """A named mapping from model aliases to LiteLLM parameters ("*" is the fallback)."""

    name: str
    # alias -> LiteLLM parameters, or a list of them: the first model, then its fallbacks
    aliases: Mapping[str, Any]

    def has(self, alias: str) -> bool:
        return alias in self.aliases or "*" in self.aliases

    def resolve(self, alias: str) -> dict[str, Any]:
        """LiteLLM parameters for `alias` (its first model): a fresh copy the caller may change."""
        return self.candidates(alias)[0]

    def candidates(self, alias: str) -> list[dict[str, Any]]:
        """Every model `alias` may use, in order: the first, then its fallbacks (fresh copies)."""
        params = self.aliases.get(alias)
        if params is None:
            params = self.aliases.get("*")
        if params is None:
            known = ", ".join(sorted(self.aliases)) or "(none)"
            raise UnknownAliasError(
                f"profile {self.name!r} has no model for alias {alias!r} and no '*' fallback "
                f"(aliases: {known})"
            )
        chain = params if isinstance(params, list) else [params]
        return [_fresh(dict(p)) for p in chain]

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Profile:
        """A copy where each alias in `overrides` maps to new parameters."""
        if not overrides:
            return self
        merged = copy.deepcopy(dict(self.aliases))
        for alias, params in overrides.items():
            merged[alias] = dict(params)
        return Profile(self.name, merged)

    def table(self, aliases: Sequence[str] = ()) -> list[tuple[str, dict[str, Any]]]:
        """Rows (alias, params) for display: declared aliases plus any extra asked for."""
        names = list(self.aliases)
        for alias in aliases:
            if alias not in names:
                names.append(alias)
        rows = []
        for alias in names:
            try:
                rows.append((alias, self.resolve(alias)))
            except UnknownAliasError:
                rows.append((alias, {}))
        return rows


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about where things are and which models to use."""

    profile: Profile
    db_path: Path
    modes_path: tuple[Path, ...] = ()
    config_path: Path | None = None
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Keep prompts and answers out of the trace (metadata only): `no_content: true` or --no-content.
    no_content: bool = False
    # Module prefixes (or `module:function`) whose functions eval and mode files may name:
    # `allow_code:` in the user's config plus `--allow-code`. Empty: data files run no code.
    allow_code: tuple[str, ...] = ()

    def profile_named(self, name: str) -> Profile:
        """Another profile from the same config (for per-request profile choice)."""
        return _make_profile(name, self.profiles, self.config_path)

    def allowing_code(self, prefixes: Sequence[str]) -> Settings:
        """These settings with `--allow-code` prefixes added. Raises ConfigError for a bad one."""
        for prefix in prefixes:
            problem = bad_allow_entry(prefix)
            if problem:
                raise ConfigError(f"--allow-code: {problem}")
        added = tuple(p for p in prefixes if p not in self.allow_code)
        return replace(self, allow_code=self.allow_code + added) if added else self


def parse_model_override(text: str) -> tuple[str, dict[str, Any]]:
    """Parse `ALIAS=MODEL` (as given to --model) into (alias, litellm params)."""
    alias, sep, model = text.partition("=")
    alias, model = alias.strip(), model.strip()
    if not sep or not alias or not model:
        raise ConfigError(f"--model expects ALIAS=MODEL (e.g. fast=openai/gpt-4.1-mini), got {text!r}")
    return alias, {"model": model}


def find_config_file(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to use, or None when there is none."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    from_env = environ.get("COMPOSITE_CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from $COMPOSITE_CONFIG)")
        return path
    local = Path("composite.yaml")
    if local.is_file():
        return local
    user = user_config_dir(environ) / "config.yaml"
    if user.is_file():
        return user
    return None


def _validate_profiles(raw: Any, path: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "profiles: must be a mapping of profile name to aliases", path=path, line=line_of(raw)
        )
    profiles: dict[str, dict[str, Any]] = {}
    for name, aliases in raw.items():
        if not isinstance(aliases, dict) or not aliases:
            raise ConfigError(
                f"profiles.{name}: must be a mapping of alias to LiteLLM parameters",
                path=path,
                line=line_of(raw, name),
            )
        checked: dict[str, Any] = {}
        for alias, params in aliases.items():
            where = f"profiles.{name}.{alias}"
            chain = params if isinstance(params, list) else [params]
            if not chain:
                raise ConfigError(
                    f"{where}: an empty list of models", path=path, line=line_of(aliases, alias)
                )
            for i, item in enumerate(chain):
                here = f"{where}[{i}]" if isinstance(params, list) else where
                line = line_of(params, i) if isinstance(params, list) else line_of(aliases, alias)
                if not isinstance(item, dict):
                    raise ConfigError(
                        f"{here}: must be a mapping like {{model: openai/gpt-4.1-mini}} "
                        "(or a list of them: the model, then its fallbacks)",
                        path=path,
                        line=line,
                    )
                model = item.get("model")
                if not isinstance(model, str) or not model.strip():
                    raise ConfigError(
                        f"{here}.model: a model name (string) is required", path=path, line=line
                    )
                _check_generation(item, here, path)
            checked[str(alias)] = [dict(p) for p in chain] if isinstance(params, list) else dict(params)
        profiles[str(name)] = checked
    return profiles


# The generation parameters a profile may set for an alias, checked as a mode file's call step
# checks them: a finite number (at least 0) or a whole number of at least 1. Anything else would
# reach the model as it is (llama samples at a temperature of NaN without a word).
_PROFILE_GENERATION: dict[str, tuple[str, float]] = {
    "temperature": ("number", 0),
    "top_p": ("number", 0),
    "max_tokens": ("integer", 1),
    "max_completion_tokens": ("integer", 1),
}


def _check_generation(item: Mapping[str, Any], here: str, path: str) -> None:
    for key, (kind, least) in _PROFILE_GENERATION.items():
        value = item.get(key)
        if value is None:
            continue
        whole = kind == "integer"
        wrong = (
            isinstance(value, bool)
            or not isinstance(value, int if whole else (int, float))
            or not math.isfinite(value)
            or value < least
        )
        if wrong:
            wanted = (
                f"a whole number of at least {least:g}" if whole else f"a finite number of at least {least:g}"
            )
            raise ConfigError(
                f"{here}.{key}: must be {wanted}, not {value!r}", path=path, line=line_of(item, key)
            )


def _make_profile(
    name: str, profiles: Mapping[str, Mapping[str, Mapping[str, Any]]], config_path: Path | None
) -> Profile:
    if name in profiles:
        return Profile(name, profiles[name])
    if name in BUILTIN_PROFILES:
        return Profile(name, BUILTIN_PROFILES[name])
    known = sorted(set(profiles) | set(BUILTIN_PROFILES))
    where = f" in {config_path}" if config_path else ""
    raise UnknownProfileError(f"unknown profile {name!r}{where}; known profiles: {', '.join(known)}")


def read_config_file(path: Path) -> dict[str, Any]:
    """Load and check a config file; errors name the file and line."""
    spath = str(path)
    try:
        data = load_yaml_file(path)
    except YamlSyntaxError as exc:
        raise ConfigError(str(exc), path=spath, line=exc.line) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=spath) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            "the config file must be a mapping (profile:, db:, profiles:, ...)",
            path=spath,
            line=line_of(data),
        )
    fields = _fields(spath)
    fields.check_keys(data, _CONFIG_KEYS, "", message="unknown key {key} (expected one of {allowed})")
    fields.string(data, "profile", "", message="must be a profile name", empty_is_absent=False)
    fields.boolean(data, "no_content", "", False, message="must be true or false")
    fields.string(data, "db", "", message="must be a file path", empty_is_absent=False)
    modes_path = fields.strings(data, "modes_path", "", message="must be a list of directories") or []
    return {
        "profile": data.get("profile"),
        "allow_code": _allow_code(data, spath),
        "db": data.get("db"),
        "modes_path": modes_path,
        "profiles": _validate_profiles(data.get("profiles"), spath),
        "profile_line": line_of(data, "profile"),
        "allow_code_line": line_of(data, "allow_code"),
        "no_content": bool(data.get("no_content", False)),
    }


def _fields(path: str) -> FieldReader:
    """The shared YAML field checks (yamlfile.FieldReader), stopping at the first problem: a
    ConfigError naming the file, line and field."""

    def report(node: Any, key: str | int | None, field_name: str, message: str) -> None:
        text = f"{field_name}: {message}" if field_name else message
        raise ConfigError(text, path=path, line=line_of(node, key))

    return FieldReader(report)


def _allow_code(data: dict[str, Any], path: str) -> tuple[str, ...]:
    raw = data.get("allow_code", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError(
            "allow_code: must be a list of module prefixes (e.g. [mypkg.scorers])",
            path=path,
            line=line_of(data, "allow_code"),
        )
    for i, entry in enumerate(raw):
        problem = bad_allow_entry(entry)
        if problem:
            raise ConfigError(f"allow_code[{i}]: {problem}", path=path, line=line_of(raw, i))
    return tuple(raw)


def load_settings(
    *,
    config: str | Path | None = None,
    profile: str | None = None,
    models: Sequence[str] = (),
    db: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    no_content: bool = False,
) -> Settings:
    """Resolve the active settings from flags, environment and the config file."""
    env = os.environ if environ is None else environ
    config_path = find_config_file(config, env)
    data: dict[str, Any] = read_config_file(config_path) if config_path else {}
    chosen = bool(config) or bool(env.get("COMPOSITE_CONFIG"))
    if data.get("allow_code") and not chosen and config_path == Path("composite.yaml"):
        raise ConfigError(
            "allow_code: not read from a composite.yaml found in the working directory (a cloned "
            "repository could ship one); pass it with --config, $COMPOSITE_CONFIG, or put allow_code "
            f"in {user_config_dir(env) / 'config.yaml'}",
            path=str(config_path),
            line=data.get("allow_code_line"),
        )
    base = config_path.parent if config_path else Path(".")
    profiles = data.get("profiles", {})

    profile_name = profile or env.get("COMPOSITE_PROFILE") or data.get("profile") or DEFAULT_PROFILE
    try:
        active = _make_profile(profile_name, profiles, config_path)
    except UnknownProfileError as exc:
        if profile_name == data.get("profile") and not profile and not env.get("COMPOSITE_PROFILE"):
            # The name came from the file's `profile:` line: point there.
            raise UnknownProfileError(
                exc.detail, path=str(config_path), line=data.get("profile_line")
            ) from None
        raise
    active = active.with_overrides(dict(parse_model_override(m) for m in models))

    if db:
        db_path = Path(db)
    elif env.get("COMPOSITE_DB"):
        db_path = Path(env["COMPOSITE_DB"])
    elif data.get("db"):
        db_path = base / data["db"]
    else:
        db_path = Path(DEFAULT_DB)

    modes_path = tuple(base / p for p in data.get("modes_path", []))
    return Settings(
        profile=active,
        db_path=db_path,
        modes_path=modes_path,
        config_path=config_path,
        profiles=profiles,
        no_content=no_content or bool(data.get("no_content")) or env.get("COMPOSITE_NO_CONTENT") == "1",
        allow_code=tuple(data.get("allow_code", ())),
    )


def tui_theme_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where `composite tui` remembers the theme last chosen (a one-line file in the user config
    dir, apart from config.yaml so that a hand-edited config is never rewritten)."""
    return user_config_dir(environ) / "tui-theme"


def read_tui_theme(environ: Mapping[str, str] | None = None) -> str | None:
    """The remembered TUI theme name, or None (no file, unreadable, or not one line of text)."""
    try:
        text = tui_theme_file(environ).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text and len(text) <= 64 and text.isprintable() and "\n" not in text else None


def save_tui_theme(name: str, environ: Mapping[str, str] | None = None) -> None:
    """Remember `name` as the TUI theme. Raises OSError when the config dir cannot be written."""
    path = tui_theme_file(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n", encoding="utf-8")
