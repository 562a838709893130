"""Pilot tests of the Run screen: run, stream, cancel, follow-up prompts, errors, merged deltas,
and responsiveness during a 16-expert fan-out."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from test_tui_support import BROKEN, SIZE, engine_app, gate_calls, scripted_app, type_prompt, wait_until

from composite_cli.events import TokenDelta
from composite_cli.tui.bridge import EventBridge
from composite_cli.tui.demo import CallDelta, fanout_script
from composite_cli.tui.messages import EngineEvent, TextBatch
from composite_cli.tui.screens.help import HelpScreen
from composite_cli.tui.screens.run import RunScreen
from composite_cli.tui.screens.trace import TraceScreen


def _runs(home: Path) -> list[tuple]:
    db = sqlite3.connect(home / "traces.db")
    try:
        return db.execute("select mode, source, status, output from runs order by created_at").fetchall()
    finally:
        db.close()


async def _run(pilot, prompt: str) -> RunScreen:
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    await type_prompt(pilot, prompt)
    await pilot.press("ctrl+r")
    await wait_until(pilot, lambda: not screen.running)
    await pilot.pause()
    return screen


async def test_a_run_streams_its_answer_and_is_recorded(isolated_home: Path, fake_model):
    fake_model.add("Paris is the capital of France.")
    app = engine_app(isolated_home, mode="direct")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _run(pilot, "What is the capital of France?")
        assert screen.state.status == "ok"
        assert screen.state.answer == "Paris is the capital of France."
        assert "calls 1" in str(screen.query_one("#totals").render())
        assert screen.query_one("#prompt").text == ""  # ready for a follow-up
        app.services.runner.flush()
    assert _runs(isolated_home) == [("direct", "tui", "ok", "Paris is the capital of France.")]


async def test_esc_cancels_the_running_request_and_the_engine_records_it(
    isolated_home: Path, fake_model, monkeypatch
):
    gates = gate_calls(monkeypatch, fake_model, ["answer"])
    app = engine_app(isolated_home, mode="direct")
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        await type_prompt(pilot, "A question that takes long")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: any(i.is_call for i in screen.state.items.values()))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.running)
        await pilot.pause()
        assert screen.state.status == "cancelled"
        assert [i.status for i in screen.state.items.values()] == ["cancelled", "cancelled"]
        assert screen.messages == []  # a cancelled turn is not part of the conversation
        app.services.runner.flush()
        assert not gates["answer"].is_set()
    assert _runs(isolated_home)[0][2] == "cancelled"


async def test_a_follow_up_prompt_continues_the_conversation(isolated_home: Path, fake_model):
    fake_model.add("Paris.").add("About 2.1 million people.")
    app = engine_app(isolated_home, mode="direct")
    async with app.run_test(size=SIZE) as pilot:
        await _run(pilot, "What is the capital of France?")
        screen = await _run(pilot, "How many people live there?")
        assert screen.state.answer == "About 2.1 million people."
        assert [m["role"] for m in screen.messages] == ["user", "assistant", "user", "assistant"]
        await pilot.press("ctrl+n")
        assert screen.messages == []
    second = fake_model.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in second] == [
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
        ("user", "How many people live there?"),
    ]


async def test_a_failed_provider_is_a_notification_not_a_crash(isolated_home: Path, fake_model):
    fake_model.add(None, error=ConnectionError("provider unreachable"))
    app = engine_app(isolated_home, mode="direct")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _run(pilot, "hello")
        assert screen.state.status == "error"
        notes = [n.message for n in app._notifications]
        assert any("provider unreachable" in n for n in notes)
        assert "provider unreachable" in str(screen.query(".error").first().render())
        fake_model.add("Back online.")
        screen = await _run(pilot, "hello again")  # the app goes on
        assert screen.state.answer == "Back online."


async def test_a_bad_mode_shows_its_errors_with_lines(isolated_home: Path, fake_model):
    app = engine_app(isolated_home, mode="broken", extra_modes={"broken": BROKEN})
    async with app.run_test(size=SIZE) as pilot:
        screen = await _run(pilot, "hello")
        assert screen.state.status == "error"
        assert any("broken.yaml:10" in n.message for n in app._notifications)
    assert fake_model.requests == []


async def test_expert_text_streams_from_call_deltas(isolated_home: Path):
    """With the engine's CallDelta (stream_all), an expert's text shows before it finishes."""
    script = fanout_script(4, gate_at=0.5)
    app = scripted_app(isolated_home, [script])
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        await type_prompt(pilot, "openings?")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "mid" in script.reached)
        await pilot.pause(0.15)
        experts = [i for i in screen.state.items.values() if i.is_call]
        assert len(experts) == 4 and all(i.status == "running" for i in experts)
        assert all(i.text and i.chunks for i in experts)
        assert all(i.tokens_so_far().startswith("~") for i in experts)
        script.release("mid")
        await wait_until(pilot, lambda: not screen.running)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert isinstance(pilot.app.screen, TraceScreen)


class _Collector:
    def __init__(self):
        self.messages: list = []

    def post_message(self, message) -> bool:
        self.messages.append(message)
        return True


async def test_the_bridge_merges_token_deltas_to_at_most_20_a_second():
    target = _Collector()
    bridge = EventBridge(target, time.time, interval=0.05)  # type: ignore[arg-type]
    started = time.monotonic()
    for i in range(2000):
        bridge(TokenDelta("r", "s", "x"))
        bridge(CallDelta("r", f"c{i % 16}", "y"))
        if i % 100 == 0:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    bridge.flush()
    elapsed = time.monotonic() - started
    batches = [m for m in target.messages if isinstance(m, TextBatch)]
    assert len(batches) <= elapsed / 0.05 + 2
    assert "".join(b.answer for b in batches) == "x" * 2000
    assert sum(b.counts.get("c0", 0) for b in batches) == 125
    assert bridge.deltas == 4000


async def test_structural_events_keep_their_order_after_buffered_text():
    target = _Collector()
    bridge = EventBridge(target, lambda: 1.0, interval=10.0)  # type: ignore[arg-type]
    bridge(TokenDelta("r", "s", "Hello"))
    from composite_cli.events import RunFinished

    bridge(RunFinished("r", "ok", 1.0, 1, 1, 1, 0.0))
    assert [type(m) for m in target.messages] == [TextBatch, EngineEvent]


async def test_the_ui_stays_responsive_during_a_16_expert_fan_out(isolated_home: Path):
    experts = 16
    script = fanout_script(experts)
    script.pace = 0.0005  # about 350 events, streamed as fast as the loop can
    app = scripted_app(isolated_home, [script], delta_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        await type_prompt(pilot, "openings?")
        started = time.monotonic()
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(screen.state.items) > 8)
        t0 = time.monotonic()
        await pilot.press("f1")  # a key while experts stream
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), timeout=2)
        assert time.monotonic() - t0 < 1.0
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.running, timeout=30)
        elapsed = time.monotonic() - started
        bridge = screen.bridge
        assert bridge is not None and bridge.deltas > 250
        assert bridge.batches <= elapsed / 0.05 + 40  # merged: far fewer messages than deltas
        assert screen.state.status == "ok"
        assert len([i for i in screen.state.items.values() if i.is_call]) == experts + 1
