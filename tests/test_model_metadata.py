"""What LiteLLM is told about `composite/<mode>` (issue 13, item 7): function calling and streaming
supported, no price per token (never a made-up 0), and the input window of the model that writes
the final answer. Checks that depend on LiteLLM's process-wide model map run in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from composite_cli.config import Profile, Settings
from composite_cli.engine.library import ModeLibrary
from composite_cli.model_limits import context_window
from composite_cli.model_metadata import final_alias, register_modes, unpriced_models

MINI = {"model": "openai/gpt-4o-mini", "mock_response": "Paris."}
BIG = {"model": "openai/gpt-4.1", "mock_response": "Paris."}


def _settings(tmp_path: Path, aliases: dict[str, Any]) -> Settings:
    return Settings(profile=Profile("p", aliases), db_path=tmp_path / "t.db")


@pytest.fixture(autouse=True)
def provider(tmp_path: Path) -> None:
    """The `composite` provider is registered (LiteLLM resolves `composite/...` through it)."""
    import composite_cli

    composite_cli.register(settings=_settings(tmp_path, {"*": MINI}))


def test_final_alias_is_the_model_that_writes_the_answer():
    library = ModeLibrary()
    assert final_alias(library.load("moa-v1")) == "strong"
    assert final_alias(library.load("direct")) == "strong"


def test_modes_are_registered_as_tool_using_streaming_chat_models(tmp_path: Path):
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    entries = register_modes(_settings(tmp_path, {"*": MINI, "strong": BIG}))
    assert "composite/moa-v1" in entries
    assert litellm.supports_function_calling("composite/moa-v1") is True
    from litellm.utils import supports_native_streaming, supports_tool_choice

    assert supports_tool_choice("composite/moa-v1") is True
    assert supports_native_streaming("composite/moa-v1", None) is True
    info = litellm.get_model_info("composite/moa-v1")
    # the window of the final step's model (gpt-4.1), not of the proposers' (gpt-4o-mini)
    assert info["max_input_tokens"] == context_window(BIG) != context_window(MINI)
    assert info["max_input_tokens"] == 1_047_576  # the figure the README quotes
    assert info["mode"] == "chat"


def test_no_price_per_token_is_registered(tmp_path: Path):
    """LiteLLM marks an unpriced model by leaving the price fields out (its get_model_info then says
    0, its documented default; the raw entry and the unset-costs lookup say unknown)."""
    from litellm.utils import get_model_info_helper

    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    register_modes(_settings(tmp_path, {"*": MINI}))
    entry = litellm.model_cost["composite/direct"]
    assert "input_cost_per_token" not in entry and "output_cost_per_token" not in entry
    raw = get_model_info_helper("composite/direct", preserve_unset_costs=True)
    assert raw["input_cost_per_token"] is None and raw["output_cost_per_token"] is None


def test_a_priced_response_states_its_summed_cost(tmp_path: Path, fake_model: Any):
    import composite_cli
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    composite_cli.register(settings=_settings(tmp_path, {"*": {"model": "openai/gpt-4o-mini"}}))
    register_modes(_settings(tmp_path, {"*": {"model": "openai/gpt-4o-mini"}}))
    response = litellm.completion(model="composite/moa-v1", messages=[{"role": "user", "content": "Hi"}])
    stated = response._hidden_params["composite"]["cost_usd"]
    assert stated is not None and stated > 0
    assert litellm.completion_cost(completion_response=response) == pytest.approx(stated)


def test_a_mode_that_may_call_an_unpriced_model_is_not_registered(tmp_path: Path):
    library = ModeLibrary()
    unpriced = {"model": "openai/my-own-vllm-model"}
    settings = _settings(tmp_path, {"*": MINI, "fast": unpriced})
    assert unpriced_models(library.load("moa-v1"), settings.profile) == ["openai/my-own-vllm-model"]
    assert unpriced_models(library.load("direct"), settings.profile) == []
    entries = register_modes(settings)
    assert "composite/moa-v1" not in entries and "composite/direct" in entries


def test_litellm_prices_a_registered_entry_without_prices_at_zero():
    """Why a mode that may call an unpriced model stays unregistered: LiteLLM reads capabilities and
    prices from the same entry, and costs a mapped entry without price fields at 0.0. If this fails,
    LiteLLM changed: every mode can then be registered (see the module doc of model_metadata)."""
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    key = "composite/-probe-of-an-unpriced-entry"
    litellm.register_model(
        {key: {"litellm_provider": "composite", "mode": "chat", "supports_function_calling": True}}
    )
    assert litellm.supports_function_calling(key) is True
    usage = litellm.Usage(prompt_tokens=40, completion_tokens=80, total_tokens=120)
    response = litellm.ModelResponse(model=key, usage=usage)
    assert litellm.completion_cost(completion_response=response) == 0.0


# -- in a fresh process: what `composite_cli.register()` (and a plain proxy) leaves in LiteLLM --------

SCRIPT = """
import json, composite_cli, litellm
composite_cli.register()
out = {"tools": litellm.supports_function_calling("composite/moa-v1")}
r = litellm.completion(model="composite/moa-v1", messages=[{"role": "user", "content": "Hi"}])
try:
    out["cost"] = litellm.completion_cost(completion_response=r)
except Exception as e:
    out["cost_error"] = type(e).__name__
print(json.dumps(out))
"""


def _fresh(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_")}
    full.update(COMPOSITE_DB=str(tmp_path / "t.db"), COMPOSITE_NO_WORKER="1", **env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=full, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_register_describes_the_modes_of_the_environments_profile(tmp_path: Path):
    assert _fresh(tmp_path, {"COMPOSITE_PROFILE": "dry"}) == {"tools": True, "cost": 0.0}


def test_an_unpriced_profile_never_gets_a_made_up_zero_cost(tmp_path: Path):
    config = tmp_path / "composite.yaml"
    unpriced = {"model": "openai/my-own-vllm-model", "mock_response": "Paris."}
    config.write_text(yaml.safe_dump({"profile": "mine", "profiles": {"mine": {"*": unpriced}}}))
    out = _fresh(tmp_path, {"COMPOSITE_CONFIG": str(config)})
    assert "cost" not in out and out["cost_error"] == "ModelNotMappedError"


def test_an_unpriced_run_names_the_models_without_a_price(tmp_path: Path):
    """LiteLLM's own error names `composite/moa-v1` (it raises from the response's model); the
    response's composite block names the internal model that has no price, so the user knows
    what to add to the price map."""
    import composite_cli
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    unpriced = {"model": "openai/my-own-vllm-model", "mock_response": "Paris."}
    composite_cli.register(settings=_settings(tmp_path, {"*": MINI, "fast": unpriced}))
    response = litellm.completion(model="composite/moa-v1", messages=[{"role": "user", "content": "Hi"}])
    block = response._hidden_params["composite"]
    assert block["cost_usd"] is None and block["unpriced_models"] == ["openai/my-own-vllm-model"]
    priced = litellm.completion(model="composite/direct", messages=[{"role": "user", "content": "Hi"}])
    assert priced._hidden_params["composite"]["unpriced_models"] == []
    two = litellm.completion(model="composite/moa-v1", messages=[{"role": "user", "content": "Hi"}], n=2)
    assert two._hidden_params["composite"]["unpriced_models"] == ["openai/my-own-vllm-model"]
