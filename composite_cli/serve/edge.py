"""The ASGI middleware in front of the LiteLLM proxy app.

- Auth: a request without a key, or with a key that is not the master key, gets 401 with an
  OpenAI-style error body (the proxy alone answers 400 "No connected db." or 500 there). When the
  proxy has a database (virtual keys), other keys go on to the proxy, and an auth failure it
  reports in any shape becomes the same 401.
- `x-composite-run-id`: the run's id as a plain response header, streamed responses included;
  `x-composite-status` (ok or partial) on responses that are not streamed (a stream's headers go
  out before the run ends: its last chunk carries the `composite` block, status included).
- `/composite/...`: the introspection API, behind the same key.
- Bodies: read whole, at most body_check.MAX_BODY_BYTES (413 over it); every JSON body checked for
  depth and non-finite numbers, the fields of chat completions, completions and responses by
  body_check's tables: a 400 naming the field (OpenAI's `param`) before the proxy sees it.
- A request refused with a 4xx is one line in the log (see logs), never a traceback.
- Streams: an SSE comment (`: keep-alive`) every KEEPALIVE_S seconds a stream is silent (a
  pipeline's earlier steps running before the final step's first token), so a client's or a
  proxy's read timeout is not hit; SSE clients ignore comments.
- Lifespan: once the proxy has shut down, `on_shutdown` closes the trace store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from composite_cli.serve import logs
from composite_cli.serve.auth import request_key, same_key
from composite_cli.serve.body_check import (
    MAX_BODY_BYTES,
    Problem,
    check_body,
    check_mode_endpoint,
    endpoint_for,
    parse,
    too_large,
)
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
KEEPALIVE_S = 5.0
KEEPALIVE = b": keep-alive\n\n"


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


async def _read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The whole request body, read once; None as soon as it is over `limit` bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def _declared_too_large(scope: Scope) -> bool:
    length = _header(scope, b"content-length").strip()
    return length.isdigit() and int(length) > MAX_BODY_BYTES


def _one_line_error(body: bytes) -> bytes:
    """An OpenAI-style error body with its message cut to the first line: the proxy appends
    notes ("LiteLLM: model group ... failed"), sometimes a traceback, to a client's 400."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not isinstance(message := error.get("message"), str):
        return body
    if "\n" not in message.strip():
        return body
    error["message"] = message.strip().splitlines()[0].strip()
    return json.dumps(data).encode()


def _with_length(headers: Any, length: int) -> list[tuple[bytes, bytes]]:
    out = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    return [*out, (b"content-length", str(length).encode())]


def _error_message(body: bytes) -> str:
    """The message of an error response, whatever its shape."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace")
    error = data.get("error", data.get("detail")) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)


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


def _is_event_stream(headers: Any) -> bool:
    return any(k.lower() == b"content-type" and b"text/event-stream" in v.lower() for k, v in headers)


class _KeepAlive:
    """The client's `send`, plus an SSE comment every `period` seconds an event stream is silent.

    Starts when a 2xx `text/event-stream` response starts; stops at the stream's last body
    message (or when the request ends). Sends are serialized, so a comment never lands inside,
    or after, the proxy's own messages."""

    def __init__(self, send: Send, period: float):
        self.send = send
        self.period = period
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0
        self._ended = False

    async def __call__(self, message: Message) -> None:
        async with self._lock:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self._ended = True
            await self.send(message)
            self._last = asyncio.get_running_loop().time()
        if self._ended:
            self.stop()
        elif (
            message["type"] == "http.response.start"
            and int(message.get("status", 200)) < 300
            and _is_event_stream(message.get("headers") or [])
            and self.period > 0
        ):
            self._task = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._last + self.period - loop.time()))
            async with self._lock:
                if self._ended:
                    return
                if loop.time() - self._last >= self.period:
                    await self.send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    self._last = loop.time()

    def stop(self) -> None:
        self._ended = True
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()


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
        mode_models: Collection[str] = (),
        keepalive_s: float = KEEPALIVE_S,
    ):
        self.app = app
        self.keepalive_s = keepalive_s
        self.mode_models = frozenset(mode_models)  # the model names that are composite modes
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
        keepalive = _KeepAlive(send, self.keepalive_s)
        try:
            proxied = self._proxy_send(keepalive, scope, slot, check_auth=not is_master)
            if scope.get("method") not in ("POST", "PUT", "PATCH"):
                await self.app(scope, receive, proxied)
                return
            body = None if _declared_too_large(scope) else await _read_body(receive)
            wrong = too_large() if body is None else self._check(scope, body)
            if wrong is not None:
                await self._refuse(send, scope, wrong)
                return
            assert body is not None
            await _until_done_or_gone(self.app, scope, body, receive, proxied)
        finally:
            keepalive.stop()
            current_slot.reset(token)

    def _check(self, scope: Scope, body: bytes) -> Problem | None:
        """The body's problem, for the endpoints with a table and for any JSON body."""
        endpoint = endpoint_for(scope.get("method"), scope.get("path", ""))
        if endpoint is None and "json" not in _header(scope, b"content-type").lower():
            return None  # a form or a file upload: the proxy reads it
        data, wrong = parse(body)
        if wrong is None and endpoint is not None:
            wrong = check_body(endpoint, data, self.mode_models)
        if wrong is None and endpoint is None and scope.get("method") == "POST":
            wrong = check_mode_endpoint(scope.get("path", ""), data, self.mode_models)
        return wrong

    @staticmethod
    async def _refuse(send: Send, scope: Scope, wrong: Problem) -> None:
        logs.client_error(scope.get("method", ""), scope.get("path", ""), wrong.status, wrong.message)
        body = error_body(wrong.message, "invalid_request_error", wrong.code, wrong.param)
        await send_error(send, wrong.status, body)

    @staticmethod
    def _auth_message(key: str | None) -> str:
        if key is None:
            return (
                "No API key provided. Send the proxy's master key as 'Authorization: Bearer <key>' "
                "(the OpenAI SDK's api_key)."
            )
        return "Incorrect API key provided."  # never echo the key back

    def _proxy_send(self, send: Send, scope: Scope, slot: RunSlot, *, check_auth: bool) -> Send:
        """The proxy's responses, with composite's headers. An error is held until its body is
        whole: an auth failure (for keys other than the master key) becomes the edge's 401, and a
        4xx is logged in one line."""
        held: list[Message] = []

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _composite_headers(message.get("headers") or [], slot)}
                if message.get("status", 200) >= 400:
                    held.append(message)
                    return
            elif held and message["type"] == "http.response.body":
                held.append(message)
                if message.get("more_body"):
                    return
                start, *parts = held
                held.clear()
                body = b"".join(p.get("body", b"") for p in parts)
                status = int(start.get("status", 500))
                if check_auth and _is_auth_failure(status, body):
                    await unauthorized(send, "Incorrect API key provided.")
                    return
                if status < 500:
                    body = _one_line_error(body)
                    logs.client_error(
                        scope.get("method", ""), scope.get("path", ""), status, _error_message(body)
                    )
                    start = {**start, "headers": _with_length(start.get("headers") or [], len(body))}
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
