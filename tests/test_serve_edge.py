"""The server's edge (issue 12, findings 9 and 10): every field of a request checked, with a 400
naming it; a run that the request's own parameters push over max_calls is a 400; a client's
mistake is one line in the log, never a traceback; deep or huge bodies are 400 and 413.

One real server subprocess (LiteLLM mock models, nothing on the network), plus a few checks of the
edge in-process.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_serve_e2e import Server, _env, free_port

from composite_cli.serve import body_check

MASTER = "sk-edge-master-0a1b2c3d4e5f6a7b8c9d"
ANSWER = "Paris is the capital."
COMPOSITE = str(Path(__import__("sys").executable).with_name("composite"))
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
USER = '[{"role": "user", "content": "What is the capital of France?"}]'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve-edge")
    mock = {"model": "openai/gpt-4o-mini", "mock_response": ANSWER}
    config = {
        "profile": "mock",
        "profiles": {
            "mock": {"*": mock},
            "failing": {"*": {**mock, "mock_response": "litellm.InternalServerError"}},
        },
    }
    (root / "composite.yaml").write_text(yaml.safe_dump(config))
    plain = {"model_name": "plain-mock", "litellm_params": {**mock, "mock_response": "plain answer"}}
    user_config = {"model_list": [plain], "router_settings": {"num_retries": 0}}
    (root / "litellm.yaml").write_text(yaml.safe_dump(user_config))
    home = root / "home"
    home.mkdir()
    env = {**_env(home), "LITELLM_MASTER_KEY": MASTER}
    port = free_port()
    argv = [COMPOSITE, "serve", "--config", str(root / "composite.yaml"), "--port", str(port),
            "--db", str(root / "edge.db"), "--litellm-config", str(root / "litellm.yaml")]  # fmt: skip
    started = Server("edge", argv, root, env, port)
    try:
        yield started.wait_ready()
    finally:
        started.close()


def post(server: Server, body: str | bytes, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(
        server.url + path,
        content=body.encode() if isinstance(body, str) else body,
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
        timeout=HTTP_TIMEOUT,
    )


def chat_body(field: str, raw: str, model: str = "direct") -> str:
    """A chat body with `field` set to the raw JSON text `raw` (so NaN and 1e400 get through)."""
    if field == "messages":
        return f'{{"model": "{model}", "messages": {raw}}}'
    if field == "model":
        return f'{{"model": {raw}, "messages": {USER}}}'
    return f'{{"model": "{model}", "messages": {USER}, "{field}": {raw}}}'


def assert_400_naming(response: httpx.Response, param: str | None) -> dict[str, Any]:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert error["message"] and "Traceback" not in error["message"] and "\n" not in error["message"]
    return dict(error)


# (field, raw JSON value, the param the 400 names when it is not the field)
BAD_CHAT: list[tuple[str, str] | tuple[str, str, str]] = [
    ("n", "-1"), ("n", "0"), ("n", "1.5"), ("n", '"2"'), ("n", "true"), ("n", "129"),
    ("max_tokens", "-5"), ("max_tokens", "0"), ("max_tokens", '"many"'), ("max_tokens", "1e30"),
    ("max_tokens", "1.5"), ("max_tokens", "true"), ("max_tokens", "2097152"),
    ("max_completion_tokens", "-5"), ("max_completion_tokens", '"many"'), ("max_completion_tokens", "1e30"),
    ("temperature", '"hot"'), ("temperature", "NaN"), ("temperature", "1e400"), ("temperature", "-0.1"),
    ("temperature", "2.5"), ("temperature", "true"), ("temperature", "[1]"), ("temperature", "-Infinity"),
    ("top_p", "1.5"), ("top_p", "-1"), ("top_p", '"x"'), ("top_p", "NaN"),
    ("frequency_penalty", "3"), ("presence_penalty", "-3"), ("presence_penalty", '"x"'),
    ("stop", "{}"), ("stop", '["a", "b", "c", "d", "e"]'), ("stop", "[1]", "stop"), ("stop", "5"),
    ("stream", '"yes"'), ("stream", "1"),
    ("stream_options", '"x"'), ("stream_options", '{"include_usage": "yes"}', "stream_options.include_usage"),
    ("stream_options", '{"bogus": true}', "stream_options.bogus"),
    ("metadata", '"x"'), ("metadata", "[1]"), ("metadata", json.dumps({"k" * 65: "v"})),
    ("metadata", json.dumps({f"k{i}": "v" for i in range(17)})),
    ("user", "{}"), ("user", "5"),
    ("seed", '"x"'), ("seed", "1.5"), ("seed", str(2**64)),
    ("logit_bias", '"x"'), ("logit_bias", '{"50256": 101}', "logit_bias.50256"),
    ("logprobs", '"yes"'), ("top_logprobs", "21"), ("top_logprobs", "-1"),
    ("tools", '"x"'), ("tools", '[{"function": {"name": "f"}}]', "tools[0].type"),
    ("tools", '[{"type": "function", "function": {}}]', "tools[0].function.name"),
    ("tool_choice", '"sometimes"'), ("tool_choice", "5"),
    ("response_format", '"json"'), ("response_format", '{"type": "xml"}', "response_format.type"),
    ("response_format", '{"type": "json_schema"}', "response_format.json_schema"),
    ("response_format", '{"type": "json_schema", "json_schema": {"schema": {}}}', "response_format.json_schema.name"),
    ("parallel_tool_calls", '"yes"'), ("reasoning_effort", '"extreme"'), ("modalities", '"text"'),
    ("modalities", '["video"]', "modalities[0]"), ("service_tier", '"gold"'), ("verbosity", '"loud"'),
    ("store", '"no"'), ("functions", '"x"'), ("function_call", "5"), ("audio", '"x"'), ("prediction", "5"),
    ("composite", '"x"'), ("composite", '{"bogus": 1}', "composite.bogus"),
    ("composite", '{"params": []}', "composite.params"), ("composite", '{"profile": 5}', "composite.profile"),
    ("model", "5"), ("model", '""'),
    ("messages", '"hi"'), ("messages", "[]"), ("messages", "[5]", "messages[0]"),
    ("messages", '[{"content": "x"}]', "messages[0].role"),
    ("messages", '[{"role": "robot", "content": "x"}]', "messages[0].role"),
    ("messages", '[{"role": "user", "content": 5}]', "messages[0].content"),
    ("messages", '[{"role": "user", "content": [{"type": "bogus"}]}]', "messages[0].content[0].type"),
    ("messages", '[{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": "nope"}]',
     "messages[1].tool_calls"),
    ("messages", '[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]',
     "messages[0].tool_calls[0].function.arguments"),
    ("messages", '[{"role": "tool", "tool_call_id": 5, "content": "x"}]', "messages[0].tool_call_id"),
    # checked past the edge, by the engine's conversation check (its BadParameter names the field)
    ("tools", '[{"type": "function", "function": {"name": "x; rm -rf /"}}]', "tools[0].function.name"),
    ("tool_choice", '{"type": "function", "function": {"name": "g"}}'),
    ("messages", '[{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "nope", "content": "x"}]',
     "messages[1].tool_call_id"),
    ("messages", '[{"role": "user"}]', "messages[0].content"),
    ("messages", '[{"role": "user", "content": [{"type": "text", "text": 5}]}]', "messages[0].content[0].text"),
    ("messages", '[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]',
     "messages[0].tool_calls[0].function.arguments"),
]  # fmt: skip


def _case_id(case: tuple[str, ...]) -> str:
    return f"{case[0]}={case[1][:30]}"


@pytest.mark.parametrize("case", BAD_CHAT, ids=[_case_id(c) for c in BAD_CHAT])
def test_every_chat_field_is_checked_with_a_400_naming_it(server: Server, case: tuple[str, ...]):
    field, raw, *param = case
    assert_400_naming(post(server, chat_body(field, raw)), param[0] if param else field)


def test_the_table_has_the_bad_requests_of_the_issue():
    """Every value the issue found answered 200 or 500 is in the table."""
    found = {(c[0], c[1]) for c in BAD_CHAT}
    for case in [("n", "-1"), ("max_tokens", "-5"), ("max_tokens", '"many"'), ("max_tokens", "1e30"),
                 ("temperature", '"hot"'), ("temperature", "NaN"), ("temperature", "1e400"), ("stop", "{}"),
                 ("stream_options", '"x"'), ("metadata", '"x"'), ("user", "{}")]:  # fmt: skip
        assert case in found
    assert len(BAD_CHAT) >= 70


# Fields a mode cannot honour are refused for the modes, and left to the plain models beside them.
@pytest.mark.parametrize(("field", "raw"), [("n", "2"), ("logprobs", "true"), ("top_logprobs", "2")])
def test_what_a_mode_cannot_give_is_refused_for_modes_only(server: Server, field: str, raw: str):
    body = chat_body(field, raw, model="moa")
    if field == "n":  # n > 1 runs the mode n times; a stream sends one answer (test_provider_clients)
        body = body[:-1] + ', "stream": true}'
    error = assert_400_naming(post(server, body), field)
    assert error["code"] == "unsupported_parameter"
    if field == "n":
        assert post(server, chat_body(field, raw, model="plain-mock")).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", '{"model": "moa", "input": "hi"}'),
        ("/embeddings", '{"model": "moa-v1", "input": ["a", "b"]}'),
        ("/v1/images/generations", '{"model": "direct", "prompt": "a cat"}'),
        ("/v1/moderations", '{"model": "moa", "input": "hi"}'),
    ],
)
def test_an_endpoint_a_mode_cannot_serve_is_a_400_naming_the_model(server: Server, path: str, body: str):
    """A mode is a chat model: embeddings of it were LiteLLM's 500 "Not implemented yet!"."""
    error = assert_400_naming(post(server, body, path), "model")
    assert error["code"] == "model_not_supported" and "is a composite mode, a chat model" in error["message"]


GOOD_CHAT = [
    ("temperature", "0"), ("temperature", "2"), ("temperature", "null"), ("top_p", "1"), ("n", "1"),
    ("max_tokens", "1"), ("max_completion_tokens", "64"), ("stop", '["a", "b", "c", "d"]'), ("stop", '"x"'),
    ("metadata", '{"tags": ["a"], "team": "x"}'), ("user", '"u-1"'), ("seed", "42"),
    ("logit_bias", '{"50256": -100}'), ("logprobs", "false"), ("presence_penalty", "-2"),
    ("tool_choice", '"auto"'), ("response_format", '{"type": "json_object"}'),
    ("tools", '[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]'),
    ("composite", '{"profile": "mock"}'), ("x_vendor_field", '"passed on"'),
]  # fmt: skip


@pytest.mark.parametrize(("field", "raw"), GOOD_CHAT, ids=[f"{f}={r[:20]}" for f, r in GOOD_CHAT])
def test_valid_values_still_answer(server: Server, field: str, raw: str):
    response = post(server, chat_body(field, raw))
    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["message"]["content"] == ANSWER


def test_stream_options_with_a_stream_answer(server: Server):
    body = chat_body("stream_options", '{"include_usage": true}')[:-1] + ', "stream": true}'
    response = post(server, body)
    assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")


BAD_OTHER = [
    ("/v1/completions", '{"model": "direct", "prompt": 5}', "prompt"),
    ("/v1/completions", '{"model": "direct", "prompt": "q", "max_tokens": -1}', "max_tokens"),
    ("/v1/completions", '{"model": "direct", "prompt": "q", "logprobs": 6}', "logprobs"),
    ("/v1/completions", '{"model": "direct", "prompt": "q", "temperature": "hot"}', "temperature"),
    ("/v1/completions", '{"model": "direct", "prompt": "q", "echo": "x"}', "echo"),
    ("/v1/completions", '{"model": "direct", "prompt": "q", "n": -1}', "n"),
    ("/v1/responses", '{"model": "direct", "input": 5}', "input"),
    ("/v1/responses", '{"model": "direct", "input": "q", "max_output_tokens": 5}', "max_output_tokens"),
    ("/v1/responses", '{"model": "direct", "input": "q", "truncation": "x"}', "truncation"),
    (
        "/v1/responses",
        '{"model": "direct", "input": "q", "reasoning": {"effort": "max"}}',
        "reasoning.effort",
    ),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD_OTHER)
def test_completions_and_responses_fields_are_checked(server: Server, path: str, body: str, param: str):
    assert_400_naming(post(server, body, path), param)


def test_completions_still_answer(server: Server):
    response = post(
        server, '{"model": "direct", "prompt": "What is the capital of France?"}', "/v1/completions"
    )
    assert response.status_code == 200 and response.json()["choices"][0]["text"] == ANSWER


# -- a cap the request's own parameters hit -------------------------------------------------------


def test_a_run_the_requests_params_push_over_max_calls_is_a_400(server: Server):
    """moa-v1 allows 30 calls; 20 extra layers of 3 proposers need 64."""
    body = chat_body("composite", '{"params": {"extra_layers": 20}}', model="moa")
    error = assert_400_naming(post(server, body), "composite.params")
    assert "max_calls (30)" in error["message"]


@pytest.mark.parametrize(
    ("params", "param", "words"),
    [
        ('{"extra_layers": "x"}', "composite.params.extra_layers", "must be int, got str"),
        ('{"bogus": 1}', "composite.params.bogus", "has no parameter 'bogus'"),
        ('{"extra_layers": -1}', "composite.params.extra_layers", "must be at least 0"),
    ],
)
def test_a_bad_mode_parameter_is_a_400_naming_it(server: Server, params: str, param: str, words: str):
    error = assert_400_naming(
        post(server, chat_body("composite", f'{{"params": {params}}}', model="moa")), param
    )
    assert words in error["message"]


# -- the log ----------------------------------------------------------------------------------------


def test_a_clients_mistake_is_one_line_in_the_log_and_a_server_error_keeps_its_traceback(server: Server):
    start = len(server.log())
    mistakes = [
        chat_body("temperature", '"hot"'),
        chat_body("n", "-1"),
        chat_body("composite", '{"params": {"extra_layers": "x"}}', model="moa"),  # refused by the mode
        chat_body("composite", '{"params": {"extra_layers": 20}}', model="moa"),  # max_calls
        chat_body("model", '"no-such-model"'),
    ]
    for body in mistakes:
        assert 400 <= post(server, body).status_code < 500
    logged = server.log()[start:]
    assert "Traceback" not in logged, logged[-3000:]
    lines = [line for line in logged.splitlines() if "POST /v1/chat/completions 4" in line and ": " in line]
    ours = [line for line in lines if not line.startswith("INFO:")]  # uvicorn's access lines aside
    assert len(ours) == len(mistakes), logged[-3000:]
    assert "'temperature' must be a number from 0 to 2" in ours[0]

    start = len(server.log())
    failed = post(server, chat_body("composite", '{"profile": "failing"}'))
    assert failed.status_code >= 500
    assert "Traceback" in server.log()[start:]  # our bug or an upstream's: the whole story


# -- deep and huge bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/key/generate"]
)
def test_deeply_nested_bodies_are_a_400(server: Server, path: str):
    start = len(server.log())
    deep = b'{"model": "direct", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = post(server, deep, path)
    assert response.status_code == 400 and "nested more than" in response.json()["error"]["message"]
    nested = b'{"model": "direct", "input": ' + b"[" * 900 + b"]" * 900 + b"}"  # parses, still too deep
    assert_400_naming(post(server, nested, path), "input")
    assert "Traceback" not in server.log()[start:]


def test_a_body_declared_over_the_limit_is_a_413_before_it_is_read(server: Server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {MASTER}\r\n".encode()
            + f"Content-Length: {body_check.MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        head = ""
        while "request_too_large" not in head and (chunk := conn.recv(65536)):
            head += chunk.decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert '"request_too_large"' in head


async def test_a_streamed_body_over_the_limit_is_a_413_without_reading_the_rest():
    from composite_cli.serve.edge import CompositeEdge

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the proxy must not see the request")

    chunk = b" " * (1 << 20)
    chunks = body_check.MAX_BODY_BYTES // len(chunk) + 8  # a few MB over the limit
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < chunks}

    replies: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        replies.append(message)

    edge = CompositeEdge(proxy, master_key=MASTER, introspection=proxy)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {MASTER}".encode())]}  # fmt: skip
    await edge(scope, receive, send)
    assert replies[0]["status"] == 413
    assert json.loads(replies[1]["body"])["error"]["code"] == "request_too_large"
    assert sent == body_check.MAX_BODY_BYTES // len(chunk) + 1  # stopped at the limit


# -- the rules themselves, in-process ---------------------------------------------------------------


def test_the_structure_walk_is_not_recursive():
    """A body nested as deep as json.loads allows is refused without a RecursionError."""
    for depth in (101, 900, 100_000):
        found = body_check.problem(b'{"model": "m", "messages": ' + b"[" * depth + b"]" * depth + b"}")
        assert found is not None and "nested more than 100 levels" in found.message


def test_a_non_finite_number_anywhere_is_refused():
    body = b'{"model": "m", "messages": [{"role": "user", "content": "q"}], "x_vendor": {"a": [NaN]}}'
    found = body_check.problem(body)
    assert found is not None and found.param == "x_vendor.a[0]"
