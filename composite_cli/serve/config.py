"""The LiteLLM proxy config `composite serve` generates: one model per mode (plus short aliases),
the `composite` provider in `custom_provider_map`, merged with a user's own LiteLLM config.

The master key never goes into the file: it says `os.environ/LITELLM_MASTER_KEY`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from composite_cli.engine.library import ModeLibrary
from composite_cli.errors import ModeValidationError, UnknownModeError
from composite_cli.serve.auth import ENV_VAR
from composite_cli.serve.errors import ServeError

PROVIDER = "composite"
SERVE_HANDLER = "composite_cli.serve.handler.handler"
SERVE_LOCAL_HANDLER = "composite_cli.provider.local_handler"
PLAIN_HANDLER = "composite_cli.provider.handler"
FAULTY_HANDLER = "composite_cli.faults.handler"
DRY_HANDLER = "composite_cli.faults.dry_handler"  # the built-in `dry` profile's models
CACHE_HOOK = "composite_cli.serve.cache_runs.cache_hit_runs"  # a proxy cache hit on a mode is a run
_ENV_PREFIX = "os.environ/"


@dataclass(frozen=True)
class ServedMode:
    """A mode and the model names it answers to (`composite/moa-v1`, `moa-v1`, `moa`)."""

    name: str
    names: tuple[str, ...]

    @property
    def model(self) -> str:
        return f"{PROVIDER}/{self.name}"


def served_modes(library: ModeLibrary, only: Sequence[str] = ()) -> list[ServedMode]:
    """Every valid mode (or the ones asked for) with its model names. Unknown names are errors."""
    shorts: dict[str, list[str]] = {}
    for short, full in library.short_names().items():
        shorts.setdefault(full, []).append(short)
    if only:
        try:
            wanted = list(dict.fromkeys(library.resolve(name) for name in only))
        except UnknownModeError as exc:
            raise ServeError(f"--modes: {exc}") from None
    else:
        wanted = library.names()
    served = []
    for name in wanted:
        try:
            library.load(name)
        except ModeValidationError as exc:
            if only:
                raise ServeError(f"mode {name!r} is invalid: {exc.errors[0].one_line()}") from None
            continue  # `composite modes validate` reports it; serve the rest
        served.append(ServedMode(name, (f"{PROVIDER}/{name}", name, *sorted(shorts.get(name, [])))))
    if not served:
        raise ServeError("no valid modes to serve (see `composite modes validate`)")
    return served


def model_list(
    modes: Sequence[ServedMode], taken: set[str] | frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """`model_list` entries: every name of every mode, except names the user's config already has
    (never a second entry of a name: that twin would answer past the limits set on the first)."""
    entries = []
    for mode in modes:
        for name in mode.names:
            if name in taken:
                continue  # the user's own entry of that name wins
            entries.append(
                {
                    "model_name": name,
                    "litellm_params": {"model": mode.model},
                    "model_info": {"composite_mode": mode.name},
                }
            )
    return entries


@dataclass(frozen=True)
class UserModels:
    """What a user's `model_list` says about the modes: the names it takes, and for each mode the
    user's own entries that serve it (`litellm_params.model: composite/<mode>`)."""

    taken: frozenset[str]
    groups: Mapping[str, tuple[str, ...]]  # mode -> the user's model names serving it, in order

    def serving(self, mode: ServedMode) -> tuple[str, ...]:
        return self.groups.get(mode.name, ())


def user_models(modes: Sequence[ServedMode], user: Mapping[str, Any] | None) -> UserModels:
    """Read a user's `model_list` (hostile input: entries that are not mappings are the proxy's to
    refuse; here they take no name and serve no mode)."""
    by_model = {f"{PROVIDER}/{name}": mode.name for mode in modes for name in mode.names}
    taken: set[str] = set()
    groups: dict[str, list[str]] = {}
    for entry in (user or {}).get("model_list") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
            continue
        name = entry["model_name"]
        taken.add(name)
        params = entry.get("litellm_params")
        model = params.get("model") if isinstance(params, dict) else None
        mode = by_model.get(model) if isinstance(model, str) else None
        if mode is not None and name not in groups.get(mode, []):
            groups.setdefault(mode, []).append(name)
    return UserModels(frozenset(taken), {m: tuple(n) for m, n in groups.items()})


def claim_names(modes: Sequence[ServedMode], user: Mapping[str, Any] | None) -> list[ServedMode]:
    """The model names that reach each mode under a user's config: composite's names the user did
    not take for a model of their own, plus the user's own entries that serve the mode."""
    theirs = user_models(modes, user)
    out = []
    for mode in modes:
        own = theirs.serving(mode)
        names = [n for n in mode.names if n not in theirs.taken or n in own]
        out.append(ServedMode(mode.name, tuple(dict.fromkeys([*names, *own]))))
    return out


def provider_map(handler: str, local_handler: str | None) -> list[dict[str, str]]:
    """`custom_provider_map` entries. The proxy replaces LiteLLM's whole map with its config's, so
    the embedded model's `local` provider (which profiles like `local` need) is listed too."""
    entries = [{"provider": PROVIDER, "custom_handler": handler}]
    if local_handler:
        entries.append({"provider": "local", "custom_handler": local_handler})
        entries.append({"provider": "faulty", "custom_handler": FAULTY_HANDLER})
        entries.append({"provider": "dry", "custom_handler": DRY_HANDLER})
    return entries


def snippet(modes: Sequence[ServedMode]) -> str:
    """The config.yaml text that lets an existing LiteLLM proxy serve composite modes."""
    body = {
        "model_list": model_list(modes),
        "litellm_settings": {"custom_provider_map": provider_map(PLAIN_HANDLER, SERVE_LOCAL_HANDLER)},
    }
    header = (
        "# composite modes for a LiteLLM proxy: merge into your config.yaml (or use as it is).\n"
        "# The proxy needs composite installed in its environment. composite reads its own settings\n"
        "# there too: $COMPOSITE_CONFIG, $COMPOSITE_PROFILE, $COMPOSITE_DB.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def read_litellm_config(path: Path) -> dict[str, Any]:
    """A user's LiteLLM config file, checked only as far as we need to merge it."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServeError(f"LiteLLM config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeError(f"cannot read LiteLLM config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ServeError(f"{where}: invalid YAML in LiteLLM config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServeError(f"{path}: a LiteLLM config must be a mapping (model_list:, litellm_settings:, ...)")
    for key in ("model_list", "include"):
        if key in data and data[key] is not None and not isinstance(data[key], list):
            raise ServeError(f"{path}: {key}: must be a list")
    for key in ("litellm_settings", "general_settings", "router_settings"):
        if key in data and data[key] is not None and not isinstance(data[key], dict):
            raise ServeError(f"{path}: {key}: must be a mapping")
    _check_model_list(path, data.get("model_list") or [])
    router = data.get("router_settings") or {}
    if not isinstance(router.get("model_group_alias") or {}, dict):
        raise ServeError(f"{path}: router_settings.model_group_alias: must be a mapping (alias: model group)")
    callbacks = (data.get("litellm_settings") or {}).get("callbacks")
    if callbacks is not None and not isinstance(callbacks, (list, str)):
        raise ServeError(f"{path}: litellm_settings.callbacks: must be a list of callback names")
    if data.get("include"):
        # the merged file lives elsewhere: make the included files' paths absolute
        data["include"] = [str((path.parent / str(p)).resolve()) for p in data["include"]]
    return data


def _check_model_list(path: Path, entries: list[Any]) -> None:
    """Each `model_list` entry is a mapping with a string `model_name` and a `litellm_params`
    mapping whose `model` is a string (what the merge and LiteLLM's start-up read); the first bad
    one is one line naming its line and field (LiteLLM's own start-up would end in a traceback)."""
    for index, entry in enumerate(entries):
        problem = None
        if not isinstance(entry, dict):
            field, problem = f"model_list[{index}]", "must be a mapping (model_name:, litellm_params:)"
        elif not isinstance(entry.get("model_name"), str) or not entry["model_name"]:
            field, problem = f"model_list[{index}].model_name", "must be a model name (text)"
        elif not isinstance(entry.get("litellm_params"), dict):
            field, problem = f"model_list[{index}].litellm_params", "must be a mapping (model:, ...)"
        elif not isinstance(model := entry["litellm_params"].get("model"), str) or not model:
            field, problem = f"model_list[{index}].litellm_params.model", "must be a model (text)"
        if problem is not None:
            raise ServeError(f"{_where(path, index)}: {field}: {problem}")


def _where(path: Path, index: int) -> str:
    """`path:line` of model_list entry `index` (the file parsed again with lines, only for the message)."""
    from composite_cli.yamlfile import YamlSyntaxError, line_of, load_yaml_file

    try:
        entries = (load_yaml_file(path) or {}).get("model_list")
    except (OSError, UnicodeDecodeError, YamlSyntaxError, AttributeError):
        return str(path)
    line = line_of(entries, index)
    return f"{path}:{line}" if line else str(path)


def config_master_key(user: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """`general_settings.master_key` of a user's config (following `os.environ/NAME`)."""
    value = (user.get("general_settings") or {}).get("master_key")
    if not isinstance(value, str) or not value:
        return None
    if value.startswith(_ENV_PREFIX):
        return environ.get(value[len(_ENV_PREFIX) :]) or None
    return value


def uses_database(user: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether the proxy has a database, so keys other than the master key (virtual keys) exist."""
    return bool(environ.get("DATABASE_URL") or (user.get("general_settings") or {}).get("database_url"))


def proxy_config(modes: Sequence[ServedMode], user: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full proxy config: the user's (if any) with composite's models and provider merged in.

    A user's entry is never shadowed. A mode the user's config already serves (an entry with
    `litellm_params.model: composite/<mode>`, whatever its name and limits) gets no entry of ours:
    its other names become the router's `model_group_alias` of the user's entry, so every name of
    the mode shares that entry's deployments, `rpm`/`tpm` and cooldowns. A name the user gave to
    a model of their own is theirs; the mode keeps its other names.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(user or {}))
    theirs_entries = [e for e in merged.get("model_list") or [] if isinstance(e, dict)]
    theirs = user_models(modes, merged)
    router = dict(merged.get("router_settings") or {})
    aliases = router.get("model_group_alias")
    if aliases is not None and not isinstance(aliases, dict):
        raise ServeError("router_settings.model_group_alias: must be a mapping (alias: model group)")
    aliases = dict(aliases or {})
    ours = []
    for mode in modes:
        own = theirs.serving(mode)
        if not own:
            ours.append(mode)
            continue
        for name in mode.names:
            if name not in theirs.taken:
                aliases.setdefault(name, own[0])
    merged["model_list"] = theirs_entries + model_list(ours, theirs.taken | set(aliases))
    settings = dict(merged.get("litellm_settings") or {})
    providers = provider_map(SERVE_HANDLER, SERVE_LOCAL_HANDLER)
    names = {e["provider"] for e in providers}
    others = [
        e
        for e in settings.get("custom_provider_map") or []
        if not isinstance(e, dict) or e.get("provider") not in names
    ]
    settings["custom_provider_map"] = providers + others
    if settings.get("cache"):
        settings["callbacks"] = _with_cache_hook(settings.get("callbacks"))
    merged["litellm_settings"] = settings
    general = dict(merged.get("general_settings") or {})
    general["master_key"] = f"{_ENV_PREFIX}{ENV_VAR}"
    # Clients reach composite serve directly (it binds loopback unless told otherwise); without
    # this the proxy warns at every start that its sign-in throttle cannot group by address. A
    # user behind a reverse proxy sets the proxy's ranges in their own config, which wins.
    general.setdefault("trusted_proxy_ranges", [])
    merged["general_settings"] = general
    # The router would retry a failed request twice, running the whole mode three times; modes
    # retry their own calls (per step), so the router does not, unless the user's config says so.
    # The same holds for internal calls sent through the router (serve/router_dispatch.py).
    router.setdefault("num_retries", 0)
    if aliases:
        router["model_group_alias"] = aliases
    merged["router_settings"] = router
    return merged


def _with_cache_hook(callbacks: Any) -> list[Any]:
    """The user's `litellm_settings.callbacks` plus the hook that records a proxy cache hit on a
    mode as a run (serve/cache_runs.py), listed only when the cache is on."""
    if callbacks is None:
        callbacks = []
    elif isinstance(callbacks, str):
        callbacks = [callbacks]
    elif not isinstance(callbacks, list):
        raise ServeError("litellm_settings.callbacks: must be a list of callback names")
    return callbacks if CACHE_HOOK in callbacks else [*callbacks, CACHE_HOOK]


def write_config(config: Mapping[str, Any], path: Path) -> Path:
    """Write the config with user-only permissions (a user's config may hold provider keys)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(dict(config), fh, sort_keys=False)
    return path
