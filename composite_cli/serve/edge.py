"""The ASGI middleware in front of the LiteLLM proxy app.

- Auth: a request without a key, or with a key that is not the master key, gets 401 with an
  OpenAI-style error body (the proxy alone answers 400 "No connected db." or 500 there). When the
  proxy has a database (virtual keys), other keys go on to the proxy, and an auth failure it
  reports in any shape becomes the same 401.
- `x-composite-run-id`: the run's id as a plain response header, streamed responses included;
  `x-composite-status` (ok or partial) on responses that are not streamed (a stream's headers go
  out before the run ends: its last chunk carries the `composite` block, status included).
- `/composite/...`: the introspection API, behind the same key.
- Chat-completion bodies the proxy mishandles (see body_check) get a clear 400 first.
- Lifespan: once the proxy has shut down, `on_shutdown` closes the trace store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from composite_cli.serve.auth import request_key, same_key
from composite_cli.serve.body_check import is_chat_completion, problem
from composite_cli.serve.handler import RunSlot, current_slot

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RUN_ID_HEADER = b"x-composite-run-id"
STATUS_HEADER = b"x-composite-status"
# The proxy passes a provider's headers on with this prefix; composite's get a plain copy.
_PROVIDER_PREFIX = b"llm_provider-"
PREFIX = "/composite"
# Probes a load balancer calls without a key (the proxy leaves them open too).
PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness", "/health/readiness"})
_AUTH_ERROR_TYPES = frozenset({"auth_error", "no_db_connection", "authentication_error"})


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    """An OpenAI-style error body."""
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


async def send_error(
    send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def unauthorized(send: Send, message: str) -> None:
    await send_error(
        send,
        401,
        error_body(message, "invalid_request_error", "invalid_api_key"),
        ((b"www-authenticate", b'Bearer realm="composite"'),),
    )


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (a chat request is one JSON document), read once."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _until_done_or_gone(app: ASGIApp, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    """Run the proxy on a body already read, and stop it when the client goes away.

    The proxy waits for a mode's first tokens before it answers, without listening to the
    client, so a client that leaves early would otherwise let the run go on (and bill) to the
    end. Here the client's messages are watched the whole time: a disconnect cancels the request,
    which cancels the run and its in-flight calls (recorded as cancelled)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": body, "more_body": False})
    handling = asyncio.ensure_future(app(scope, inbox.get, send))

    async def watch() -> None:
        while True:
            message = await receive()
            inbox.put_nowait(message)
            if message["type"] == "http.disconnect":
                handling.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        await handling
    except asyncio.CancelledError:
        if not handling.cancelled():
            raise  # we are being cancelled ourselves: pass it on
    finally:
        watcher.cancel()


def _is_auth_failure(status: int, body: bytes) -> bool:
    if status == 401:
        return True
    if status not in (400, 403, 500):
        return False
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("type") in _AUTH_ERROR_TYPES


def _composite_headers(headers: Any, slot: RunSlot) -> list[tuple[bytes, bytes]]:
    """The response headers plus composite's own under their plain names (`x-composite-run-id`,
    `x-composite-status`); the run id from the slot when the provider's has not arrived (streams)."""
    out = list(headers)
    present = {k.lower() for k, _ in out}
    for key, value in list(out):
        name = key.lower()
        if name.startswith(_PROVIDER_PREFIX + b"x-composite-"):
            plain = name[len(_PROVIDER_PREFIX) :]
            if plain not in present:
                out.append((plain, value))
                present.add(plain)
    if RUN_ID_HEADER not in present and slot.run_ids:
        out.append((RUN_ID_HEADER, slot.run_ids[-1].encode()))
    return out


class CompositeEdge:
    """Wraps the proxy app: auth at the edge, run-id header, introspection API, trace-store close."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        master_key: str,
        introspection: ASGIApp,
        virtual_keys: bool = False,
        on_shutdown: Callable[[], None] | None = None,
    ):
        self.app = app
        self.master_key = master_key
        self.introspection = introspection
        self.virtual_keys = virtual_keys
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if kind == "http" and (scope.get("method") == "OPTIONS" or path in PUBLIC_PATHS):
            await self.app(scope, receive, send)  # CORS preflight and health probes carry no key
            return
        key = request_key(scope.get("headers") or [])
        is_master = same_key(key, self.master_key)
        if kind == "websocket":
            if not is_master and not self.virtual_keys:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if path == PREFIX or path.startswith(PREFIX + "/"):
            if not is_master:
                await unauthorized(send, self._auth_message(key))
                return
            await self.introspection(scope, receive, send)
            return
        if not is_master and (key is None or not self.virtual_keys):
            await unauthorized(send, self._auth_message(key))
            return
        slot = RunSlot()
        token = current_slot.set(slot)
        try:
            proxied = self._proxy_send(send, slot, check_auth=not is_master)
            if is_chat_completion(scope.get("method"), path):
                body = await _read_body(receive)
                wrong = problem(body)
                if wrong is not None:
                    await send_error(send, 400, error_body(wrong, "invalid_request_error", "invalid_request"))
                    return
                await _until_done_or_gone(self.app, scope, body, receive, proxied)
            else:
                await self.app(scope, receive, proxied)
        finally:
            current_slot.reset(token)

    @staticmethod
    def _auth_message(key: str | None) -> str:
        if key is None:
            return (
                "No API key provided. Send the proxy's master key as 'Authorization: Bearer <key>' "
                "(the OpenAI SDK's api_key)."
            )
        return "Incorrect API key provided."  # never echo the key back

    def _proxy_send(self, send: Send, slot: RunSlot, *, check_auth: bool) -> Send:
        held: list[Message] = []

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _composite_headers(message.get("headers") or [], slot)}
                if check_auth and message.get("status", 200) >= 400:
                    held.append(message)  # hold an error until its body shows whether it is about auth
                    return
            elif held and message["type"] == "http.response.body":
                held.append(message)
                if message.get("more_body"):
                    return
                start, *parts = held
                held.clear()
                body = b"".join(p.get("body", b"") for p in parts)
                if _is_auth_failure(start.get("status", 500), body):
                    await unauthorized(send, "Incorrect API key provided.")
                    return
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        return wrapped

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if (
                message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed")
                and self.on_shutdown
            ):
                self.on_shutdown()  # the proxy has drained: commit the traces, stop the writer
            await send(message)

        return wrapped
