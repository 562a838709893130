"""`python -m composite_cli.worker --dir DIR --idle SECONDS`: the detached worker process.

Started by the first command that wants it (see `client.start_worker`); not meant to be run by hand
(`composite worker status|stop` manage it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from composite_cli.worker.identity import Identity
from composite_cli.worker.paths import WorkerPaths, check_private_dir
from composite_cli.worker.server import WorkerServer

log = logging.getLogger("composite.worker")


def _already_served(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def warm_up() -> None:
    """Import what every run needs (LiteLLM above all) before accepting the first client."""
    from composite_cli.litellm_loader import get_litellm

    get_litellm()
    import composite_cli.engine.executor
    import composite_cli.runner  # noqa: F401


async def _serve(server: WorkerServer) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, server.stop)
    await server.serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m composite_cli.worker")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--idle", type=float, required=True)
    args = parser.parse_args(argv)
    paths = WorkerPaths(args.dir)
    check_private_dir(paths.dir)
    # Libraries log at WARNING as they would in-process; the worker's own lines at INFO.
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(message)s"
    )
    logging.getLogger("composite.worker").setLevel(logging.INFO)
    # Before LiteLLM loads: its import may add variables from a .env file (as it would in-process).
    identity = Identity.current()
    warm_up()
    if _already_served(paths.socket):
        log.info("another worker already serves %s: exiting", paths.socket)
        return 0
    server = WorkerServer(paths.socket, identity, idle_timeout=args.idle)
    log.info("serving %s (idle timeout %.0fs)", paths.socket, args.idle)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
