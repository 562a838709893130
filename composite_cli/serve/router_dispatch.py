"""Internal calls through the proxy's router: under `composite serve`, a mode's model call whose
model is a model group (or a `model_group_alias`) of the proxy's `llm_router` is sent with
`llm_router.acompletion`, so the user's LiteLLM config governs it like a client's request: its
deployments and load balancing, `rpm`/`tpm` limits (shared through Redis when the router has one),
cooldowns of failing deployments and router fallbacks. Any other model goes to
`litellm.acompletion` as everywhere else.

A profile alias names a router group by its `model_name`: `fast: {model: my-group}`. The alias's
other parameters are sent with the call and win over the deployment's (as a client's do).

Installed by the app factory with `composite_cli.calls.use_dispatch`; the router is read at each
call, because the proxy builds it when it loads its config (after the app exists) and may rebuild it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from composite_cli.litellm_loader import get_litellm

PROXY_MODULE = "litellm.proxy.proxy_server"


def proxy_router() -> Any:
    """The running proxy's router (`litellm.proxy.proxy_server.llm_router`), or None."""
    module = sys.modules.get(PROXY_MODULE)  # imported by the app factory; never imported here
    return getattr(module, "llm_router", None) if module is not None else None


class RouterDispatch:
    """What `calls` sends a model call with under `composite serve` (see the module docstring)."""

    def __init__(self, router: Callable[[], Any] = proxy_router) -> None:
        self._router = router
        self._seen: tuple[int, int] | None = None  # (router id, registry version) of _groups
        self._groups: frozenset[str] = frozenset()

    def routes(self, router: Any, model: Any) -> bool:
        """Whether `model` is one of `router`'s model groups or group aliases."""
        if not isinstance(model, str):
            return False
        registry = router.registry()
        seen = (id(router), registry.version)
        if seen != self._seen:  # the deployments changed (or the router did): read the names again
            self._groups = frozenset(registry.names(kind="group_set"))
            self._seen = seen
        return model in self._groups or model in (registry.aliases() or {})

    async def __call__(self, **kwargs: Any) -> Any:
        router = self._router()
        if router is not None and self.routes(router, kwargs.get("model")):
            return await router.acompletion(**kwargs)
        return await get_litellm().acompletion(**kwargs)


def install() -> RouterDispatch:
    """Send this process's internal calls through the proxy's router where it has the model."""
    from composite_cli.calls import use_dispatch

    dispatch = RouterDispatch()
    use_dispatch(dispatch)
    return dispatch
