"""The top bar: the app's screens with their keys; click one to go there."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

# (app mode, key, function key, label): digits when not typing, function keys from anywhere
SCREENS = (
    ("run", "1", "f2", "Run"),
    ("traces", "2", "f3", "Traces"),
    ("evals", "3", "f4", "Evals"),
    ("dashboard", "4", "f5", "Dashboard"),
    ("modes", "5", "f6", "Modes"),
)


class NavBar(Static):
    """`composite  1 Run  2 Traces  3 Evals  4 Dashboard  5 Modes`, the current one highlighted."""

    def __init__(self, current: str, *, id: str | None = None):
        super().__init__(id=id)
        self.current = current

    def on_mount(self) -> None:
        parts: list[Content | str | tuple[str, str]] = [("composite ", "bold $accent")]
        for name, key, _, label in SCREENS:
            click = f"@click=app.go({name!r})"
            current = name == self.current
            parts.append(" ")
            parts.append((f" {key} ", f"{click} {'bold reverse' if current else '$text-muted'}"))
            parts.append((f"{label} ", f"{click} {'bold reverse' if current else ''}".strip()))
        parts.append(("  ^p commands · F1 help", "$text-muted"))
        self.update(Content.assemble(*parts))
