"""Shared fixtures: a fake model at the calls seam, and an isolated home for every test."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import composite_cli.calls
from composite_cli.config import Profile

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Reply:
    content: str | None = "fake answer"
    tool_calls: list[dict[str, Any]] | None = None
    delay: float = 0.0
    error: BaseException | None = None
    chunk_delay: float = 0.0  # pause between streamed chunks


@dataclass
class FakeModel:
    """Stands in for LiteLLM at `composite_cli.calls.litellm_acompletion`.

    Replies come from (in order): a reply registered for the call's name (`on("analyst", ...)`),
    the queue (`add(...)`), then `default`. Every request is recorded in `requests`. Responses are
    built by LiteLLM's own mock path, so they are real ModelResponse / stream objects.
    """

    default: Reply = field(default_factory=Reply)
    queue: deque[Reply] = field(default_factory=deque)
    by_name: dict[str, deque[Reply]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Functions (name, messages) -> Reply | str | None, consulted before everything else.
    scripts: list[Any] = field(default_factory=list)

    def script(self, fn: Any) -> FakeModel:
        self.scripts.append(fn)
        return self

    def add(self, content: str | None = "fake answer", **kw: Any) -> FakeModel:
        self.queue.append(Reply(content, **kw))
        return self

    def on(self, name: str, content: str | None = "fake answer", **kw: Any) -> FakeModel:
        self.by_name.setdefault(name, deque()).append(Reply(content, **kw))
        return self

    def _pick(self, name: str) -> Reply:
        named = self.by_name.get(name)
        if named:
            return named.popleft() if len(named) > 1 else named[0]
        if self.queue:
            return self.queue.popleft()
        return self.default

    def _scripted(self, name: str, messages: list[dict[str, Any]]) -> Reply | None:
        for fn in self.scripts:
            out = fn(name, messages)
            if out is not None:
                return out if isinstance(out, Reply) else Reply(str(out))
        return None

    def names(self) -> list[str]:
        return [r["metadata"]["composite_call"] for r in self.requests]

    def request(self, name: str) -> dict[str, Any]:
        for r in self.requests:
            if r["metadata"]["composite_call"] == name:
                return r
        raise KeyError(name)

    async def __call__(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        reply = self._scripted(kwargs["metadata"]["composite_call"], kwargs["messages"])
        if reply is None:
            reply = self._pick(kwargs["metadata"]["composite_call"])
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        from composite_cli.litellm_loader import get_litellm

        if kwargs.get("stream"):
            return _stream(reply, kwargs["model"], kwargs["messages"])
        mock: dict[str, Any] = {"mock_response": reply.content or ""}
        if reply.tool_calls:
            mock["mock_tool_calls"] = reply.tool_calls
        return await get_litellm().acompletion(
            model=kwargs["model"], messages=kwargs["messages"], metadata=kwargs.get("metadata"), **mock
        )


async def _stream(reply: Reply, model: str, messages: list[dict[str, Any]]) -> Any:
    """A provider-like stream: text in small pieces, tool-call deltas, finish, then usage."""
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices, Usage

    def chunk(delta: Any, finish: str | None = None, **kw: Any) -> Any:
        return ModelResponseStream(
            model=model, choices=[StreamingChoices(index=0, delta=delta, finish_reason=finish)], **kw
        )

    text = reply.content or ""
    yield chunk(Delta(content=text[:4], role="assistant"))
    for i in range(4, len(text), 4):
        yield chunk(Delta(content=text[i : i + 4]))
        await asyncio.sleep(reply.chunk_delay)
    for i, call in enumerate(reply.tool_calls or []):
        yield chunk(Delta(tool_calls=[{"index": i, **call}]))
    yield chunk(Delta(), "tool_calls" if reply.tool_calls else "stop")
    prompt = sum(len(str(m.get("content") or "").split()) for m in messages) + 3
    completion = max(1, len(text.split()))
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    yield chunk(Delta(), usage=usage)


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    fake = FakeModel()
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", fake)
    return fake


@pytest.fixture
def fake_profile() -> Profile:
    return Profile("test", {"*": {"model": "openai/fake-model"}})


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in an empty temporary directory with its own HOME and no composite env."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for key in list(os.environ):
        if key.startswith("COMPOSITE_"):
            monkeypatch.delenv(key)
    # Console-script tests would otherwise start the warm worker, which outlives the test;
    # tests/test_worker.py starts its own in a temporary directory.
    monkeypatch.setenv("COMPOSITE_NO_WORKER", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work
