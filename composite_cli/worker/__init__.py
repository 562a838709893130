"""The warm worker: a per-user background process that keeps LiteLLM (and the embedded model)
loaded, so `composite chat` does not pay the import on every command.

It works like `dmypy` or `ollama serve`: the first command that needs it starts it (detached), later
commands connect to its Unix socket, and it exits after an idle period. A command uses it only when
it is safe: same composite code and the same environment (compared as hashes); otherwise, or with
`COMPOSITE_NO_WORKER=1` / `composite --no-worker ...`, the command runs in-process as before.

- `paths`: where the socket lives, and the checks that keep it private to its user.
- `identity`: the code and environment fingerprints a client and a worker compare.
- `protocol`: the JSON-lines messages (requests, engine events, results, errors).
- `server`: the worker itself (asyncio); `client`: what the CLI calls.
"""
