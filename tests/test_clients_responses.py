"""The Responses API and LiteLLM's retry options work on a mode (issue 13, item 2).

LiteLLM's proxy answers `/v1/responses` through a hook that needs `pynacl`, and LiteLLM's
`num_retries=` needs `tenacity`; neither is a dependency of `litellm` itself, so composite declares
them. Checked with the real clients: the `openai` SDK's `responses.create` (streamed and not)
against `composite serve` and against a plain `litellm --config` proxy loading the
`--print-config` snippet, both on the built-in `dry` profile; and `litellm.completion(...,
num_retries=2)` in-process on a mode whose first run fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from test_serve_e2e import Server, serve_and_proxy

import composite_cli
from composite_cli.config import DRY_ANSWER, Profile, Settings

MASTER = "sk-responses-master-0a1b2c3d4e5f6a7b"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """`composite serve` and a plain LiteLLM proxy with composite installed, both on `dry`."""
    root = tmp_path_factory.mktemp("responses")
    env = {"COMPOSITE_PROFILE": "dry", "COMPOSITE_NO_WORKER": "1"}
    with serve_and_proxy(root, MASTER, env, []) as started:
        yield started


def _client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=MASTER, max_retries=0, timeout=120)


@pytest.mark.parametrize("name", ["serve", "proxy"])
def test_responses_create(servers: dict[str, Server], name: str):
    server = servers[name].wait_ready()
    model = "moa" if name == "serve" else "composite/moa-v1"
    reply = _client(server).responses.create(model=model, input=QUESTION)
    assert reply.status == "completed"
    assert reply.output_text == DRY_ANSWER
    assert reply.usage is not None and reply.usage.input_tokens > 0


@pytest.mark.parametrize("name", ["serve", "proxy"])
def test_responses_create_streamed(servers: dict[str, Server], name: str):
    server = servers[name].wait_ready()
    model = "moa" if name == "serve" else "composite/moa-v1"
    events = list(_client(server).responses.create(model=model, input=QUESTION, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1  # streamed in pieces, not one block at the end
    assert "".join(deltas) == DRY_ANSWER
    assert events[-1].response.output_text == DRY_ANSWER


def test_responses_follow_up_by_previous_response_id(servers: dict[str, Server]):
    server = servers["serve"].wait_ready()
    first = _client(server).responses.create(model="direct", input=QUESTION)
    second = _client(server).responses.create(
        model="direct", input="And of Italy?", previous_response_id=first.id
    )
    assert second.output_text == DRY_ANSWER


def test_chat_completions_with_num_retries_through_serve(servers: dict[str, Server]):
    server = servers["serve"].wait_ready()
    reply = _client(server).chat.completions.create(
        model="direct", messages=[{"role": "user", "content": QUESTION}], extra_body={"num_retries": 2}
    )
    assert reply.choices[0].message.content == DRY_ANSWER


# -- in-process: LiteLLM's num_retries= retries a mode whose run failed ----------------------------


@pytest.fixture
def litellm(fake_model: Any, tmp_path: Path) -> Any:
    settings = Settings(
        profile=Profile("test", {"*": {"model": "openai/fake-model"}}), db_path=tmp_path / "t.db"
    )
    composite_cli.register(settings=settings)
    from composite_cli.litellm_loader import get_litellm

    return get_litellm()


def _fails_first(litellm: Any, fake_model: Any) -> None:
    busy = litellm.RateLimitError(message="busy", llm_provider="openai", model="fake-model")
    fake_model.add(error=busy).add("Paris.")


def test_litellm_completion_num_retries_retries_the_mode(litellm: Any, fake_model: Any):
    _fails_first(litellm, fake_model)
    response = litellm.completion(
        model="composite/direct", messages=[{"role": "user", "content": QUESTION}], num_retries=2
    )
    assert response.choices[0].message.content == "Paris."
    assert len(fake_model.requests) == 2  # the failed run, then the retried one


async def test_litellm_acompletion_num_retries_retries_the_mode(litellm: Any, fake_model: Any):
    _fails_first(litellm, fake_model)
    response = await litellm.acompletion(
        model="composite/direct", messages=[{"role": "user", "content": QUESTION}], num_retries=2
    )
    assert response.choices[0].message.content == "Paris."
    assert len(fake_model.requests) == 2
