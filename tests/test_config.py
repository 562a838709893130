"""Config files and profiles: where settings come from, in which order, and how errors read."""

from __future__ import annotations

from pathlib import Path

import pytest

from composite_cli.config import (
    BUILTIN_PROFILES,
    DEFAULT_PROFILE,
    DRY_ANSWER,
    DRY_MODEL,
    LOCAL_MODEL,
    find_config_file,
    load_settings,
    parse_model_override,
    read_config_file,
)
from composite_cli.errors import ConfigError, UnknownAliasError, UnknownProfileError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def profile_config(profile: str, model: str) -> str:
    """A config file whose active profile maps every alias to `model`."""
    return f'profile: {profile}\nprofiles:\n  {profile}:\n    "*": {{model: {model}}}\n'


@pytest.fixture
def xdg_config(isolated_home: Path) -> Path:
    """The user config file path under $XDG_CONFIG_HOME (set by the isolated_home fixture)."""
    return isolated_home.parent / "home" / ".config" / "composite" / "config.yaml"


# -- which config file ---------------------------------------------------------------------------


def test_no_config_anywhere_gives_builtin_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.config_path is None
    assert settings.profile.name == DEFAULT_PROFILE == "local"
    assert settings.db_path == Path("traces.db")
    assert settings.modes_path == ()


def test_explicit_config_beats_env_local_and_user_files(tmp_path: Path, xdg_config: Path) -> None:
    explicit = write(tmp_path / "explicit.yaml", profile_config("p_explicit", "openai/explicit"))
    from_env = write(tmp_path / "env.yaml", profile_config("p_env", "openai/env"))
    write(Path("composite.yaml"), profile_config("p_local", "openai/local"))
    write(xdg_config, profile_config("p_user", "openai/user"))

    settings = load_settings(config=explicit, environ={"COMPOSITE_CONFIG": str(from_env)})
    assert settings.config_path == explicit
    assert settings.profile.name == "p_explicit"
    assert settings.profile.resolve("strong")["model"] == "openai/explicit"


def test_env_config_beats_local_and_user_files(tmp_path: Path, xdg_config: Path) -> None:
    from_env = write(tmp_path / "env.yaml", profile_config("p_env", "openai/env"))
    write(Path("composite.yaml"), profile_config("p_local", "openai/local"))
    write(xdg_config, profile_config("p_user", "openai/user"))

    settings = load_settings(environ={"COMPOSITE_CONFIG": str(from_env)})
    assert settings.config_path == from_env
    assert settings.profile.name == "p_env"


def test_local_composite_yaml_beats_user_file(xdg_config: Path) -> None:
    write(Path("composite.yaml"), profile_config("p_local", "openai/local"))
    write(xdg_config, profile_config("p_user", "openai/user"))

    settings = load_settings(environ={})
    assert settings.config_path == Path("composite.yaml")
    assert settings.profile.name == "p_local"


def test_user_config_dir_is_last(xdg_config: Path) -> None:
    write(xdg_config, profile_config("p_user", "openai/user"))
    settings = load_settings()
    assert settings.config_path == xdg_config
    assert settings.profile.name == "p_user"
    assert settings.profile.resolve("fast")["model"] == "openai/user"


def test_user_config_dir_follows_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "elsewhere"
    write(xdg / "composite" / "config.yaml", profile_config("p_xdg", "openai/xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert load_settings().profile.name == "p_xdg"


def test_user_config_dir_defaults_to_home_dot_config(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = isolated_home.parent / "home"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    write(home / ".config" / "composite" / "config.yaml", profile_config("p_home", "openai/home"))
    assert load_settings().profile.name == "p_home"


def test_xdg_config_home_is_read_from_the_given_environ(tmp_path: Path) -> None:
    """`environ=` stands for the whole environment, $XDG_CONFIG_HOME included."""
    xdg = tmp_path / "from-environ"
    path = write(xdg / "composite" / "config.yaml", profile_config("p_xdg", "openai/xdg"))
    settings = load_settings(environ={"XDG_CONFIG_HOME": str(xdg)})
    assert settings.config_path == path
    assert settings.profile.name == "p_xdg"


def test_explicit_config_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_settings(config=missing, environ={})
    assert str(missing) in str(info.value)


def test_env_config_that_does_not_exist_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"\$COMPOSITE_CONFIG") as info:
        load_settings(environ={"COMPOSITE_CONFIG": str(missing)})
    assert str(missing) in str(info.value)


def test_find_config_file_none_when_nothing_exists() -> None:
    assert find_config_file(None, {}) is None


def test_empty_config_file_is_fine() -> None:
    write(Path("composite.yaml"), "")
    settings = load_settings(environ={})
    assert settings.config_path == Path("composite.yaml")
    assert settings.profile.name == "local"
    assert read_config_file(Path("composite.yaml")) == {}


# -- which profile -------------------------------------------------------------------------------

PROFILES_CONFIG = """\
profile: from_config
profiles:
  from_config:
    "*": {model: openai/config}
  from_env:
    "*": {model: openai/env}
  from_flag:
    "*": {model: openai/flag}
"""


def test_profile_flag_beats_env_and_config() -> None:
    write(Path("composite.yaml"), PROFILES_CONFIG)
    settings = load_settings(profile="from_flag", environ={"COMPOSITE_PROFILE": "from_env"})
    assert settings.profile.name == "from_flag"
    assert settings.profile.resolve("strong")["model"] == "openai/flag"


def test_profile_env_beats_config() -> None:
    write(Path("composite.yaml"), PROFILES_CONFIG)
    settings = load_settings(environ={"COMPOSITE_PROFILE": "from_env"})
    assert settings.profile.name == "from_env"
    assert settings.profile.resolve("strong")["model"] == "openai/env"


def test_profile_from_config() -> None:
    write(Path("composite.yaml"), PROFILES_CONFIG)
    settings = load_settings(environ={})
    assert settings.profile.name == "from_config"


def test_profile_defaults_to_local_even_when_config_has_profiles() -> None:
    write(Path("composite.yaml"), 'profiles:\n  other:\n    "*": {model: openai/other}\n')
    settings = load_settings(environ={})
    assert settings.profile.name == "local"
    assert settings.profile.resolve("strong") == {"model": LOCAL_MODEL}


def test_builtin_profile_can_be_chosen_by_flag_over_config() -> None:
    write(Path("composite.yaml"), PROFILES_CONFIG)
    settings = load_settings(profile="local", environ={})
    assert settings.profile.name == "local"
    assert settings.profile.resolve("judge")["model"] == "local/smollm2"


def test_local_profile_maps_every_alias_to_smollm2() -> None:
    profile = load_settings(environ={}).profile
    assert dict(profile.aliases) == {"*": {"model": "local/smollm2"}}
    for alias in ("fast", "strong", "judge", "anything-at-all"):
        assert profile.has(alias)
        assert profile.resolve(alias) == {"model": "local/smollm2"}


def test_profile_named_gives_other_profiles_of_the_same_config() -> None:
    write(Path("composite.yaml"), PROFILES_CONFIG)
    settings = load_settings(environ={})
    assert settings.profile_named("from_env").resolve("x")["model"] == "openai/env"
    assert settings.profile_named("local").resolve("x")["model"] == LOCAL_MODEL
    with pytest.raises(UnknownProfileError):
        settings.profile_named("missing")


def test_alias_without_fallback_is_an_error() -> None:
    write(Path("composite.yaml"), "profile: p\nprofiles:\n  p:\n    strong: {model: openai/strong}\n")
    profile = load_settings(environ={}).profile
    assert profile.resolve("strong") == {"model": "openai/strong"}
    assert not profile.has("fast")
    with pytest.raises(UnknownAliasError, match="'fast'"):
        profile.resolve("fast")


def test_resolve_returns_a_copy() -> None:
    profile = load_settings(environ={}).profile
    params = profile.resolve("strong")
    params["model"] = "changed"
    assert profile.resolve("strong")["model"] == LOCAL_MODEL


# -- --model overrides ---------------------------------------------------------------------------


def test_model_override_of_one_alias() -> None:
    write(
        Path("composite.yaml"),
        'profile: p\nprofiles:\n  p:\n    "*": {model: openai/default}\n    strong: {model: openai/strong}\n',
    )
    profile = load_settings(models=["strong=openai/x"], environ={}).profile
    assert profile.resolve("strong") == {"model": "openai/x"}
    assert profile.resolve("fast") == {"model": "openai/default"}


def test_model_override_adds_an_alias_the_profile_lacks() -> None:
    profile = load_settings(models=["judge=anthropic/claude-x"], environ={}).profile
    assert profile.resolve("judge") == {"model": "anthropic/claude-x"}
    assert profile.resolve("strong") == {"model": LOCAL_MODEL}


def test_model_override_of_star_changes_the_fallback() -> None:
    profile = load_settings(models=["*=ollama/llama3"], environ={}).profile
    for alias in ("fast", "strong", "judge"):
        assert profile.resolve(alias) == {"model": "ollama/llama3"}


def test_several_model_overrides_and_spaces() -> None:
    profile = load_settings(models=[" fast = openai/a ", "strong=openai/b"], environ={}).profile
    assert profile.resolve("fast") == {"model": "openai/a"}
    assert profile.resolve("strong") == {"model": "openai/b"}


def test_model_override_does_not_change_the_builtin_profile() -> None:
    load_settings(models=["*=ollama/llama3"], environ={})
    assert BUILTIN_PROFILES["local"] == {"*": {"model": LOCAL_MODEL}}
    assert load_settings(environ={}).profile.resolve("strong") == {"model": LOCAL_MODEL}


def test_model_override_keeps_the_equals_in_the_model_name() -> None:
    assert parse_model_override("fast=hf/model=v2") == ("fast", {"model": "hf/model=v2"})


@pytest.mark.parametrize("text", ["strong", "=openai/x", "strong=", "", "  =  ", "strong:openai/x"])
def test_bad_model_override(text: str) -> None:
    with pytest.raises(ConfigError, match="ALIAS=MODEL") as info:
        load_settings(models=[text], environ={})
    assert repr(text) in str(info.value)


# -- db path -------------------------------------------------------------------------------------


def test_db_flag_beats_env_and_config(tmp_path: Path) -> None:
    write(tmp_path / "cfg" / "composite.yaml", "db: from-config.db\n")
    settings = load_settings(
        config=tmp_path / "cfg" / "composite.yaml",
        db="flag.db",
        environ={"COMPOSITE_DB": "env.db"},
    )
    assert settings.db_path == Path("flag.db")


def test_db_env_beats_config(tmp_path: Path) -> None:
    write(tmp_path / "cfg" / "composite.yaml", "db: from-config.db\n")
    settings = load_settings(config=tmp_path / "cfg" / "composite.yaml", environ={"COMPOSITE_DB": "env.db"})
    assert settings.db_path == Path("env.db")


def test_db_from_config_is_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cfg" / "composite.yaml", "db: data/traces.db\n")
    settings = load_settings(config=cfg, environ={})
    assert settings.db_path == tmp_path / "cfg" / "data" / "traces.db"


def test_db_from_config_relative_to_config_found_by_env(tmp_path: Path) -> None:
    cfg = write(tmp_path / "elsewhere" / "c.yaml", "db: t.db\n")
    settings = load_settings(environ={"COMPOSITE_CONFIG": str(cfg)})
    assert settings.db_path == tmp_path / "elsewhere" / "t.db"


def test_absolute_db_in_config_stays_absolute(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "x.db"
    cfg = write(tmp_path / "cfg" / "composite.yaml", f"db: {target}\n")
    assert load_settings(config=cfg, environ={}).db_path == target


def test_db_defaults_to_traces_db_in_cwd(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cfg" / "composite.yaml", "profile: local\n")
    settings = load_settings(config=cfg, environ={})
    assert settings.db_path == Path("traces.db")
    assert not settings.db_path.is_absolute()


# -- modes_path ----------------------------------------------------------------------------------


def test_modes_path_relative_to_the_config_dir(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cfg" / "composite.yaml", f"modes_path:\n  - my-modes\n  - {tmp_path / 'abs'}\n")
    settings = load_settings(config=cfg, environ={})
    assert settings.modes_path == (tmp_path / "cfg" / "my-modes", tmp_path / "abs")


def test_modes_path_may_be_one_string(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cfg" / "composite.yaml", "modes_path: mine\n")
    assert load_settings(config=cfg, environ={}).modes_path == (tmp_path / "cfg" / "mine",)


# -- errors name the file and the line -----------------------------------------------------------


def config_error(text: str, **kwargs: object) -> ConfigError:
    path = write(Path("composite.yaml"), text)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, **kwargs)  # type: ignore[arg-type]
    err = info.value
    assert err.path == str(path)
    return err


def test_bad_yaml_names_file_and_line() -> None:
    err = config_error('profile: dry\nprofiles:\n  dry:\n    "*": {model: openai/x}}\n    fast: x\n')
    assert err.line == 4
    assert str(err).startswith("composite.yaml:4: invalid YAML")


def test_bad_yaml_indentation_line() -> None:
    err = config_error("profile: dry\ndb: x.db\n  modes_path: y\n")
    assert err.line == 3
    assert str(err).startswith("composite.yaml:3: invalid YAML")


def test_unknown_top_level_key_names_file_and_line() -> None:
    err = config_error("profile: local\ndb: t.db\nprofilez: {}\n")
    assert err.line == 3
    assert "'profilez'" in str(err)
    assert str(err).startswith("composite.yaml:3: unknown key 'profilez'")


def test_profile_alias_without_model_names_file_and_line() -> None:
    err = config_error(
        'profile: p\nprofiles:\n  p:\n    "*": {model: openai/x}\n    strong: {temperature: 0.2}\n'
    )
    assert err.line == 5
    assert str(err).startswith("composite.yaml:5: profiles.p.strong.model:")
    assert "required" in str(err)


@pytest.mark.parametrize(
    ("field", "value", "wanted"),
    [
        ("temperature", ".inf", "a finite number of at least 0, not inf"),
        ("temperature", ".nan", "a finite number of at least 0, not nan"),
        ("temperature", "-1", "a finite number of at least 0, not -1"),
        ("top_p", "hot", "a finite number of at least 0, not 'hot'"),
        ("max_tokens", "0", "a whole number of at least 1, not 0"),
        ("max_tokens", "1.5", "a whole number of at least 1, not 1.5"),
        ("max_completion_tokens", "true", "a whole number of at least 1, not True"),
    ],
)
def test_profile_generation_parameter_out_of_range_names_file_line_and_field(
    field: str, value: str, wanted: str
) -> None:
    """What a mode file's call step refuses, a profile refuses too; before, a temperature of NaN
    reached the embedded model, which sampled with it without a word."""
    err = config_error(
        f'profiles:\n  p:\n    "*": {{model: openai/x}}\n    fast:\n      model: openai/y\n'
        f"      {field}: {value}\n"
    )
    assert err.line == 6
    assert str(err) == f"composite.yaml:6: profiles.p.fast.{field}: must be {wanted}"


def test_profile_generation_parameters_in_range_are_kept() -> None:
    write(
        Path("composite.yaml"),
        'profiles:\n  p:\n    "*": {model: openai/x, temperature: 0, top_p: 1, max_tokens: 1}\n',
    )
    params = load_settings(environ={}, profile="p").profile.resolve("fast")
    assert (params["temperature"], params["top_p"], params["max_tokens"]) == (0, 1, 1)


def test_profile_alias_with_empty_model() -> None:
    err = config_error('profiles:\n  p:\n    fast:\n      model: ""\n')
    assert err.line == 3
    assert "profiles.p.fast.model" in str(err)


def test_profile_alias_that_is_not_a_mapping() -> None:
    err = config_error("profiles:\n  p:\n    fast: openai/x\n")
    assert err.line == 3
    assert "profiles.p.fast" in str(err)


def test_profile_that_is_not_a_mapping() -> None:
    err = config_error("profiles:\n  p: openai/x\n")
    assert err.line == 2
    assert "profiles.p" in str(err)


def test_config_file_that_is_not_a_mapping() -> None:
    err = config_error("- profile\n- db\n")
    assert err.line == 1


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("db: t.db\nprofile: [a, b]\n", 2, "profile"),
        ("profile: local\ndb: 5\n", 2, "db"),
        ("profile: local\n\nmodes_path: {a: 1}\n", 3, "modes_path"),
    ],
)
def test_wrong_value_types_name_the_line(text: str, line: int, key: str) -> None:
    err = config_error(text)
    assert err.line == line
    assert str(err).startswith(f"composite.yaml:{line}: {key}:")


def test_unknown_profile_in_config_names_file_and_line() -> None:
    err = config_error('profiles:\n  dry:\n    "*": {model: openai/x}\nprofile: dyr\n')
    assert isinstance(err, UnknownProfileError)
    assert err.line == 4
    assert str(err).startswith("composite.yaml:4: ")
    assert "'dyr'" in str(err)
    assert "dry" in str(err) and "local" in str(err)


def test_unknown_profile_from_flag_lists_known_profiles() -> None:
    write(Path("composite.yaml"), 'profiles:\n  dry:\n    "*": {model: openai/x}\n')
    with pytest.raises(UnknownProfileError) as info:
        load_settings(profile="nope", environ={})
    message = str(info.value)
    assert "unknown profile 'nope'" in message
    assert "composite.yaml" in message
    assert "known profiles: dry, local" in message


def test_unknown_profile_from_env_without_config() -> None:
    with pytest.raises(UnknownProfileError, match=r"unknown profile 'ghost'.*known profiles: dry, local$"):
        load_settings(environ={"COMPOSITE_PROFILE": "ghost"})


# -- the built-in dry profile --------------------------------------------------------------------


def test_the_dry_profile_is_built_in() -> None:
    settings = load_settings(profile="dry", environ={})
    assert settings.config_path is None
    for alias in ("fast", "strong", "sub", "anything"):
        assert settings.profile.resolve(alias) == {"model": DRY_MODEL, "answer": DRY_ANSWER}
    assert settings.profile.resolve("judge")["answer"].startswith("NO ISSUES")
    assert load_settings(environ={"COMPOSITE_PROFILE": "dry"}).profile.name == "dry"


def test_a_users_own_dry_profile_wins() -> None:
    write(
        Path("composite.yaml"), 'profiles:\n  dry:\n    "*": {model: openai/gpt-4o-mini, mock_response: hi}\n'
    )
    profile = load_settings(profile="dry", environ={}).profile
    assert profile.resolve("judge") == {"model": "openai/gpt-4o-mini", "mock_response": "hi"}
    assert BUILTIN_PROFILES["dry"]["*"] == {"model": DRY_MODEL, "answer": DRY_ANSWER}


def _shipped_modes() -> list[str]:
    from composite_cli.engine.library import ModeLibrary

    return ModeLibrary(()).names()


@pytest.mark.parametrize("name", _shipped_modes())
def test_every_shipped_mode_finishes_on_dry_for_free(name: str) -> None:
    """Through LiteLLM and the `dry/...` provider (no fake model): ok, cost 0 (known), same answer twice."""
    import asyncio

    from composite_cli.engine.executor import run_mode
    from composite_cli.engine.library import ModeLibrary
    from composite_cli.engine.runtime import RunRequest

    spec = ModeLibrary(()).load(name)
    profile = load_settings(profile="dry", environ={}).profile
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    async def both() -> list:
        return [await run_mode(spec, RunRequest(messages=list(messages)), profile=profile) for _ in range(2)]

    first, second = asyncio.run(both())
    assert first.status == "ok" and first.finish_reason == "stop"
    assert first.text == second.text == DRY_ANSWER
    assert first.cost_usd == 0.0 and first.calls == second.calls
    assert first.prompt_tokens > 0 and first.completion_tokens > 0


def test_the_dry_provider_streams_and_can_still_inject_faults() -> None:
    import litellm

    from composite_cli.litellm_loader import get_litellm

    llm = get_litellm()
    messages = [{"role": "user", "content": "hi"}]
    chunks = list(llm.completion(model=DRY_MODEL, messages=messages, answer="one two three", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    with pytest.raises(litellm.RateLimitError):
        llm.completion(model=DRY_MODEL, messages=messages, fault_rate=1.0)


def test_config_and_mode_files_share_one_set_of_field_checks() -> None:
    """yamlfile.FieldReader checks the config file (first problem) and mode files (every
    problem); a key given with no value is still wrong in a config (`db:`), not absent."""
    from composite_cli.engine.spec import ParseContext
    from composite_cli.yamlfile import FieldReader

    assert issubclass(ParseContext, FieldReader)
    err = config_error("profile: local\ndb:\n")
    assert str(err) == "composite.yaml:2: db: must be a file path"
    err = config_error("profile:\n")
    assert str(err) == "composite.yaml:1: profile: must be a profile name"
    err = config_error("no_content: 3\n")
    assert str(err) == "composite.yaml:1: no_content: must be true or false"


def test_resolved_parameters_are_fresh_copies_down_to_nested_values():
    """A caller (or LiteLLM) changing what `resolve`/`candidates` returned never changes the profile."""
    from composite_cli.config import Profile

    profile = Profile(
        "p", {"a": [{"model": "openai/x", "extra_headers": {"h": "1"}, "stop": ["s"]}, {"model": "b"}]}
    )
    first = profile.resolve("a")
    first["extra_headers"]["h"] = "changed"
    first["stop"].append("t")
    first["model"] = "other"
    profile.candidates("a")[1]["model"] = "c"
    assert profile.candidates("a") == [
        {"model": "openai/x", "extra_headers": {"h": "1"}, "stop": ["s"]},
        {"model": "b"},
    ]
