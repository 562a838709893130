"""The new-eval dialog: an eval file (under the working directory, or a shipped set), the profile,
the modes to compare (those that cannot load shown as invalid, not pickable), how many cases and
repeats; or an interrupted eval to resume. Starting and resuming go through the eval session the
CLI uses (evals/session.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, SelectionList
from textual.widgets.selection_list import Selection

from composite_cli.errors import CompositeError
from composite_cli.tui.screens.base import STYLES

if TYPE_CHECKING:
    from composite_cli.evals.session import EvalSession
    from composite_cli.tui.services import TuiServices

SHIPPED = "(shipped) "


@dataclass
class EvalRequest:
    file: Path | None
    modes: list[str]
    limit: int | None = None
    repeats: int = 1
    profile: str | None = None  # None: the active profile
    resume: str | None = None  # an eval run id: finish it (file, modes, limit and repeats are its own)

    def open(self, services: TuiServices) -> EvalSession:
        """The eval session this request asks for: a new eval, or the interrupted one resumed.
        Raises what `EvalSessions.start`/`resume` raise (bad file, unknown mode, changed file...)."""
        sessions = services.eval_sessions(self.profile)
        if self.resume is not None:
            return sessions.resume(self.resume)
        if self.file is None:
            raise ValueError("an eval request needs a file or an eval to resume")
        return sessions.start(self.file, self.modes, limit=self.limit, repeats=self.repeats)


def _file_options(files: list[Path], shipped: list[Path]) -> list[tuple[str, str]]:
    return [(str(p), str(p)) for p in files] + [(f"{SHIPPED}{p.name}", str(p)) for p in shipped]


def _resume_label(row: dict[str, Any]) -> str:
    modes = ",".join(row.get("modes_list") or [])
    return (
        f"{str(row.get('created_at') or '')[:16]} {Path(str(row.get('file'))).name} {modes} "
        f"{row.get('status')} {row.get('results')}/{row.get('cases') or '?'} · {row.get('id')}"
    )


class NewEvalScreen(ModalScreen[EvalRequest | None]):
    CSS_PATH = STYLES / "new_eval.tcss"
    DEFAULT_CSS = """
    #new-eval Select { width: 100%; }
    #eval-modes { width: 100%; }
    """
    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel"),
        Binding("ctrl+s", "start", "Start"),  # not priority: after the keys typed before it (see RunScreen)
    ]

    def __init__(
        self,
        files: list[Path],
        modes: list[str],
        chosen: list[str],
        *,
        blink: bool = True,
        shipped: list[Path] | None = None,
        profiles: list[str] | None = None,
        profile: str | None = None,
        invalid: dict[str, str] | None = None,
        resumable: list[dict[str, Any]] | None = None,
    ):
        """`files`: under the working directory; `shipped`, `profiles`, `invalid` (mode -> why it
        cannot run) and `resumable` (eval rows) are read from the app's services when not given."""
        super().__init__()
        self.files = files
        self.modes = modes
        self.chosen = chosen
        self.blink = blink
        self.shipped = shipped
        self.profiles = profiles
        self.profile = profile
        self.invalid = invalid
        self.resumable = resumable
        self.problem = ""

    def _from_services(self) -> None:
        services: TuiServices | None = getattr(self.app, "services", None)
        if services is None:
            return
        if self.shipped is None:
            self.shipped = services.shipped_eval_files()
        if self.profiles is None:
            self.profiles = services.profile_names()
        if self.profile is None:
            self.profile = services.profile or services.settings.profile.name
        if self.invalid is None:
            self.invalid = services.mode_problems()
        if self.resumable is None:
            try:
                self.resumable = services.resumable_evals()
            except CompositeError as exc:  # shown in the dialog: starting a new eval still works
                self.resumable = []
                self.problem = f"Cannot list interrupted evals: {exc}"

    def compose(self) -> Any:
        self._from_services()
        shipped = self.shipped or []
        profiles = self.profiles or []
        invalid = self.invalid or {}
        with VerticalScroll(id="new-eval"):
            yield Label("eval file (under the working directory, or shipped)")
            yield Select(
                _file_options(self.files, shipped), prompt="pick a file", compact=True, id="eval-file"
            )
            path = Input(placeholder="…or type a path to a .jsonl file", compact=True, id="eval-path")
            path.cursor_blink = self.blink
            yield path
            yield Label("profile")
            yield Select(
                [(p, p) for p in profiles],
                prompt="active profile",
                value=self.profile if self.profile in profiles else Select.NULL,
                compact=True,
                id="eval-profile",
            )
            yield Label("modes to compare")
            selections = [
                Selection(Text(f"{m}  ✗ invalid", style="dim"), m, False, m, disabled=True)
                if m in invalid
                else Selection(m, m, m in self.chosen, m)
                for m in self.modes
            ]
            yield SelectionList[str](*selections, id="eval-modes")
            with Horizontal(id="eval-numbers"):
                yield Label("cases (first N, empty: all)")
                limit = Input("5", type="integer", compact=True, id="eval-limit")
                limit.cursor_blink = self.blink
                yield limit
                yield Label("repeats")
                repeats = Input("1", type="integer", compact=True, id="eval-repeats")
                repeats.cursor_blink = self.blink
                yield repeats
            yield Label("or resume an interrupted eval")
            yield Select(
                [(_resume_label(self._with_modes(r)), str(r["id"])) for r in self.resumable or []],
                prompt="no: start a new eval" if self.resumable else "no interrupted eval",
                compact=True,
                id="eval-resume",
                disabled=not self.resumable,
            )
            with Horizontal(id="eval-buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="eval-start", compact=True)
                yield Button("Cancel (esc)", id="eval-cancel", compact=True)
            yield Label(self.problem, id="eval-problem")

    @staticmethod
    def _with_modes(row: dict[str, Any]) -> dict[str, Any]:
        try:
            modes = json.loads(row.get("modes") or "[]")
        except ValueError:
            modes = []
        return {**row, "modes_list": [str(m) for m in modes] if isinstance(modes, list) else []}

    def on_mount(self) -> None:
        self.query_one("#new-eval").border_title = "new eval"
        if self.files:  # a file under the working directory; a shipped set is picked on purpose
            self.query_one("#eval-file", Select).value = str(self.files[0])

    @on(Select.Changed, "#eval-resume")
    def resume_changed(self, event: Select.Changed) -> None:
        """Resuming runs on the profile the eval was started with (when it is still defined)."""
        row = next((r for r in self.resumable or [] if str(r["id"]) == event.value), None)
        profile = self.query_one("#eval-profile", Select)
        if row is not None and row.get("profile") in (self.profiles or []):
            profile.value = row["profile"]

    def request(self) -> EvalRequest | str:
        """The dialog's choices, or what is wrong with them."""
        chosen_profile = self.query_one("#eval-profile", Select).value
        profile = chosen_profile if isinstance(chosen_profile, str) else None
        resume = self.query_one("#eval-resume", Select).value
        if isinstance(resume, str):
            return EvalRequest(None, [], profile=profile, resume=resume)
        typed = self.query_one("#eval-path", Input).value.strip()
        picked = self.query_one("#eval-file", Select).value
        path = Path(typed) if typed else (Path(picked) if isinstance(picked, str) else None)
        if path is None:
            return "Pick an eval file or type its path."
        if not path.is_file():
            return f"No such file: {path}"
        modes = [
            m for m in self.query_one("#eval-modes", SelectionList).selected if m not in (self.invalid or {})
        ]
        if not modes:
            return "Pick at least one mode."
        limit_text = self.query_one("#eval-limit", Input).value.strip()
        repeats_text = self.query_one("#eval-repeats", Input).value.strip() or "1"
        limit = int(limit_text) if limit_text else None
        repeats = int(repeats_text)
        if (limit is not None and limit < 1) or repeats < 1:
            return "Cases and repeats must be at least 1."
        return EvalRequest(path, modes, limit, repeats, profile=profile)

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
