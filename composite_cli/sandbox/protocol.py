"""Framed JSON messages between the parent and the REPL process.

A frame is a 4-byte big-endian length followed by that many bytes of ASCII JSON (an object with a
"type" key). JSON is written with `ensure_ascii=True` so any Python string, lone surrogates
included, survives the trip.

Parent → child: `start` (variables), `exec` (code), `get` (a variable), `set` (variables, in a
running REPL), `answer` (to a query).
Child → parent: `ready`, `result`, `value`, `query` (llm_query / llm_query_batched / rlm_query).

This module is imported by the child too, so it uses nothing beyond the standard library and
does not import asyncio at run time.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

HEADER = struct.Struct(">I")
MAX_FRAME = 2**32 - 1


class FrameError(Exception):
    """A frame was too large, truncated or not a JSON object with a "type"."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame holding `message`."""
    body = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(body) > MAX_FRAME:
        raise FrameError(f"message of {len(body)} bytes is too large for one frame")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    """The message in a frame body; FrameError unless it is a JSON object with a string "type"."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"bad JSON in frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise FrameError("frame is not an object with a string 'type'")
    return message


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> dict[str, Any] | None:
    """The next message from `reader`, or None at a clean end of stream (parent side)."""
    import asyncio

    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header") from None
        return None
    (size,) = HEADER.unpack(header)
    if size > max_bytes:
        raise FrameError(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise FrameError("stream ended inside a frame") from None
    return decode(body)


class FrameSocket:
    """Blocking frame I/O over a connected socket (child side)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def send(self, message: dict[str, Any]) -> None:
        self._sock.sendall(encode(message))

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None when the parent closed the channel."""
        header = self._recv_exactly(HEADER.size)
        if header is None:
            return None
        (size,) = HEADER.unpack(header)
        body = self._recv_exactly(size)
        if body is None:
            raise FrameError("channel closed inside a frame")
        return decode(body)

    def _recv_exactly(self, size: int) -> bytes | None:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self._sock.recv_into(view[got:], size - got)
            if n == 0:
                if got == 0:
                    return None
                raise FrameError("channel closed inside a frame")
            got += n
        return bytes(buffer)
