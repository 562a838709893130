"""The new-eval dialog: an eval file, the modes to compare, how many cases and repeats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, SelectionList

from composite_cli.tui.screens.base import STYLES


@dataclass
class EvalRequest:
    file: Path
    modes: list[str]
    limit: int | None = None
    repeats: int = 1


class NewEvalScreen(ModalScreen[EvalRequest | None]):
    CSS_PATH = STYLES / "new_eval.tcss"
    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel"),
        Binding("ctrl+s", "start", "Start"),  # not priority: after the keys typed before it (see RunScreen)
    ]

    def __init__(self, files: list[Path], modes: list[str], chosen: list[str], *, blink: bool = True):
        super().__init__()
        self.files = files
        self.modes = modes
        self.chosen = chosen
        self.blink = blink

    def compose(self) -> Any:
        with Vertical(id="new-eval"):
            yield Label("eval file")
            yield Select(
                [(str(p), str(p)) for p in self.files], prompt="pick a file", compact=True, id="eval-file"
            )
            path = Input(placeholder="…or type a path to a .jsonl file", compact=True, id="eval-path")
            path.cursor_blink = self.blink
            yield path
            yield Label("modes to compare")
            yield SelectionList[str](*((m, m, m in self.chosen) for m in self.modes), id="eval-modes")
            with Horizontal(id="eval-numbers"):
                yield Label("cases (first N, empty: all)")
                limit = Input("5", type="integer", compact=True, id="eval-limit")
                limit.cursor_blink = self.blink
                yield limit
                yield Label("repeats")
                repeats = Input("1", type="integer", compact=True, id="eval-repeats")
                repeats.cursor_blink = self.blink
                yield repeats
            with Horizontal(id="eval-buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="eval-start", compact=True)
                yield Button("Cancel (esc)", id="eval-cancel", compact=True)
            yield Label("", id="eval-problem")

    def on_mount(self) -> None:
        self.query_one("#new-eval").border_title = "new eval"
        if self.files:
            self.query_one("#eval-file", Select).value = str(self.files[0])

    def request(self) -> EvalRequest | str:
        """The dialog's choices, or what is wrong with them."""
        typed = self.query_one("#eval-path", Input).value.strip()
        picked = self.query_one("#eval-file", Select).value
        path = Path(typed) if typed else (Path(picked) if isinstance(picked, str) else None)
        if path is None:
            return "Pick an eval file or type its path."
        if not path.is_file():
            return f"No such file: {path}"
        modes = list(self.query_one("#eval-modes", SelectionList).selected)
        if not modes:
            return "Pick at least one mode."
        limit_text = self.query_one("#eval-limit", Input).value.strip()
        repeats_text = self.query_one("#eval-repeats", Input).value.strip() or "1"
        limit = int(limit_text) if limit_text else None
        repeats = int(repeats_text)
        if (limit is not None and limit < 1) or repeats < 1:
            return "Cases and repeats must be at least 1."
        return EvalRequest(path, modes, limit, repeats)

    def action_start(self) -> None:
        result = self.request()
        if isinstance(result, str):
            self.query_one("#eval-problem", Label).update(result)
            return
        self.dismiss(result)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#eval-start")
    def start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#eval-cancel")
    def cancel_pressed(self) -> None:
        self.dismiss(None)
