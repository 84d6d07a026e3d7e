"""Dialogs: what to do with running workers when quitting."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[str]):
    """Dismisses with ``keep``, ``stop`` or ``cancel``."""

    BINDINGS = [
        Binding("escape", "choose('cancel')", "Cancel"),
        Binding("k", "choose('keep')", "Keep running"),
        Binding("s", "choose('stop')", "Stop after epoch"),
    ]

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box"):
            yield Static(
                f"Workers are running ({self.description}).\n\n"
                "Keep them running after the app exits, or stop them after the current epoch? "
                "Either way nothing is lost: stopped runs go back to the queue and resume from "
                "their last epoch.",
                id="quit-text",
            )
            with Horizontal(id="quit-buttons"):
                yield Button("Keep running (k)", id="keep", variant="primary")
                yield Button("Stop after epoch (s)", id="stop", variant="warning")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
