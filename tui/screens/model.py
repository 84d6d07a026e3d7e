"""The Model view: the selected setup's layers drawn like Figs 1-3 (``m`` on Experiments).

The diagram comes from ``core.config.model_layers`` through ``tui.widgets.model``: no torch in
the console's process.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from core.config import RunConfig
from tui.widgets.model import model_diagram


class ModelScreen(Screen):
    """One configuration's structure: towers, digit head, comparison head, each layer with its
    output shape and parameters, and the total."""

    BINDINGS = [
        Binding("escape,m", "app.pop_screen", "Back"),
    ]

    def __init__(self, config: RunConfig) -> None:
        super().__init__(id="model")
        self.config = config

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="model-scroll"):
            yield Static(id="model-diagram")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.draw()
        self.query_one("#model-scroll").focus()

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        width = self.query_one("#model-scroll").size.width or self.app.size.width
        self.query_one("#model-diagram", Static).update(model_diagram(self.config, width=width))
