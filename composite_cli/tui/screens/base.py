"""What every screen of the app shares: its services, the DB-changed refresh, commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual.screen import Screen

from composite_cli.errors import describe_error, one_line
from composite_cli.tui.worker_messages import DbChanged

if TYPE_CHECKING:
    from composite_cli.tui.app import CompositeApp
    from composite_cli.tui.services import TuiServices

STYLES = Path(__file__).resolve().parent.parent / "styles"

Command = tuple[str, str, Callable[[], object]]  # (title, help, callback) for the command palette


def error_text(exc: BaseException) -> str:
    """One line for an error, secrets masked (`errors.one_line`, as the CLI prints it; an unexpected
    error is named by its type)."""
    return one_line(exc) or describe_error(exc)


class AppScreen(Screen[None]):
    """A top-level screen: reloads its data when the trace database changes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_version = -1

    @property
    def composite(self) -> CompositeApp:
        return cast("CompositeApp", self.app)

    @property
    def services(self) -> TuiServices:
        return self.composite.services

    def commands(self) -> list[Command]:
        """Commands this screen adds to the command palette."""
        return []

    def reload(self) -> None:
        """Load this screen's data again (override)."""

    def on_screen_resume(self) -> None:
        if self.seen_version != self.composite.db_version:
            self.seen_version = self.composite.db_version
            self.reload()

    def on_db_changed(self, message: DbChanged) -> None:
        self.seen_version = message.version
        self.reload()
