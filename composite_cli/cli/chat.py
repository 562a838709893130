"""`composite chat`: run a mode once, or talk to it interactively."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from composite_cli.cli.errors import EXIT_INTERRUPTED, cli_errors, error_line, fail
from composite_cli.cli.options import (
    ConfigOption,
    DbOption,
    JsonOption,
    ModelOption,
    NoContentOption,
    ProfileOption,
    settings_from,
)
from composite_cli.events import Event, StepFinished, StepStarted, TokenDelta

if TYPE_CHECKING:
    from composite_cli.engine.runtime import RunResult
    from composite_cli.runner import Runner

# Domain modules are imported inside the command so `composite --help` stays fast.


class Progress:
    """Prints each top-level step as it starts and ends, on stderr (dim), while the answer streams."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.names: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        if isinstance(event, StepStarted) and event.depth == 0:
            self.names[event.step_id] = event.name
            sys.stderr.write(f"\x1b[2m· {event.name} ({event.kind})…\x1b[0m\n")
            sys.stderr.flush()
        elif isinstance(event, StepFinished) and event.step_id in self.names:
            mark = "✓" if event.status == "ok" else "✗"
            name = self.names.pop(event.step_id)
            sys.stderr.write(f"\x1b[2m{mark} {name} {event.latency_ms / 1000:.1f}s\x1b[0m\n")
            sys.stderr.flush()


class Printer:
    """Writes the final step's tokens to stdout as they arrive."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.printed = False

    def __call__(self, event: Event) -> None:
        if self.enabled and isinstance(event, TokenDelta):
            sys.stdout.write(event.text)
            sys.stdout.flush()
            self.printed = True


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
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", "-t", help="Sampling temperature for the final step.", show_default=False
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", help="Token limit for the final step's answer.", show_default=False),
    ] = None,
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
    config: ConfigOption = None,
    profile: ProfileOption = None,
    model: ModelOption = None,
    db: DbOption = None,
    no_content: NoContentOption = False,
) -> None:
    """Run a mode and print its answer, streaming the final step.

    Examples:

      composite chat --mode moa-v1 "Name three classical chess openings."

      echo "What is 17 * 23?" | composite chat -m reflect --trace

      composite chat -m moa          # interactive: the conversation is kept between turns
    """
    from composite_cli.runner import Runner

    with cli_errors():
        settings = settings_from(config, profile, model, db, no_content)
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
            if prompt is None and sys.stdin.isatty():
                _interactive(runner, mode, base, generation, params, as_json, trace, quiet)
                return
            text = prompt if prompt is not None else sys.stdin.read()
            if not text.strip():
                raise fail("empty prompt (give one as an argument or on stdin)", 2)
            messages = [*base, {"role": "user", "content": text}]
            _one_turn(runner, mode, messages, generation, params, as_json, trace, quiet)
        finally:
            runner.close()


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
    import asyncio

    from composite_cli.cli.render import step_tree
    from composite_cli.engine.runtime import RunRequest
    from composite_cli.runner import completion_dict

    printer = Printer(enabled=not as_json)
    progress = Progress(enabled=not quiet and not as_json and sys.stderr.isatty())
    request = RunRequest(
        messages=messages, generation=generation, params=params, source="chat", stream=not as_json
    )
    result = asyncio.run(runner.run(mode, request, subscribers=[progress, printer]))
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
        if not printer.printed:
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
            message = error_line(exc)
            if message is None:
                raise
            typer.echo(f"Error: {message}", err=True)
            continue
        messages = [*turn, result.message]
