"""Live curves of the selected configuration: train loss, validation loss and accuracy.

The legend is a line of its own under the plots; ``l`` draws the losses on a log scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.widgets import Footer, Header, Select, Static

from core.curves import CURVE_METRICS, CURVE_TITLES, epoch_curves
from tui.literal import literal
from tui.screens.base import PairsScreen
from tui.widgets.banner import DbBanner
from tui.widgets.curves import CurvePlot, legend_text
from tui.widgets.labels import protocol_label, setup_label


@dataclass
class PlotData:
    configs: list[dict]
    config_id: str | None
    curves: dict | None


class PlotsScreen(PairsScreen):
    """Pick a configuration; its curves follow new epoch rows from any process."""

    BINDINGS = [
        Binding("left_square_bracket", "step(-1)", "Prev"),
        Binding("right_square_bracket", "step(1)", "Next"),
        Binding("l", "toggle_log", "Log y"),
    ]

    def __init__(self) -> None:
        super().__init__(id="plots")
        self.configs: list[dict] = []
        self.curves: dict | None = None
        self.option_ids: list[str] = []
        #: The losses on a log scale (``l``).
        self.log_scale = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield DbBanner()
        with Horizontal(id="plots-top"):
            yield Select[str]([], prompt="configuration", id="plots-config", compact=True)
            yield Static("", id="plots-summary")
        with Grid(id="plots-grid"):
            for metric in CURVE_METRICS:
                yield CurvePlot(metric, CURVE_TITLES[metric], id=f"plot-{metric}")
        yield Static("", id="plots-legend")
        yield Footer(compact=True, show_command_palette=False)  # ^p still opens it

    def on_mount(self) -> None:
        super().on_mount()
        self.watch(self.app, "selected_config", self._selected, init=False)
        self.reload()

    def _selected(self, config_id: str | None) -> None:
        if self.is_current:
            self.reload()
        else:
            self.stale = True

    # -- data --------------------------------------------------------------------------------
    def query_db(self) -> PlotData:
        config_id = self.app.selected_config

        def read(store):
            configs = store.config_progress()
            chosen = (
                config_id if any(c["id"] == config_id for c in configs) else (configs[0]["id"] if configs else None)
            )
            return PlotData(configs, chosen, epoch_curves(store, chosen) if chosen else None)

        return self.app.db.read(read)

    def show_data(self, data: PlotData) -> None:
        self.configs = data.configs
        self.curves = data.curves
        select = self.query_one("#plots-config", Select)
        options = [(literal(f"{setup_label(c)} · {protocol_label(c)}"), c["id"]) for c in data.configs]
        if [value for _, value in options] != self.option_ids:
            self.option_ids = [value for _, value in options]
            with self.prevent(Select.Changed):
                select.set_options(options)
        if data.config_id is not None and select.value != data.config_id:
            with self.prevent(Select.Changed):
                select.value = data.config_id
        if data.config_id is not None and self.app.selected_config != data.config_id:
            self.app.selected_config = data.config_id
        config = next((c for c in data.configs if c["id"] == data.config_id), None)
        max_epoch = config["epochs"] if config else 1
        for metric in CURVE_METRICS:
            self.query_one(f"#plot-{metric}", CurvePlot).set_curves(data.curves, max_epoch)
        self.query_one("#plots-summary", Static).update(literal(self.summary(config, data.curves)))
        self.query_one("#plots-legend", Static).update(legend_text(data.curves, max_epoch))

    @staticmethod
    def summary(config: dict | None, curves: dict | None) -> str:
        if config is None:
            return "no configurations yet: queue some (2)"
        reps = len(curves["reps"]) if curves else 0
        epoch = curves["epochs"][-1] if curves and curves["epochs"] else 0
        return (
            f"{config['done'] or 0}/{config['total']} done · {config['running'] or 0} "
            f"running · {reps} plotted · epoch {epoch}/{config['epochs']}"
        )

    # -- events ------------------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "plots-config" and event.value is not Select.NULL:
            self.app.selected_config = event.value

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        for plot in self.query(CurvePlot):
            plot.set_log(self.log_scale)

    def action_step(self, delta: int) -> None:
        ids = [c["id"] for c in self.configs]
        if not ids:
            return
        current = ids.index(self.app.selected_config) if self.app.selected_config in ids else 0
        self.app.selected_config = ids[(current + delta) % len(ids)]
