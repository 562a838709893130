"""A mode is "just another model" for clients nobody here wrote (issue 13): LiteLLM's
`completion`, `Router` and `callbacks` in-process, and the official `openai` SDK against
`composite serve` and against a plain `litellm --config` proxy loading the `--print-config`
snippet. Models are fakes (tests/conftest.py) or LiteLLM mocks; nothing touches the network.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from test_serve_e2e import Server, serve_and_proxy

import composite_cli
from composite_cli.config import Profile, Settings

USER = [{"role": "user", "content": "What is the capital of France?"}]
MASTER = "sk-clients-master-0a1b2c3d4e5f6a7b"
ANSWER = "Paris is the capital."


@pytest.fixture
def handler(fake_model: Any, tmp_path: Path) -> Any:
    settings = Settings(
        profile=Profile("priced", {"*": {"model": "openai/gpt-4o-mini"}}),
        db_path=tmp_path / "traces.db",
    )
    return composite_cli.register(settings=settings)


@pytest.fixture
def litellm(handler: Any) -> Any:
    from composite_cli.litellm_loader import get_litellm

    return get_litellm()


def _block(chunks: list[Any]) -> dict[str, Any]:
    """composite's block of a stream (on the chunk that finishes the answer)."""
    return next(c.composite for c in chunks if getattr(c, "composite", None))


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "traces.db")


# -- servers: `composite serve` and a plain LiteLLM proxy with the --print-config snippet ----------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("clients")
    mock = {"model": "openai/gpt-4o-mini", "mock_response": ANSWER}
    config = {"profile": "mock", "profiles": {"mock": {"*": mock}}}
    (root / "composite.yaml").write_text(yaml.safe_dump(config))
    env = {"COMPOSITE_CONFIG": str(root / "composite.yaml")}
    with serve_and_proxy(root, MASTER, env, ["--config", str(root / "composite.yaml")]) as started:
        yield started


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=MASTER, max_retries=0, timeout=120)


# -- 1. n -----------------------------------------------------------------------------------------


def test_n_gives_n_complete_choices_with_usage_and_cost_of_all(
    litellm: Any, handler: Any, fake_model: Any, tmp_path: Path
):
    answers = iter(["Paris.", "It is Paris."])
    fake_model.script(lambda name, messages: next(answers) if name == "answer" else None)
    response = litellm.completion(model="composite/moa-v1", messages=USER, n=2)
    assert sorted(c.message.content for c in response.choices) == ["It is Paris.", "Paris."]
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.finish_reason == "stop" for c in response.choices)
    # no internal call was asked for n answers (it would bill n and give one)
    assert all("n" not in r for r in fake_model.requests)
    info = response._hidden_params["composite"]
    assert len(info["run_ids"]) == 2 and info["run_id"] == info["run_ids"][0] and info["calls"] == 8
    handler.runner.flush()  # traces are written in the background
    pt, ct, cost, runs = (
        _db(tmp_path)
        .execute(
            "select sum(prompt_tokens), sum(completion_tokens), sum(cost_usd), count(distinct run_id) "
            "from steps where kind='llm' and run_id in (?, ?)",
            info["run_ids"],
        )
        .fetchone()
    )
    assert runs == 2
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (pt, ct)
    assert litellm.completion_cost(completion_response=response) == pytest.approx(cost)
    assert info["cost_usd"] == pytest.approx(cost)


@pytest.mark.parametrize(("n", "stream"), [(2, True), (0, False), ("two", False), (129, False)])
def test_n_a_mode_cannot_give_is_a_bad_request_naming_n(litellm: Any, fake_model: Any, n: Any, stream: bool):
    with pytest.raises(litellm.BadRequestError) as caught:
        result = litellm.completion(model="composite/direct", messages=USER, n=n, stream=stream)
        list(result) if stream else None
    assert "'n'" in str(caught.value) and caught.value.param == "n"
    assert fake_model.requests == []


def test_n_through_serve_with_the_openai_sdk(servers: dict[str, Server]):
    server = servers["serve"].wait_ready()
    reply = client(server).chat.completions.create(model="moa", messages=USER, n=2)
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.message.content for c in reply.choices] == [ANSWER, ANSWER]
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    assert len(reply.model_extra["composite"]["run_ids"]) == 2
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(model="moa", messages=USER, n=2, stream=True)
    assert caught.value.body["param"] == "n"


# -- 3. timeout= ----------------------------------------------------------------------------------


def _run_row(tmp_path: Path, handler: Any) -> tuple[Any, ...]:
    handler.runner.flush()
    return tuple(
        _db(tmp_path)
        .execute("select status, stopped_by, error, notes_json from runs order by created_at, rowid")
        .fetchall()[-1]
    )


@pytest.fixture
def slow(fake_model: Any) -> Any:
    """moa-v1 whose experts take 30 s (the fake sleeps, so a cancelled run stops at once)."""
    for name in ("analyst", "teacher", "skeptic"):
        fake_model.on(name, "an expert's view", delay=30)
    fake_model.on("answer", "slow answer")
    return fake_model


def test_timeout_bounds_the_whole_run_and_records_it(litellm: Any, handler: Any, slow: Any, tmp_path: Path):
    with pytest.raises(litellm.Timeout, match=r"timeout of 0\.2s"):
        litellm.completion(model="composite/moa-v1", messages=USER, timeout=0.2)
    status, stopped_by, error, notes = _run_row(tmp_path, handler)
    assert (status, stopped_by) == ("cancelled", "timeout (0.2s)")
    assert "RunTimeout" in error and '"timeout_s": 0.2' in notes


async def test_timeout_in_async_calls(litellm: Any, handler: Any, slow: Any, tmp_path: Path):
    with pytest.raises(litellm.Timeout):
        await litellm.acompletion(model="composite/moa-v1", messages=USER, timeout=0.2)
    with pytest.raises(litellm.Timeout):
        stream = await litellm.acompletion(model="composite/moa-v1", messages=USER, timeout=0.2, stream=True)
        _ = [chunk async for chunk in stream]
    assert _run_row(tmp_path, handler)[:2] == ("cancelled", "timeout (0.2s)")


def test_timeout_on_a_slow_dry_profile(tmp_path: Path):
    """The real provider path (the `dry/...` mock with a delay), no fake at the calls seam."""
    settings = Settings(
        profile=Profile("slowdry", {"*": {"model": "dry/mock", "delay": 5}}), db_path=tmp_path / "traces.db"
    )
    handler = composite_cli.register(settings=settings)
    from composite_cli.litellm_loader import get_litellm

    with pytest.raises(get_litellm().Timeout):
        get_litellm().completion(model="composite/direct", messages=USER, timeout=0.3)
    assert _run_row(tmp_path, handler)[:2] == ("cancelled", "timeout (0.3s)")


def test_no_timeout_leaves_the_mode_deadline(litellm: Any, fake_model: Any):
    """LiteLLM passes its 600 s fallback when the caller sets none: that must not cut a mode's own
    deadline (rlm-v1 allows 900 s)."""
    from composite_cli.provider import caller_timeout

    assert caller_timeout(600.0) is None
    assert caller_timeout(0.5) == 0.5
    assert litellm.completion(model="composite/direct", messages=USER).choices[0].message.content


def test_router_timeout_falls_back_from_a_slow_composite_model(litellm: Any, slow: Any):
    router = litellm.Router(
        model_list=[
            {"model_name": "smart", "litellm_params": {"model": "composite/moa-v1"}},
            {
                "model_name": "quick",
                "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": "quick"},
            },
        ],
        timeout=0.3,
        num_retries=0,
        fallbacks=[{"smart": ["quick"]}],
    )
    assert router.completion(model="smart", messages=USER).choices[0].message.content == "quick"


# -- 6. the response id joins to the trace --------------------------------------------------------


def test_response_id_is_the_run_id(litellm: Any, fake_model: Any):
    response = litellm.completion(model="composite/moa-v1", messages=USER)
    assert response.id == f"chatcmpl-{response._hidden_params['composite']['run_id']}"
    chunks = list(litellm.completion(model="composite/moa-v1", messages=USER, stream=True))
    run_id = _block(chunks)["run_id"]
    assert {c.id for c in chunks} == {f"chatcmpl-{run_id}"}
    assert litellm.stream_chunk_builder(chunks).id == f"chatcmpl-{run_id}"


async def test_async_stream_id_is_the_run_id(litellm: Any, fake_model: Any):
    stream = await litellm.acompletion(model="composite/direct", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert {c.id for c in chunks} == {f"chatcmpl-{_block(chunks)['run_id']}"}


def test_serve_body_joins_to_the_trace(servers: dict[str, Server]):
    server = servers["serve"].wait_ready()
    raw = client(server).chat.completions.with_raw_response.create(model="moa", messages=USER)
    reply = raw.parse()
    run_id = raw.headers["x-composite-run-id"]
    assert reply.id == f"chatcmpl-{run_id}"
    assert reply.model_extra["composite"]["run_id"] == run_id  # the openai SDK keeps the block
    chunks = list(client(server).chat.completions.create(model="moa", messages=USER, stream=True))
    run_id = next(c.model_extra["composite"] for c in chunks if c.model_extra.get("composite"))["run_id"]
    assert {c.id for c in chunks} == {f"chatcmpl-{run_id}"}
    trace = openai.OpenAI(base_url=server.url, api_key=MASTER).get(
        f"/composite/traces/{reply.id.removeprefix('chatcmpl-')}", cast_to=object
    )
    assert trace["run"]["id"] == reply.id.removeprefix("chatcmpl-")


def test_plain_litellm_proxy_runs_are_source_proxy(servers: dict[str, Server], tmp_path: Path):
    server = servers["proxy"].wait_ready()
    raw = client(server).chat.completions.with_raw_response.create(model="moa", messages=USER)
    run_id = raw.headers["llm_provider-x-composite-run-id"]  # the name behind any LiteLLM proxy
    assert raw.parse().id == f"chatcmpl-{run_id}"
    db = server.log_path.parent / "proxy.db"
    for _ in range(100):  # the proxy's trace writer commits in the background
        row = (
            sqlite3.connect(db).execute("select source from runs where id=?", [run_id]).fetchone()
            if db.exists()
            else None
        )
        if row:
            break
        time.sleep(0.1)
    assert row == ("proxy",)


# -- 4. streamed calls carry their run id and summed cost the way LiteLLM expects ----------------


class Spend:
    """A litellm CustomLogger that keeps every success event's kwargs (sync and async)."""

    def __init__(self) -> None:
        from litellm.integrations.custom_logger import CustomLogger

        events: list[dict[str, Any]] = []

        class Logger(CustomLogger):
            def log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
                events.append(kwargs)

            async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
                events.append(kwargs)

        self.events = events
        self.logger = Logger()
        # LiteLLM keeps one logger per class and public fields: this one must not pass for another's.
        self.logger.tag = f"spend-{id(self)}"  # type: ignore[attr-defined]

    def outer(self, count: int = 1) -> list[dict[str, Any]]:
        """The `composite/...` events (LiteLLM logs them after the caller has the answer)."""
        for _ in range(600):
            found = [k for k in self.events if str(k.get("custom_llm_provider")) == "composite"]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no outer event among {len(self.events)}")

    async def aouter(self, count: int = 1) -> list[dict[str, Any]]:
        """`outer` inside an event loop (the async callbacks run on it)."""
        for _ in range(600):
            found = [k for k in self.events if str(k.get("custom_llm_provider")) == "composite"]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no outer event among {len(self.events)}")


@pytest.fixture
def spend(litellm: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Spend]:
    """A Spend logger in litellm.callbacks for one test."""
    found = Spend()
    monkeypatch.setattr(litellm, "callbacks", [found.logger])
    yield found
    litellm.logging_callback_manager.drop_callbacks([found.logger])


def _run_cost(tmp_path: Path, handler: Any, run_id: str) -> float:
    handler.runner.flush()
    (cost,) = _db(tmp_path).execute("select cost_usd from runs where id=?", [run_id]).fetchone()
    assert cost and cost > 0
    return float(cost)


def test_stream_carries_run_id_and_summed_cost(
    litellm: Any, handler: Any, fake_model: Any, tmp_path: Path, spend: Spend
):
    fake_model.on("answer", "The capital of France is Paris.")
    chunks = list(
        litellm.completion(
            model="composite/moa-v1", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    run_id = _block(chunks)["run_id"]
    cost = _run_cost(tmp_path, handler, run_id)
    assert chunks[-1].usage.cost == pytest.approx(cost)  # the final usage chunk
    assert any((c._hidden_params.get("composite") or {}).get("run_id") == run_id for c in chunks)
    built = litellm.stream_chunk_builder(chunks)
    assert litellm.completion_cost(completion_response=built) == pytest.approx(cost)
    assert spend.outer()[0]["response_cost"] == pytest.approx(cost)


def test_stream_without_usage_chunk_prices_too(litellm: Any, handler: Any, fake_model: Any, tmp_path: Path):
    chunks = list(litellm.completion(model="composite/moa-v1", messages=USER, stream=True))
    cost = _run_cost(tmp_path, handler, _block(chunks)["run_id"])
    built = litellm.stream_chunk_builder(chunks)
    assert litellm.completion_cost(completion_response=built) == pytest.approx(cost)


async def test_async_stream_carries_summed_cost(
    litellm: Any, handler: Any, fake_model: Any, tmp_path: Path, spend: Spend
):
    stream = await litellm.acompletion(
        model="composite/moa-v1", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    cost = _run_cost(tmp_path, handler, _block(chunks)["run_id"])
    assert chunks[-1].usage.cost == pytest.approx(cost)
    assert litellm.completion_cost(completion_response=litellm.stream_chunk_builder(chunks)) == pytest.approx(
        cost
    )
    assert (await spend.aouter())[0]["response_cost"] == pytest.approx(cost)


# -- 5. callbacks see a coherent picture ----------------------------------------------------------


def _readme_spend_once(litellm: Any) -> Any:
    """The SpendOnce callback exactly as the README shows it."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (code,) = [b for b in blocks if "class SpendOnce(CustomLogger)" in b]
    scope: dict[str, Any] = {"litellm": litellm}
    exec(code.replace("litellm.callbacks = [SpendOnce()]", ""), scope)
    return scope["SpendOnce"]


def _metadata(event: dict[str, Any]) -> dict[str, Any]:
    return event["litellm_params"].get("metadata") or {}


async def _wait(condition: Any) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("callbacks did not arrive")


async def test_callbacks_see_a_coherent_picture(
    litellm: Any, handler: Any, fake_model: Any, tmp_path: Path, spend: Spend, monkeypatch: pytest.MonkeyPatch
):
    once = _readme_spend_once(litellm)()
    monkeypatch.setattr(litellm, "callbacks", [spend.logger, once])
    replies = [
        await litellm.acompletion(model="composite/moa-v1", messages=USER),
        await litellm.acompletion(model="composite/moa-v1", messages=USER, n=2),
        litellm.completion(model="composite/direct", messages=USER),  # sync, from the loop's thread
    ]
    stream = await litellm.acompletion(
        model="composite/moa-v1", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    run_ids = [replies[0]._hidden_params["composite"]["run_id"]]
    run_ids += replies[1]._hidden_params["composite"]["run_ids"]
    run_ids += [replies[2]._hidden_params["composite"]["run_id"], _block(chunks)["run_id"]]
    outer = await spend.aouter(4)
    # moa-v1: 4 calls; n=2: 8; direct: 1; moa-v1 streamed: 3 (its answer streams outside LiteLLM)
    await _wait(lambda: len([e for e in spend.events if _metadata(e).get("composite_internal")]) >= 16)
    handler.runner.flush()
    costs = dict(_db(tmp_path).execute("select id, cost_usd from runs").fetchall())
    assert set(costs) == set(run_ids)
    # the outer events: the run ids (the n=2 request lists both), internal false, in spend logs metadata
    for event in outer:
        metadata = _metadata(event)
        assert metadata["composite_internal"] is False and metadata["composite_run_id"] in run_ids
        logged = event["standard_logging_object"]["metadata"]["spend_logs_metadata"]
        assert logged["composite_run_id"] == metadata["composite_run_id"]
    two = next(_metadata(e) for e in outer if "composite_run_ids" in _metadata(e))
    assert two["composite_run_ids"] == replies[1]._hidden_params["composite"]["run_ids"]
    # the internal events: marked, joined to their run
    internal = [e for e in spend.events if _metadata(e).get("composite_internal")]
    assert {_metadata(e)["composite_run_id"] for e in internal} == set(run_ids)
    # the README's callback counts every run once
    assert once.total == pytest.approx(sum(costs.values()))
    everything = sum(e.get("response_cost") or 0.0 for e in spend.events)
    assert everything > 1.5 * once.total  # what a naive total says: internal calls counted twice


# -- 10. a stream starts at once ------------------------------------------------------------------


def test_stream_starts_when_the_run_starts(litellm: Any, fake_model: Any, monkeypatch: pytest.MonkeyPatch):
    """The first chunk (role, run id) arrives while the experts are still running."""
    import threading

    import composite_cli.calls

    gate = threading.Event()

    async def gated(**kwargs: Any) -> Any:
        if kwargs["metadata"]["composite_call"] != "answer":
            await asyncio.to_thread(gate.wait, 60)
        return await fake_model(**kwargs)

    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", gated)
    stream = iter(litellm.completion(model="composite/moa-v1", messages=USER, stream=True))
    first = next(stream)
    assert not gate.is_set() and fake_model.requests == []  # no expert has answered yet
    assert first.choices[0].delta.role == "assistant" and not first.choices[0].delta.content
    assert first.id == f"chatcmpl-{first.composite_run_id}"
    gate.set()
    rest = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in rest) == "fake answer"
    assert _block(rest)["status"] == "ok"


async def _edge_exchange(app: Any, sent: list[dict[str, Any]], keepalive_s: float) -> None:
    """Run the serve edge around `app` for one streamed chat request; what it sends lands in `sent`."""
    from composite_cli.serve.edge import CompositeEdge

    edge = CompositeEdge(app, master_key=MASTER, introspection=app, keepalive_s=keepalive_s)
    body = b'{"model": "moa", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"authorization", f"Bearer {MASTER}".encode()), (b"content-type", b"application/json")],
    }
    requests = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict[str, Any]:
        for message in requests:
            return message
        await asyncio.Event().wait()  # the client stays
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await edge(scope, receive, send)


async def test_serve_edge_sends_keep_alives_while_a_stream_is_silent():
    from composite_cli.serve.edge import KEEPALIVE

    sent: list[dict[str, Any]] = []
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream")],
    }

    async def slow_stream(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        # the earlier steps run: silence until the edge has kept the stream alive
        while not any(m.get("body") == KEEPALIVE for m in sent):
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    await _edge_exchange(slow_stream, sent, keepalive_s=0.05)
    bodies = [m.get("body") for m in sent if m["type"] == "http.response.body"]
    assert bodies[0] == b"data: {}\n\n" and KEEPALIVE in bodies and bodies[-1] == b"data: [DONE]\n\n"
    assert sent[-1].get("more_body") is False  # nothing after the stream's end

    # a response that is not an event stream gets none
    sent.clear()

    async def json_answer(scope: Any, receive: Any, send: Any) -> None:
        await send({**start, "headers": [(b"content-type", b"application/json")]})
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    await _edge_exchange(json_answer, sent, keepalive_s=0.01)
    assert [m.get("body") for m in sent if m["type"] == "http.response.body"] == [b"{}"]


def test_an_error_after_the_stream_started_ends_the_stream(litellm: Any, fake_model: Any):
    import litellm as real

    fake_model.on("answer", error=real.RateLimitError("slow down", "openai", "gpt-4o-mini"))
    stream = iter(litellm.completion(model="composite/direct", messages=USER, stream=True))
    assert next(stream).choices[0].delta.role == "assistant"
    from litellm.exceptions import MidStreamFallbackError

    with pytest.raises(MidStreamFallbackError, match="slow down") as caught:
        list(stream)  # LiteLLM wraps an error that comes after the first chunk
    assert isinstance(caught.value.original_exception, real.RateLimitError)
