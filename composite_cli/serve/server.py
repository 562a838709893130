"""Start the server: turn the options into a proxy config and an environment, then run uvicorn.

One process (`--workers 1`) runs the app in-process; with `--workers N` uvicorn starts N worker
processes from the app factory (`app.create_app`), each registering the provider itself and
writing its traces to the one WAL-mode database (SQLite serializes the writers). Each worker dies
with this process, even when it is killed with SIGKILL (see lifeline).

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and lets in-flight requests finish for
up to `grace` seconds; then the app's shutdown closes the trace store (committing queued writes)
and the process exits 0.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composite_cli.config import Settings
from composite_cli.engine.library import ModeLibrary
from composite_cli.serve import config as proxy_config
from composite_cli.serve.app import OPTIONS_ENV, AppOptions
from composite_cli.serve.auth import ENV_VAR, MasterKey, check_bind, resolve_master_key
from composite_cli.serve.config import ServedMode
from composite_cli.serve.errors import ServeError
from composite_cli.serve.lifeline import SUPERVISOR_ENV

APP_FACTORY = "composite_cli.serve.app:create_app"


@dataclass
class ServePlan:
    """Everything decided before the server starts (what the CLI prints, what workers inherit)."""

    host: str
    port: int
    workers: int
    grace: float
    log_level: str
    key: MasterKey
    served: list[ServedMode]
    config: dict[str, Any]
    settings: Settings
    environ: dict[str, str] = field(default_factory=dict)
    python_path: Path | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def plan(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 4000,
    workers: int = 1,
    grace: float = 30.0,
    modes: list[str] | None = None,
    master_key: str | None = None,
    litellm_config: Path | None = None,
    log_level: str = "info",
    environ: dict[str, str] | None = None,
) -> ServePlan:
    """Check the options and decide the config, the key and the workers' environment."""
    env = dict(os.environ if environ is None else environ)
    if workers < 1:
        raise ServeError("--workers must be at least 1")
    if grace < 0:
        raise ServeError("--grace must be 0 or more seconds")
    user = proxy_config.read_litellm_config(litellm_config) if litellm_config else {}
    key = resolve_master_key(master_key, config_key=proxy_config.config_master_key(user, env), environ=env)
    check_bind(host, key)
    modes_served = proxy_config.served_modes(ModeLibrary.from_settings(settings), modes or [])
    # the names that reach each mode once the user's config is merged (the edge checks their bodies)
    served = proxy_config.claim_names(modes_served, user)
    options = AppOptions(
        served=[(m.name, m.names) for m in served],
        virtual_keys=proxy_config.uses_database(user, env),
        allow_code=settings.allow_code,
    )
    worker_env = {
        ENV_VAR: key.value,
        OPTIONS_ENV: options.to_env(),
        "COMPOSITE_PROFILE": settings.profile.name,
        "COMPOSITE_DB": str(settings.db_path.resolve()),
        "LITELLM_LOCAL_MODEL_COST_MAP": env.get("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        "GRACEFUL_SHUTDOWN_TIMEOUT": str(grace),
    }
    if settings.config_path is not None:
        worker_env["COMPOSITE_CONFIG"] = str(settings.config_path.resolve())
    return ServePlan(
        host=host,
        port=port,
        workers=workers,
        grace=grace,
        log_level=log_level,
        key=key,
        served=served,
        config=proxy_config.proxy_config(modes_served, user),
        settings=settings,
        environ=worker_env,
        # custom handlers named in the user's config may live next to it (LiteLLM looks there)
        python_path=litellm_config.resolve().parent if litellm_config else None,
    )


def _prepare_database(settings: Settings) -> None:
    """Create and migrate the trace database once, before several workers race to do it."""
    from composite_cli.traces.store import TraceStore

    store = TraceStore(settings.db_path)
    store.open()
    store.close()


def run(serve_plan: ServePlan) -> None:
    """Run the server until SIGTERM/SIGINT; returns after a clean shutdown."""
    workdir = Path(tempfile.mkdtemp(prefix="composite-serve-"))
    try:
        config_path = proxy_config.write_config(serve_plan.config, workdir / "litellm-config.yaml")
        _prepare_database(serve_plan.settings)
        os.environ.update(serve_plan.environ)
        os.environ["CONFIG_FILE_PATH"] = str(config_path)
        if serve_plan.workers > 1:
            os.environ[SUPERVISOR_ENV] = str(os.getpid())  # workers die with this process
        if serve_plan.python_path is not None:
            parts = [
                str(serve_plan.python_path),
                *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
            ]
            os.environ["PYTHONPATH"] = os.pathsep.join(parts)
            sys.path.insert(0, str(serve_plan.python_path))
        # After a clean shutdown uvicorn raises the signal that started it again, so SIGTERM
        # would end the process with 143. The shutdown was graceful: let it return and exit 0.
        previous = signal.signal(signal.SIGTERM, _after_shutdown)
        try:
            _run_uvicorn(serve_plan)
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _after_shutdown(signum: int, frame: Any) -> None:
    """SIGTERM once uvicorn has finished: nothing left to do."""


def _run_uvicorn(serve_plan: ServePlan) -> None:
    import uvicorn

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=serve_plan.host,
        port=serve_plan.port,
        workers=serve_plan.workers if serve_plan.workers > 1 else None,
        timeout_graceful_shutdown=math.ceil(serve_plan.grace),  # 0: cancel at once
        log_level=serve_plan.log_level,
        lifespan="on",
    )
