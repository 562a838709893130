"""The app factory each uvicorn worker calls: the LiteLLM proxy app behind composite's edge.

The serving process passes everything through the environment (workers are fresh processes):
`CONFIG_FILE_PATH` (the generated proxy config), `LITELLM_MASTER_KEY`, composite's own
`COMPOSITE_CONFIG` / `COMPOSITE_PROFILE` / `COMPOSITE_DB`, and `COMPOSITE_SERVE_OPTIONS` below.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from composite_cli.serve.auth import ENV_VAR
from composite_cli.serve.edge import CompositeEdge
from composite_cli.serve.errors import ServeError
from composite_cli.serve.lifeline import die_with_supervisor

OPTIONS_ENV = "COMPOSITE_SERVE_OPTIONS"


@dataclass(frozen=True)
class AppOptions:
    """What every worker needs to know besides the proxy config."""

    served: Sequence[tuple[str, Sequence[str]]]  # (mode, model names), in serving order
    virtual_keys: bool = False
    # The `--allow-code` prefixes (a worker reads the config file's `allow_code` itself).
    allow_code: Sequence[str] = ()

    def to_env(self) -> str:
        return json.dumps(
            {
                "served": [[m, list(n)] for m, n in self.served],
                "virtual_keys": self.virtual_keys,
                "allow_code": list(self.allow_code),
            }
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AppOptions:
        raw = environ.get(OPTIONS_ENV)
        if not raw:
            raise ServeError(f"${OPTIONS_ENV} is not set: start the server with `composite serve`")
        data = json.loads(raw)
        return cls(
            [(str(m), [str(x) for x in names]) for m, names in data["served"]],
            bool(data["virtual_keys"]),
            [str(p) for p in data.get("allow_code", [])],
        )


def create_app() -> CompositeEdge:
    """Build this worker's app. Registers the `composite` provider before the proxy loads its
    config (which registers it again, through `custom_provider_map`)."""
    die_with_supervisor(os.environ)  # first: a worker must not outlive a killed supervisor
    options = AppOptions.from_env(os.environ)
    master_key = os.environ.get(ENV_VAR)
    if not master_key:
        raise ServeError(f"${ENV_VAR} is not set: start the server with `composite serve`")

    from litellm.proxy.proxy_server import app as proxy_app

    from composite_cli.litellm_loader import add_custom_provider, get_litellm
    from composite_cli.serve.config import PROVIDER
    from composite_cli.serve.handler import handler
    from composite_cli.serve.introspection import introspection_app
    from composite_cli.serve.logs import quiet_client_errors
    from composite_cli.serve.router_dispatch import install as route_internal_calls

    if options.allow_code:
        from composite_cli.config import load_settings

        handler.use_settings(load_settings().allowing_code(options.allow_code))
    add_custom_provider(get_litellm(), PROVIDER, handler)
    route_internal_calls()  # a mode's calls to one of the proxy's model groups go through its router
    quiet_client_errors()  # a client's mistake is one line from the edge, not LiteLLM's traceback
    runner = handler.runner
    return CompositeEdge(
        proxy_app,
        master_key=master_key,
        introspection=introspection_app(runner, options.served),
        virtual_keys=options.virtual_keys,
        on_shutdown=runner.close,
        mode_models=[name for _, names in options.served for name in names],
    )
