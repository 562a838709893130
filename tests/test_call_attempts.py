"""Traces record every HTTP attempt (issue 13, item 8).

The SDKs under LiteLLM retry quietly: the openai SDK makes three requests for one call whose first two
get a 500, and composite recorded one call with `retries 0`. Here a scripted OpenAI-compatible
upstream fails the first requests, then answers; the step's `retries` counts every retried request,
its `response_json.attempts` keeps each attempt's error and latency, and the upstream saw exactly the
requests the trace lists. Real LiteLLM (not the fake model), on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
from test_serve_e2e import free_port

from composite_cli.calls import describe_error
from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.runner import Runner

USER = [{"role": "user", "content": "What is the capital of France?"}]


class Upstream:
    """`/v1/chat/completions` that answers `fail` requests with `status`, then with "Paris."."""

    def __init__(self) -> None:
        self.fail = 0
        self.status = 500
        self.headers: list[dict[str, str]] = []

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat(request: Request) -> Any:
            self.headers.append(dict(request.headers))
            n = len(self.headers)
            if n <= self.fail:
                return JSONResponse(
                    {"error": {"message": f"overloaded (request {n})", "type": "server_error"}},
                    status_code=self.status,
                    headers={"retry-after-ms": "10"},  # keeps the test fast; the SDK honours it too
                )
            return JSONResponse(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": "scripted",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Paris."},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                }
            )

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Upstream, str]]:
    import uvicorn

    upstream, port = Upstream(), free_port()
    uv = uvicorn.Server(uvicorn.Config(upstream.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started
    try:
        yield upstream, f"http://127.0.0.1:{port}/v1"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def upstream(server: tuple[Upstream, str]) -> tuple[Upstream, str]:
    server[0].headers.clear()
    server[0].fail, server[0].status = 0, 500
    return server


def _run(tmp_path: Path, base: str, **params: Any) -> tuple[dict[str, Any], Any]:
    model = {"model": "openai/scripted", "api_base": base, "api_key": "sk-scripted", **params}
    runner = Runner(Settings(profile=Profile("p", {"*": model}), db_path=tmp_path / "t.db"))
    import asyncio

    try:
        result: Any = asyncio.run(runner.run("direct", RunRequest(messages=USER)))
    except Exception as exc:
        result = exc
    runner.flush()
    run_id = runner.store.list_runs(1)[0]["id"]
    step = next(s for s in runner.store.run_steps(run_id) if s["kind"] == "llm")
    runner.close()
    return step, result


def test_the_sdks_default_retries_are_each_recorded(tmp_path: Path, upstream: tuple[Upstream, str]):
    scripted, base = upstream
    scripted.fail = 2
    step, result = _run(tmp_path, base)
    assert result.text == "Paris."
    assert len(scripted.headers) == 3  # what the upstream saw ...
    assert step["retries"] == 2  # ... is what the trace says
    attempts = json.loads(step["response_json"])["attempts"]
    assert [("error" in a) for a in attempts] == [True, True, False]
    assert (
        "overloaded (request 1)" in attempts[0]["error"] and "overloaded (request 2)" in attempts[1]["error"]
    )
    assert attempts[0]["error"].startswith("InternalServerError")
    assert all(a["retried"] for a in attempts[:2])
    assert all(a["latency_ms"] > 0 and a["model"] == "openai/scripted" for a in attempts)
    assert step["latency_ms"] >= sum(a["latency_ms"] for a in attempts)
    # composite makes each request itself: the SDK never retries behind its back
    assert [h.get("x-stainless-retry-count") for h in scripted.headers] == ["0", "0", "0"]


def test_a_call_that_fails_every_attempt_keeps_every_error(tmp_path: Path, upstream: tuple[Upstream, str]):
    scripted, base = upstream
    scripted.fail = 10
    step, result = _run(tmp_path, base, max_retries=1)
    assert isinstance(result, Exception)
    assert len(scripted.headers) == 2  # the profile's max_retries: 1
    assert step["status"] == "error" and step["retries"] == 1
    attempts = json.loads(step["request_json"])["attempts"]
    assert [a["retried"] for a in attempts] == [True, False]
    assert "overloaded (request 2)" in step["error"]


def test_litellms_num_retries_in_a_profile_is_counted_too(tmp_path: Path, upstream: tuple[Upstream, str]):
    scripted, base = upstream
    scripted.fail = 2
    step, result = _run(tmp_path, base, max_retries=0, num_retries=2)
    assert result.text == "Paris."
    assert len(scripted.headers) == 3 and step["retries"] == 2


def test_a_bad_request_is_not_retried(tmp_path: Path, upstream: tuple[Upstream, str]):
    scripted, base = upstream
    scripted.fail, scripted.status = 10, 400
    step, result = _run(tmp_path, base)
    assert isinstance(result, Exception)
    assert len(scripted.headers) == 1 and step["retries"] == 0
    assert "attempts" not in json.loads(step["request_json"])  # one attempt: its error is the step's


def test_one_attempt_adds_nothing_to_the_trace(tmp_path: Path, upstream: tuple[Upstream, str]):
    step, result = _run(tmp_path, upstream[1])
    assert result.text == "Paris." and step["retries"] == 0
    assert "attempts" not in json.loads(step["response_json"])


# -- each error reads once (issue 13, item 9: `InternalServerError: litellm.InternalServerError: ...`)


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (
            litellm.InternalServerError("InternalServerError: boom", "openai", "m"),
            "InternalServerError: boom",
        ),
        (
            litellm.InternalServerError("injected server_error fault", "faulty", "m"),
            "InternalServerError: injected server_error fault",
        ),
        (litellm.RateLimitError("RateLimitError: slow down", "openai", "m"), "RateLimitError: slow down"),
        # a base class's name is a prefix too (Timeout derives from openai.APITimeoutError)
        (
            litellm.Timeout("APITimeoutError: Request timed out.", "m", "openai"),
            "Timeout: Request timed out.",
        ),
        (ValueError("ValueError: ValueError: x"), "ValueError: x"),
        (ValueError("a message: with colons"), "ValueError: a message: with colons"),
        (RuntimeError(""), "RuntimeError"),
    ],
)
def test_error_text_names_the_error_once(exc: BaseException, text: str):
    assert describe_error(exc) == text
