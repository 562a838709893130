"""What the server's edge checks in a request body before the LiteLLM proxy sees it.

Every JSON body: at most MAX_BODY_BYTES (413 over it), valid JSON, nested at most MAX_DEPTH levels,
no NaN or infinite number anywhere. The bodies of chat completions, text completions and responses:
every field OpenAI documents, type and range, by one table per endpoint (below). A body that breaks
a rule gets a `Problem`: an HTTP status, the field (OpenAI's `param`), one line, a code. The proxy
alone answers many of these 200 (`max_tokens: "many"`, `temperature: NaN`), some 500 (`n: -1`, a
number as content) and some 400 with a traceback in the message.

Ranges are OpenAI's: temperature 0..2, top_p 0..1, penalties -2..2, logit_bias values -100..100,
top_logprobs 0..20, `stop` a string or up to 4, `metadata` up to 16 keys of up to 64 characters
(its values are free: LiteLLM's own `metadata`, such as `tags`, rides there). Where OpenAI names no
upper bound: `n` at most 128, token counts at most MAX_TOKENS. A null is "not given", as for OpenAI.
Fields not in a table go on untouched (LiteLLM passes provider-specific ones on).

A composite mode answers without log probabilities or audio, so for the models that are modes the
fields in MODE_UNSUPPORTED are refused rather than ignored. `n` > 1 runs the mode n times (one choice
per run, see composite_cli.provider); a stream sends one answer, so there `n` must be 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from litellm.types.llms.openai import ValidUserMessageContentTypes

from composite_cli.generation_ranges import MAX_TOKENS, TEMPERATURE
from composite_cli.jsonvalues import MAX_DEPTH, json_type  # 100 levels, as for every JSON from outside

# The part types LiteLLM accepts in a user message (anything else makes it answer 500).
USER_PART_TYPES = tuple(ValidUserMessageContentTypes)

MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_N = 128
INT64 = (-(1 << 63), (1 << 63) - 1)


@dataclass(frozen=True)
class Problem:
    """Why a request is refused: what the client sees (OpenAI's error shape) and the log line."""

    message: str
    param: str | None = None
    code: str = "invalid_value"
    status: int = 400


Check = Callable[[Any, str], Problem | None]  # (value, its param path) -> what is wrong


# -- value descriptions ------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (int, float, str)) else json_type(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong_type(param: str, expected: str, value: Any) -> Problem:
    return Problem(f"'{param}' must be {expected}, not {json_type(value)}", param, "invalid_type")


# -- the checks a table is built from --------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int, high: int) -> Check:
    def check(value: Any, param: str) -> Problem | None:
        expected = f"an integer from {low} to {high}"
        if not _is_int(value):
            return _wrong_type(param, expected, value)
        if not low <= value <= high:
            return Problem(f"'{param}' must be {expected}, not {_show(value)}", param)
        return None

    return check


def number(low: float, high: float) -> Check:
    def check(value: Any, param: str) -> Problem | None:
        expected = f"a number from {low:g} to {high:g}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return _wrong_type(param, expected, value)
        if not math.isfinite(value) or not low <= value <= high:
            return Problem(f"'{param}' must be {expected}, not {_show(value)}", param)
        return None

    return check


def boolean(value: Any, param: str) -> Problem | None:
    return None if isinstance(value, bool) else _wrong_type(param, "true or false", value)


def string(choices: Collection[str] = (), *, nonempty: bool = False) -> Check:
    def check(value: Any, param: str) -> Problem | None:
        if not isinstance(value, str):
            return _wrong_type(param, "a string", value)
        if choices and value not in choices:
            return Problem(f"'{param}' must be one of {', '.join(choices)}, not {_show(value)}", param)
        if nonempty and not value.strip():
            return Problem(f"'{param}' must not be empty", param)
        return None

    return check


def array(item: Check | None = None, *, min_items: int = 0, max_items: int | None = None) -> Check:
    def check(value: Any, param: str) -> Problem | None:
        if not isinstance(value, list):
            return _wrong_type(param, "a list", value)
        if len(value) < min_items:
            return Problem(f"'{param}' must hold at least {min_items} item(s)", param)
        if max_items is not None and len(value) > max_items:
            return Problem(f"'{param}' may hold at most {max_items} items, not {len(value)}", param)
        if item is not None:
            for i, element in enumerate(value):
                if found := item(element, f"{param}[{i}]"):
                    return found
        return None

    return check


def obj(
    fields: Mapping[str, Check] | None = None,
    *,
    required: Collection[str] = (),
    closed: bool = False,
    max_keys: int | None = None,
    max_key_length: int | None = None,
    values: Check | None = None,
) -> Check:
    """An object: known fields checked (null counts as absent), `required` present, and with
    `closed` no other key."""

    def check(value: Any, param: str) -> Problem | None:
        if not isinstance(value, dict):
            return _wrong_type(param, "an object", value)
        return check_fields(value, fields or {}, required, param, closed=closed) or _check_map(value, param)

    def _check_map(value: dict[str, Any], param: str) -> Problem | None:
        if max_keys is not None and len(value) > max_keys:
            return Problem(f"'{param}' may hold at most {max_keys} keys, not {len(value)}", param)
        for key, element in value.items():
            if max_key_length is not None and len(key) > max_key_length:
                return Problem(f"'{param}' keys may be at most {max_key_length} characters", param)
            if values is not None and (found := values(element, f"{param}.{key}")):
                return found
        return None

    return check


def one_of(expected: str, *checks: Check) -> Check:
    """The value passes one of `checks`; when it passes none, the error of the first check of its
    JSON type (so a list gets the list's own complaint), else a type error naming `expected`."""

    def check(value: Any, param: str) -> Problem | None:
        problems = [c(value, param) for c in checks]
        if any(p is None for p in problems):
            return None
        specific = [p for p in problems if p is not None and p.code != "invalid_type"]
        return specific[0] if specific else _wrong_type(param, expected, value)

    return check


def _not_null(value: Any, param: str) -> Problem | None:
    return _wrong_type(param, "a value", value) if value is None else None


def check_fields(
    body: Mapping[str, Any],
    table: Mapping[str, Check],
    required: Collection[str],
    where: str = "",
    *,
    closed: bool = False,
) -> Problem | None:
    """Check an object's fields against a table."""
    prefix = f"{where}." if where else ""
    for name in required:
        if body.get(name) is None:
            param = prefix + name
            return Problem(f"'{param}' is required", param, "missing_required_parameter")
    for name, value in body.items():
        rule = table.get(name)
        if rule is None:
            if closed:
                param = prefix + name
                known = ", ".join(table)
                return Problem(f"'{param}' is not a known field (known: {known})", param, "unknown_parameter")
            continue
        if value is not None and (found := rule(value, prefix + name)):
            return found
    return None


# -- the tables ------------------------------------------------------------------------------------

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority")

_TEXT = string()
_STOP = one_of("a string or a list of up to 4 strings", _TEXT, array(_TEXT, max_items=4))
_FUNCTION = obj(
    {"name": string(nonempty=True), "description": _TEXT, "parameters": obj(), "strict": boolean},
    required=("name",),
)
_TOOL = obj({"type": string(nonempty=True), "function": _FUNCTION}, required=("type",))
_TOOL_CALL = obj(
    {
        "id": _TEXT,
        "type": _TEXT,
        "function": obj({"name": string(nonempty=True), "arguments": _TEXT}, required=("name",)),
    },
    required=("id", "function"),
)
_PART = obj({"type": string(nonempty=True)}, required=("type",))
_MESSAGE = obj(
    {
        "role": string(ROLES),
        "content": one_of("a string or a list of content parts", _TEXT, array(_PART)),
        "name": _TEXT,
        "tool_calls": array(_TOOL_CALL),
        "tool_call_id": _TEXT,
        "function_call": obj({"name": _TEXT, "arguments": _TEXT}),
        "refusal": _TEXT,
        "audio": obj(),
    },
    required=("role",),
)
_METADATA = obj(max_keys=16, max_key_length=64)
_STREAM_OPTIONS = obj({"include_usage": boolean, "include_obfuscation": boolean}, closed=True)
_COMPOSITE = obj({"profile": string(nonempty=True), "params": obj()}, closed=True)
_TOKENS = integer(1, MAX_TOKENS)

# Fields every generation endpoint shares.
_COMMON: dict[str, Check] = {
    "model": string(nonempty=True),
    "temperature": number(*TEMPERATURE),
    "top_p": number(0, 1),
    "stream": boolean,
    "stream_options": _STREAM_OPTIONS,
    "user": _TEXT,
    "metadata": _METADATA,
    "service_tier": string(SERVICE_TIERS),
    "composite": _COMPOSITE,  # composite's own options: profile and mode params
}

_RESPONSE_FORMAT = obj(
    {
        "type": string(("text", "json_object", "json_schema")),
        "json_schema": obj({"name": string(nonempty=True), "schema": obj(), "strict": boolean}),
    },
    required=("type",),
)


def _response_format(value: Any, param: str) -> Problem | None:
    """OpenAI's response_format; type `json_schema` needs its `json_schema` object, and that a name."""
    found = _RESPONSE_FORMAT(value, param)
    if found is not None or value.get("type") != "json_schema":
        return found
    return check_fields(value, {}, ("json_schema",), param) or check_fields(
        value["json_schema"], {}, ("name",), f"{param}.json_schema"
    )


CHAT: dict[str, Check] = {
    **_COMMON,
    "messages": array(_not_null, min_items=1),  # each message: check_messages
    "audio": obj(),
    "frequency_penalty": number(-2, 2),
    "presence_penalty": number(-2, 2),
    "function_call": one_of("'none', 'auto' or an object", string(("none", "auto")), obj()),
    "functions": array(_FUNCTION, max_items=128),
    "logit_bias": obj(values=number(-100, 100)),
    "logprobs": boolean,
    "top_logprobs": integer(0, 20),
    "max_tokens": _TOKENS,
    "max_completion_tokens": _TOKENS,
    "modalities": array(string(("text", "audio")), max_items=2),
    "n": integer(1, MAX_N),
    "parallel_tool_calls": boolean,
    "prediction": obj({"type": string(("content",))}, required=("type",)),
    "prompt_cache_key": _TEXT,
    "reasoning_effort": string(EFFORTS),
    "response_format": _response_format,
    "safety_identifier": _TEXT,
    "seed": integer(*INT64),
    "stop": _STOP,
    "store": boolean,
    "tool_choice": one_of(
        "'none', 'auto', 'required' or an object",
        string(("none", "auto", "required")),
        obj({"type": string(nonempty=True)}, required=("type",)),
    ),
    "tools": array(_TOOL, max_items=128),
    "verbosity": string(("low", "medium", "high")),
    "web_search_options": obj(),
}

COMPLETIONS: dict[str, Check] = {
    **_COMMON,
    "prompt": one_of("a string or a list", _TEXT, array(_not_null, min_items=1)),
    "best_of": integer(1, 20),
    "echo": boolean,
    "frequency_penalty": number(-2, 2),
    "presence_penalty": number(-2, 2),
    "logit_bias": obj(values=number(-100, 100)),
    "logprobs": integer(0, 5),
    "max_tokens": _TOKENS,
    "n": integer(1, MAX_N),
    "seed": integer(*INT64),
    "stop": _STOP,
    "suffix": _TEXT,
}

RESPONSES: dict[str, Check] = {
    **_COMMON,
    "input": one_of("a string or a list of input items", _TEXT, array(_not_null)),
    "instructions": _TEXT,
    "max_output_tokens": integer(16, MAX_TOKENS),
    "max_tool_calls": integer(1, MAX_TOKENS),
    "parallel_tool_calls": boolean,
    "previous_response_id": _TEXT,
    "reasoning": obj({"effort": string(EFFORTS), "summary": _TEXT}),
    "store": boolean,
    "background": boolean,
    "text": obj(),
    "tool_choice": one_of("'none', 'auto', 'required' or an object", _TEXT, obj()),
    "tools": array(obj({"type": string(nonempty=True)}, required=("type",)), max_items=128),
    "top_logprobs": integer(0, 20),
    "truncation": string(("auto", "disabled")),
    "include": array(_TEXT),
    "prompt_cache_key": _TEXT,
    "safety_identifier": _TEXT,
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    table: Mapping[str, Check]
    required: tuple[str, ...]


CHAT_ENDPOINT = Endpoint("chat completions", CHAT, ("model", "messages"))
COMPLETIONS_ENDPOINT = Endpoint("completions", COMPLETIONS, ("model", "prompt"))
RESPONSES_ENDPOINT = Endpoint("responses", RESPONSES, ("model", "input"))
_RESPONSES_PATHS = frozenset({"/responses", "/v1/responses", "/openai/v1/responses"})

# What a mode cannot give, refused for the models that are modes instead of being ignored:
# field -> the values that are fine.
MODE_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "best_of": lambda v: v == 1,
    "logprobs": lambda v: not v,
    "top_logprobs": lambda v: not v,
    "echo": lambda v: not v,
    "audio": lambda v: not v,
    "modalities": lambda v: v == ["text"],
    "prediction": lambda v: not v,
}
# ... and what a streamed mode cannot give (the provider answers the same with a 400 naming it).
MODE_STREAM_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {"n": lambda v: v == 1}


def endpoint_for(method: str | None, path: str) -> Endpoint | None:
    """The table for a request, or None when only the generic JSON checks apply."""
    if method != "POST":
        return None
    if path.endswith("/chat/completions"):
        return CHAT_ENDPOINT
    if path.endswith("/completions"):
        return COMPLETIONS_ENDPOINT  # /v1/completions, /engines/{model}/completions, ...
    if path in _RESPONSES_PATHS:
        return RESPONSES_ENDPOINT
    return None


# Endpoints a mode cannot serve (it is a chat model): asked of a mode, a 400 naming `model`, not
# the proxy's 500 ("Not implemented yet!"). /v1/messages is served (LiteLLM turns it into a chat call).
_NOT_FOR_MODES = (
    "/embeddings",
    "/images/generations",
    "/images/edits",
    "/audio/speech",
    "/moderations",
    "/rerank",
)


def check_mode_endpoint(path: str, data: Any, mode_models: Collection[str]) -> Problem | None:
    """A request for embeddings, images, speech, moderation or reranking that names a mode."""
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, str) and model in mode_models and path.rstrip("/").endswith(_NOT_FOR_MODES):
        what = path.rstrip("/").rsplit("/v1", 1)[-1].lstrip("/") or path
        return Problem(
            f"'{model}' is a composite mode, a chat model: it answers chat completions, completions "
            f"and responses, not {what}",
            "model",
            "model_not_supported",
        )
    return None


def is_chat_completion(method: str | None, path: str) -> bool:
    return endpoint_for(method, path) is CHAT_ENDPOINT


# -- the checks the edge runs ----------------------------------------------------------------------


def parse(body: bytes) -> tuple[Any, Problem | None]:
    """The body as JSON, or the problem with it: too large, not JSON, too deep, a non-finite number."""
    if len(body) > MAX_BODY_BYTES:
        return None, too_large()
    try:
        data = json.loads(body or b"null")
    except RecursionError:
        return None, _too_deep(None)
    except ValueError:
        return None, Problem("the request body is not valid JSON", None, "invalid_json")
    return data, _check_structure(data)


def too_large() -> Problem:
    return Problem(
        f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB", None, "request_too_large", 413
    )


def _too_deep(field: str | None) -> Problem:
    """`field`: the top-level field that holds the deep part, when known."""
    what = f"'{field}'" if field else "the request body"
    return Problem(f"{what} is nested more than {MAX_DEPTH} levels deep", field)


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _check_structure(data: Any) -> Problem | None:
    """Depth and non-finite numbers, walked without recursion (the body may be hostile)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, parts = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            param = _path(parts) or None
            return Problem(f"'{param}' must be a finite number, not {value}", param)
        if isinstance(value, (dict, list)):
            if len(parts) >= MAX_DEPTH:
                return _too_deep(str(parts[0]) if isinstance(data, dict) else None)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*parts, k)) for k, v in items)
    return None


def check_messages(messages: list[Any]) -> Problem | None:
    """Each message by the message table, and the part types LiteLLM accepts from a user."""
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if found := _MESSAGE(message, param):
            return found
        content = message.get("content")
        if message["role"] == "user" and isinstance(content, list):
            for j, part in enumerate(content):
                if part["type"] not in USER_PART_TYPES:
                    known = ", ".join(USER_PART_TYPES)
                    where = f"{param}.content[{j}].type"
                    return Problem(f"'{where}' {part['type']!r} is not a user content type ({known})", where)
    return None


def check_body(endpoint: Endpoint, data: Any, mode_models: Collection[str] = ()) -> Problem | None:
    """Every field of a parsed body by its endpoint's table; `mode_models` are the model names
    that are composite modes (MODE_UNSUPPORTED applies to them)."""
    if not isinstance(data, dict):
        return Problem("the request body must be a JSON object", None, "invalid_type")
    found = check_fields(data, endpoint.table, endpoint.required)
    if found is None and endpoint is CHAT_ENDPOINT:
        found = check_messages(data["messages"])
    if found is None and data.get("model") in mode_models:
        for name, fine in MODE_UNSUPPORTED.items():
            if name in endpoint.table and data.get(name) is not None and not fine(data[name]):
                return Problem(
                    f"'{name}' {_show(data[name])} is not supported by composite modes "
                    "(a mode gives its answers without log probabilities or audio)",
                    name,
                    "unsupported_parameter",
                )
        for name, fine in MODE_STREAM_UNSUPPORTED.items() if data.get("stream") else ():
            if name in endpoint.table and data.get(name) is not None and not fine(data[name]):
                return Problem(
                    f"'{name}' {_show(data[name])} is not supported with stream=true by composite modes "
                    "(a streamed mode sends one answer); send n=1 or stream=false",
                    name,
                    "unsupported_parameter",
                )
    return found


def problem(
    body: bytes, endpoint: Endpoint = CHAT_ENDPOINT, mode_models: Collection[str] = ()
) -> Problem | None:
    """What is wrong with a request body, or None when it may go on."""
    data, found = parse(body)
    return found or check_body(endpoint, data, mode_models)
