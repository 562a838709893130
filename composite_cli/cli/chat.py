"""`composite chat`: run a mode once, or talk to it interactively."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from composite_cli.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    cli_errors,
    fail,
    stderr_is_terminal,
    stdin_is_terminal,
    stdout_shares_stderr,
)
from composite_cli.cli.options import (
    AllowCodeOption,
    ConfigOption,
    DbOption,
    JsonOption,
    MaxTokensOption,
    ModelOption,
    NoContentOption,
    ProfileOption,
    TemperatureOption,
    settings_from,
)
from composite_cli.errors import one_line
from composite_cli.events import CallFinished, Event, RunStarted, StepFinished, StepStarted, TokenDelta

if TYPE_CHECKING:
    from composite_cli.engine.runtime import RunRequest, RunResult
    from composite_cli.events import Subscriber
    from composite_cli.runner import Runner

# Domain modules are imported inside the command so `composite --help` stays fast.

# Plain progress (stderr not a terminal): quiet for the first seconds, so a quick answer piped
# into a script adds nothing; then step starts and ends, and a heartbeat when nothing was printed.
PLAIN_AFTER_S = 5.0
HEARTBEAT_S = 10.0


class Progress:
    """Step progress on stderr while the answer streams.

    On a terminal: a dim line as each top-level step starts and ends. Otherwise (piped, a log
    file): plain lines without ANSI codes, once the run has taken `after_s` seconds: each
    top-level step's start and end, and a heartbeat (the step, elapsed time, calls so far)
    whenever nothing was printed for `every_s` seconds, so a long step is never silent."""

    def __init__(
        self,
        enabled: bool,
        *,
        plain: bool = False,
        after_s: float = PLAIN_AFTER_S,
        every_s: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.monotonic,
        printer: Printer | None = None,
    ):
        self.enabled = enabled
        self.printer = printer  # the answer on stdout: a progress line never joins its last line
        self.plain = plain
        self.after_s = after_s
        self.every_s = every_s
        self.clock = clock
        self.names: dict[str, str] = {}
        # Plain mode's state, shared with the heartbeat thread.
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, str, float]] = {}  # top-level step: name, kind, start
        self._calls = 0
        self._started: float | None = None
        self._last_line: float | None = None

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        if self.plain:
            self._plain(event)
        elif isinstance(event, StepStarted) and event.depth == 0:
            self.names[event.step_id] = event.name
            self._own_line()
            sys.stderr.write(f"\x1b[2m· {event.name} ({event.kind})…\x1b[0m\n")
            sys.stderr.flush()
        elif isinstance(event, StepFinished) and event.step_id in self.names:
            mark = "✓" if event.status == "ok" else "✗"
            name = self.names.pop(event.step_id)
            self._own_line()
            sys.stderr.write(f"\x1b[2m{mark} {name} {event.latency_ms / 1000:.1f}s\x1b[0m\n")
            sys.stderr.flush()

    # -- plain lines --------------------------------------------------------------------------
    def _plain(self, event: Event) -> None:
        with self._lock:
            now = self.clock()
            if isinstance(event, RunStarted):
                if self._started is None:
                    self._started = now
            elif isinstance(event, CallFinished):
                self._calls += 1
            elif isinstance(event, StepStarted) and event.depth == 0:
                self._running[event.step_id] = (event.name, event.kind, now)
                if self._showing(now):
                    self._line(f"{event.name} ({event.kind}) started", now)
            elif isinstance(event, StepFinished) and event.step_id in self._running:
                name, kind, _ = self._running.pop(event.step_id)
                if self._showing(now):
                    self._line(f"{name} ({kind}) {event.status} after {event.latency_ms / 1000:.1f}s", now)

    def _showing(self, now: float) -> bool:
        return self._started is not None and now - self._started >= self.after_s

    def _own_line(self) -> None:
        if self.printer is not None:
            self.printer.make_room()

    def _line(self, text: str, now: float) -> None:
        self._own_line()
        sys.stderr.write(f"composite: {text}\n")
        sys.stderr.flush()
        self._last_line = now

    def tick(self) -> None:
        """Print a heartbeat if one is due (plain mode; called by `heartbeat()`'s thread)."""
        with self._lock:
            now = self.clock()
            if not (self.enabled and self.plain and self._running and self._showing(now)):
                return
            if self._last_line is not None and now - self._last_line < self.every_s:
                return
            name, kind, started = next(iter(self._running.values()))
            calls = f"{self._calls} call{'' if self._calls == 1 else 's'} so far"
            self._line(f"{name} ({kind}) running for {now - started:.0f}s, {calls}", now)

    @contextmanager
    def heartbeat(self, poll_s: float = 1.0) -> Iterator[None]:
        """While the body runs, check every `poll_s` whether a heartbeat line is due (in a thread,
        so a model call that holds the event loop cannot silence it)."""
        if not (self.enabled and self.plain):
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(poll_s):
                self.tick()

        thread = threading.Thread(target=beat, name="composite-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class Printer:
    """Writes the final step's tokens to stdout as they arrive."""

    def __init__(self, enabled: bool, *, shares_stderr: bool | None = None):
        self.enabled = enabled
        self.printed = False
        self.mid_line = False  # the answer's last text did not end its line
        # Only where stderr lands in the same place can a progress line join the answer's line;
        # elsewhere (`> answer.txt`, a pipe) stdout keeps exactly the answer's text.
        self.shares_stderr = stdout_shares_stderr() if shares_stderr is None else shares_stderr

    def __call__(self, event: Event) -> None:
        if self.enabled and isinstance(event, TokenDelta) and event.text:
            sys.stdout.write(event.text)
            sys.stdout.flush()
            self.printed = True
            self.mid_line = not event.text.endswith("\n")

    def make_room(self) -> None:
        """Before a progress line on stderr: end the answer's line if both go to one place."""
        if self.shares_stderr:
            self.end_line()

    def end_line(self) -> None:
        """End the answer's line (after the run, or before a progress line on the same screen)."""
        if self.mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.mid_line = False


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`--param key=value` (value read as YAML: 2 → int, true → bool)."""
    from composite_cli.yamlfile import YamlSyntaxError, load_yaml_text

    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"--param expects KEY=VALUE, got {item!r}", 2)
        try:
            value = load_yaml_text(raw) if raw.strip() else ""
        except YamlSyntaxError:
            value = raw
        params[key.strip()] = value
    return params


def chat(
    prompt: Annotated[
        str | None,
        typer.Argument(
            help="The prompt. Omit it to read stdin, or to chat interactively on a terminal.",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", "-m", help="Mode to run (short names work: moa → moa-v1).")
    ] = "direct",
    system: Annotated[
        str | None,
        typer.Option(
            "--system", "-s", help="System prompt to send with the conversation.", show_default=False
        ),
    ] = None,
    temperature: TemperatureOption = None,
    max_tokens: MaxTokensOption = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Override a mode parameter for this run: KEY=VALUE (e.g. max_rounds=1). Repeatable.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    trace: Annotated[
        bool,
        typer.Option("--trace", help="After the answer, print the run's step tree (model, latency, tokens)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not print step progress on stderr.")
    ] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help=f"Exit 0 on a partial answer (a cap stopped the run early) instead of {EXIT_PARTIAL}.",
        ),
    ] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    model: ModelOption = None,
    db: DbOption = None,
    no_content: NoContentOption = False,
    allow_code: AllowCodeOption = None,
) -> None:
    """Run a mode and print its answer, streaming the final step.

    Examples:

      composite chat --mode moa-v1 "Name three classical chess openings."

      echo "What is 17 * 23?" | composite chat -m reflect --trace

      composite chat -m moa          # interactive: the conversation is kept between turns

    Exit codes: 0 answered, 1 failed, 2 bad usage, 3 partial answer (a cap such as max_iterations
    stopped the run; --allow-partial exits 0), 130 interrupted.
    """
    from composite_cli.runner import Runner

    with cli_errors():
        settings = settings_from(config, profile, model, db, no_content, allow_code)
        runner = Runner(settings)
        runner.library.load(mode)  # fail fast on an unknown or broken mode
        generation: dict[str, Any] = {}
        if temperature is not None:
            generation["temperature"] = temperature
        if max_tokens is not None:
            generation["max_tokens"] = max_tokens
        params = parse_params(param)
        base: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        try:
            if prompt is None and stdin_is_terminal():
                _interactive(runner, mode, base, generation, params, as_json, trace, quiet)
                return
            text = prompt if prompt is not None else sys.stdin.read()
            if not text.strip():
                raise fail("empty prompt (give one as an argument or on stdin)", 2)
            messages = [*base, {"role": "user", "content": text}]
            result = _one_turn(runner, mode, messages, generation, params, as_json, trace, quiet)
        finally:
            runner.close()
        if result.status == "partial" and not allow_partial:
            raise typer.Exit(EXIT_PARTIAL)


def run_turn(runner: Runner, mode: str, request: RunRequest, subscribers: list[Subscriber]) -> RunResult:
    """Run one turn: the one place `chat` starts the engine."""
    import asyncio

    # -- warm worker (composite_cli/worker): run there when it is usable, else in-process ----------
    from composite_cli.worker.client import run_turn as run_in_worker

    result = run_in_worker(runner.settings, mode, request, subscribers)
    if result is not None:
        return result
    # -- end warm worker --
    return asyncio.run(runner.run(mode, request, subscribers=subscribers))


def partial_line(result: RunResult) -> str:
    """The one stderr line that says an answer is partial and which cap stopped the run."""
    from composite_cli.runner import stop_sentence

    return f"Partial: {stop_sentence(result.mode, result.stopped_by)} (run {result.run_id})."


def _one_turn(
    runner: Runner,
    mode: str,
    messages: list[dict[str, Any]],
    generation: dict[str, Any],
    params: dict[str, Any],
    as_json: bool,
    trace: bool,
    quiet: bool,
) -> RunResult:
    from composite_cli.cli.render import step_tree
    from composite_cli.engine.runtime import RunRequest
    from composite_cli.runner import completion_dict

    printer = Printer(enabled=not as_json)
    terminal = stderr_is_terminal()
    # On a terminal --json keeps the screen to the JSON; piped, stdout stays pure JSON anyway.
    progress = Progress(
        enabled=not quiet and not (as_json and terminal),
        plain=not terminal,
        after_s=PLAIN_AFTER_S,
        every_s=HEARTBEAT_S,
        printer=printer,
    )
    request = RunRequest(
        messages=messages, generation=generation, params=params, source="chat", stream=not as_json
    )
    with progress.heartbeat():
        result = run_turn(runner, mode, request, [progress, printer])
    if as_json:
        spec = runner.mode(mode)
        typer.echo(
            json.dumps(
                completion_dict(result, f"composite/{spec.name}", int(time.time())),
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        if printer.printed:
            printer.end_line()
        else:
            # A final tool call has no text to stream: show it.
            for call in result.message.get("tool_calls") or []:
                fn = call.get("function", {})
                sys.stdout.write(f"[tool call] {fn.get('name')}({fn.get('arguments')})")
            sys.stdout.write("\n")
            sys.stdout.flush()
    if trace:
        runner.flush()
        assert runner.store is not None
        tree = step_tree(runner.store.get_run(result.run_id), runner.store.run_steps(result.run_id))
        typer.echo(tree, err=as_json)
    if result.status == "partial":
        typer.echo(partial_line(result), err=True)
    return result


def _interactive(
    runner: Runner,
    mode: str,
    base: list[dict[str, Any]],
    generation: dict[str, Any],
    params: dict[str, Any],
    as_json: bool,
    trace: bool,
    quiet: bool,
) -> None:
    name = runner.mode(mode).name
    typer.echo(
        f"Chatting with {name} (profile {runner.settings.profile.name}). "
        "Ctrl-D or /exit to leave; Ctrl-C stops an answer.",
        err=True,
    )
    messages = list(base)
    while True:
        try:
            line = input(f"{name}> ")
        except EOFError:
            typer.echo("", err=True)
            return
        except KeyboardInterrupt:
            typer.echo("", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if line.strip() in ("/exit", "/quit"):
            return
        if not line.strip():
            continue
        turn = [*messages, {"role": "user", "content": line}]
        try:
            result = _one_turn(runner, mode, turn, generation, params, as_json, trace, quiet)
        except KeyboardInterrupt:
            typer.echo("\n(answer cancelled)", err=True)
            continue
        except Exception as exc:
            message = one_line(exc)
            if message is None:
                raise
            typer.echo(f"Error: {message}", err=True)
            continue
        messages = [*turn, result.message]
