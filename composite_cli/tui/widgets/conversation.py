"""The conversation on the Run screen: each prompt, and each answer as it streams in."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


class Conversation(VerticalScroll):
    """Turns of the chat; the last answer is updated in place while it streams."""

    def __init__(self, *, id: str | None = None, placeholder: str = ""):
        super().__init__(id=id)
        self.placeholder = placeholder
        self._answer: Static | None = None

    def on_mount(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._answer = None
        self.remove_children()
        self.mount(Static(self.placeholder, classes="placeholder"))

    def _drop_placeholder(self) -> None:
        for child in self.query(".placeholder"):
            child.remove()

    def add_prompt(self, text: str) -> None:
        self._drop_placeholder()
        self.mount(Static(Text(text), classes="prompt"))
        self._answer = Static("", classes="answer")
        self.mount(self._answer)
        self.scroll_end(animate=False)

    def set_answer(self, text: str) -> None:
        if self._answer is None:
            self._drop_placeholder()
            self._answer = Static("", classes="answer")
            self.mount(self._answer)
        follow = self.is_vertical_scroll_end
        self._answer.update(Text(text))
        if follow:
            self.scroll_end(animate=False)

    def add_note(self, text: str, *, error: bool = False) -> None:
        self.mount(Static(Text(text), classes="note error" if error else "note"))
        self.scroll_end(animate=False)
