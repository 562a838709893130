"""TA's TUI checks (issue 17 item 8): every text on every screen is readable in the dark and the
light theme at 80x24 (a contrast check over what the compositor draws), and snapshots of the Run
screen after a run in both themes at 80x24."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui_support import scripted_app, seeded_db, settle, type_prompt, wait_until
from textual.color import Color

from composite_cli.tui.demo import fanout_script

SMALL = (80, 24)
THEMES = ("textual-dark", "textual-light")
SCREENS = ("run", "traces", "evals", "dashboard", "modes", "trace", "help", "new-eval")
MIN_CONTRAST = 3.0  # WCAG's floor for large text; muted labels sit above it, body text well above


def contrast(fg: Color, bg: Color) -> float:
    """The WCAG contrast ratio of two opaque colours (1 to 21)."""

    def luminance(c: Color) -> float:
        def channel(v: int) -> float:
            s = v / 255
            return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def unreadable(app: Any, region: Any = None) -> list[str]:
    """The text the screen shows with too little contrast: 'text' fg/bg ratio per segment (only
    inside `region` when given: a modal's box, not the faded screen behind it)."""
    update = app.screen._compositor.render_full_update()
    found = []
    for y, line in enumerate(update.strips):
        x = 0
        for strip in line:
            for segment in strip:
                start, x = x, x + segment.cell_length
                if region is not None and not (
                    region.y <= y < region.bottom and region.x <= start < region.right
                ):
                    continue
                text, style = segment.text.strip(), segment.style
                if text == "X":
                    continue  # an unticked checkbox's X, faint on purpose (the "off" state)
                if not any(ch.isalnum() for ch in text) or style is None or style.color is None:
                    continue
                if style.bgcolor is None or style.reverse:
                    continue  # no colours of its own, or a highlight (the colours swap)
                fg = Color.from_rich_color(style.color)
                bg = Color.from_rich_color(style.bgcolor)
                if style.dim:
                    fg = bg.blend(fg, 0.5)
                ratio = contrast(fg, bg)
                if ratio < MIN_CONTRAST:
                    found.append(f"{text[:30]!r} {fg.hex}/{bg.hex} {ratio:.1f}")
    return found


async def _ran(pilot: Any) -> None:
    await type_prompt(pilot, "What were the three most important openings?")
    await pilot.press("ctrl+r")
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.worker is not None and not screen.running)
    await settle(pilot)


KNOWN: dict[tuple[str, str], Any] = {}  # (screen, theme) -> an expected failure, when one is open
CASES = [
    pytest.param(s, t, marks=KNOWN[(s, t)]) if (s, t) in KNOWN else (s, t) for s in SCREENS for t in THEMES
]


@pytest.mark.parametrize(("screen_name", "theme"), CASES)
async def test_every_text_is_readable_at_80x24(isolated_home: Path, theme: str, screen_name: str):
    db = seeded_db(isolated_home)
    options: dict[str, Any] = {"trace": "latest"} if screen_name == "trace" else {}
    start = screen_name if screen_name in SCREENS[:5] else "run"
    app: Any = scripted_app(isolated_home, [fanout_script(2)], db=db, screen=start, **options)
    app.theme = theme
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        if screen_name == "run":
            await _ran(pilot)
        elif screen_name == "help":
            await pilot.press("f1")
            await settle(pilot)
        elif screen_name == "new-eval":
            await pilot.press("f4", "n")
            await settle(pilot)
        modal = screen_name in ("help", "new-eval")
        found = unreadable(pilot.app, pilot.app.screen.children[0].region if modal else None)
        assert found == [], "\n".join(sorted(set(found)))


@pytest.mark.parametrize("theme", THEMES)
def test_run_screen_after_a_run_at_80x24(snap_compare, isolated_home: Path, theme: str):
    """The Run screen after a fan-out run: status, step table, timeline axis, answer, totals."""
    app = scripted_app(isolated_home, [fanout_script(2)])

    async def run_before(pilot: Any) -> None:
        pilot.app.theme = theme
        await pilot.pause()
        await _ran(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_run_picker_marks_an_invalid_mode_at_80x24(snap_compare, isolated_home: Path, theme: str):
    """Issue 17 item 3: the open mode picker shows the invalid mode struck through."""
    from test_tui_support import BROKEN, modes_dir

    modes_dir(isolated_home, broken=BROKEN)
    app = scripted_app(isolated_home, [])

    async def run_before(pilot: Any) -> None:
        pilot.app.theme = theme
        await pilot.pause()
        pilot.app.screen.query_one("#mode").focus()
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)
