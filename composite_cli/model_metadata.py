"""What LiteLLM is told about the `composite/<mode>` models (`litellm.model_cost` entries).

Frameworks ask LiteLLM before they call a model: `litellm.supports_function_calling(...)` decides
whether they send tools, `get_model_info(...)["max_input_tokens"]` how much history they keep. So
each mode is registered as what it is: a chat model that takes the client's tools and streams, whose
input window is the one of the model that writes the final answer (where LiteLLM knows it).

Prices: a mode has no price per token (its cost is the sum of its internal calls, stated on each
response as `usage.cost`), so the entries carry no `input_cost_per_token`/`output_cost_per_token`:
LiteLLM's way of saying "not priced". LiteLLM 1.110's `completion_cost` prices such an entry at 0
when a response states no cost, though; so a mode is registered only when every model it may call
under the profile has a known price (its responses then always state their cost). A mode that may
call an unpriced model stays unregistered, and `completion_cost` keeps raising for its responses
rather than reporting a made-up 0.

There is no way, in LiteLLM 1.110, to have both for such a mode: `supports_function_calling` and
`completion_cost` look the model up in the same `model_cost` entry (`get_model_info_helper`), and a
mapped entry with no per-token, tiered or per-second price costs 0 (the last branch of
`cost_calculator.cost_per_token`); a `None` price is stored as 0, a NaN one still costs 0, and a
`CustomLLM` has no cost hook. The capability fallback for unmapped models (`get_provider_info`)
only knows LiteLLM's built-in providers. tests/test_model_metadata.py pins this behaviour.
"""

from __future__ import annotations

from typing import Any

from composite_cli.config import Profile, Settings
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.spec import ModeSpec
from composite_cli.errors import CompositeError
from composite_cli.litellm_loader import get_litellm
from composite_cli.model_limits import context_window

PROVIDER = "composite"


def final_alias(spec: ModeSpec) -> str | None:
    """The alias of the model that writes the mode's answer: the last one its last step uses."""
    if not spec.steps:
        return None
    last: str | None = None
    stack = [spec.steps[-1]]
    while stack:
        step = stack.pop(0)
        for alias in step.aliases():
            last = alias
        for children in step.children():
            stack.extend(children)
    return last


def model_prices_known(params: dict[str, Any]) -> bool:
    """Whether LiteLLM has a price (0 included) for the model in `params`."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return False
    get_litellm()
    from litellm.utils import get_model_info_helper

    try:
        info = get_model_info_helper(model, preserve_unset_costs=True)
    except Exception:  # noqa: BLE001 - LiteLLM raises several types for "not mapped"
        return False
    return info.get("input_cost_per_token") is not None and info.get("output_cost_per_token") is not None


def unpriced_models(spec: ModeSpec, profile: Profile) -> list[str]:
    """The models (fallbacks included) the mode may call under `profile` that LiteLLM has no price for."""
    out: list[str] = []
    for alias in spec.aliases():
        try:
            candidates = profile.candidates(alias)
        except CompositeError:
            out.append(f"<no model for {alias!r}>")
            continue
        for params in candidates:
            name = str(params.get("model"))
            if not model_prices_known(params) and name not in out:
                out.append(name)
    return out


def mode_model_info(spec: ModeSpec, profile: Profile) -> dict[str, Any]:
    """The `litellm.model_cost` entry of `composite/<mode>` (no price fields: see the module doc).
    A mode whose models never see the client's tools (vote-v1, bon-v1: ModeSpec.takes_client_tools)
    says `supports_function_calling: False`, so a framework that asks LiteLLM first sends none."""
    tools = spec.takes_client_tools()
    info: dict[str, Any] = {
        "litellm_provider": PROVIDER,
        "mode": "chat",
        "supports_function_calling": tools,
        "supports_tool_choice": tools,
        "supports_native_streaming": True,
        "supports_system_messages": True,
    }
    alias = final_alias(spec)
    if alias is not None:
        try:
            params = profile.resolve(alias)
        except CompositeError:
            return info
        window = context_window(params)
        if window is not None:
            info["max_input_tokens"] = window
            info["max_tokens"] = window
    return info


def register_modes(settings: Settings, litellm: Any | None = None) -> dict[str, dict[str, Any]]:
    """Register every valid mode whose prices are all known; returns the entries registered."""
    litellm = litellm or get_litellm()
    library = ModeLibrary.from_settings(settings)
    entries: dict[str, dict[str, Any]] = {}
    for name in library.names():
        try:
            spec = library.load(name)
        except CompositeError:
            continue  # an invalid mode file: `composite modes validate` and a run say why
        if unpriced_models(spec, settings.profile):
            continue
        entries[f"{PROVIDER}/{name}"] = mode_model_info(spec, settings.profile)
    if entries:
        litellm.register_model(entries)
    return entries


def register_default_modes(litellm: Any) -> None:
    """At LiteLLM's first import: the modes under the settings from the environment (what a plain
    LiteLLM proxy and `composite_cli.register()` use). A broken config registers nothing here; the
    first run reports it as one line."""
    from composite_cli.config import load_settings

    try:
        settings = load_settings()
    except CompositeError:
        return
    register_modes(settings, litellm)
