"""Compare: several setups' mean curves overlaid, one plot per metric (``c`` on Experiments).

The setups are the ones marked on the Experiments screen (Space) or the best of each structure
on validation (``b``; as ``pairs best`` chooses them). Only setups of one protocol are overlaid
(``p`` steps to the next protocol) unless ``a`` overlays every protocol, and then the legend says
which is which. The legend sits under the plots, never over a curve.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Static

from core.curves import CURVE_METRICS
from core.overlay import best_config_ids, lr_line, overlay_curves, overlay_legend
from core.protocol import ordered
from tui.screens.base import PairsScreen
from tui.widgets.banner import DbBanner
from tui.widgets.overlay import OverlayPlot, legend_text

SOURCES = ("marked", "best")


@dataclass
class CompareData:
    curves: dict[str, dict]  # config id -> epoch_curves (with its protocol)
    marked: list[str]  # marked configurations still in the database, in marking order
    best: list[str]  # the best setup of each structure, per protocol


class CompareScreen(PairsScreen):
    """Marked setups, or the best of each structure, overlaid per metric."""

    BINDINGS = [
        Binding("b", "toggle_source", "Best/marked"),
        Binding("a", "toggle_across", "Protocols"),
        Binding("p", "protocol(1)", "Next protocol", show=False),
        Binding("P", "protocol(-1)", "Prev. protocol", show=False),
        Binding("l", "toggle_log", "Log y", show=False),
        Binding("escape", "app.switch_mode('experiments')", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="compare")
        #: ``marked`` (the Experiments marks) or ``best`` (the best of each structure)
        self.source = "marked"
        #: overlay setups of every protocol (``a``), else one protocol at a time
        self.across = False
        #: the protocol on screen (kept across reloads); None: the first (the paper's)
        self.protocol_id: str | None = None
        self.log_scale = False
        self.data: CompareData | None = None
        #: what is drawn, in drawing order
        self.shown: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DbBanner()
        yield Static("", id="compare-top")
        with Horizontal(id="compare-plots"):
            for metric in CURVE_METRICS:
                yield OverlayPlot(metric, id=f"compare-{metric}")
        yield Static("", id="compare-legend")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.reload()

    def set_source(self, source: str) -> None:
        """Show the marked setups or the best of each structure (reads the database again)."""
        self.source = source if source in SOURCES else "marked"
        self.reload()

    # -- data --------------------------------------------------------------------------------
    def query_db(self) -> CompareData:
        marked = list(getattr(self.app, "marked_configs", []))
        source = self.source

        def read(store) -> CompareData:
            known = {row["id"] for row in store.config_progress()}
            present = [cid for cid in marked if cid in known]
            best = best_config_ids(store) if source == "best" else []
            wanted = best if source == "best" else present
            curves = {c["config_id"]: c for c in overlay_curves(store, wanted)}
            return CompareData(curves, present, best)

        return self.app.db.read(read)

    def candidates(self) -> list[dict]:
        if self.data is None:
            return []
        ids = self.data.best if self.source == "best" else self.data.marked
        return [self.data.curves[cid] for cid in ids if cid in self.data.curves]

    def protocols(self) -> list:
        return ordered(c["protocol"] for c in self.candidates())

    def show_data(self, data: CompareData) -> None:
        self.data = data
        candidates = self.candidates()
        protocols = self.protocols()
        ids = [p.id for p in protocols]
        if self.protocol_id not in ids:
            self.protocol_id = ids[0] if ids else None
        if self.across:
            self.shown = candidates
        else:
            self.shown = [c for c in candidates if c["protocol"].id == self.protocol_id]
        for metric in CURVE_METRICS:
            plot = self.query_one(f"#compare-{metric}", OverlayPlot)
            plot.set_curves(self.shown)
            plot.set_log(self.log_scale)
        self.query_one("#compare-top", Static).update(self.top_line(candidates, protocols))
        entries = overlay_legend(self.shown, with_protocol=self.across and len(protocols) > 1)
        width = self.query_one("#compare-legend").size.width or self.app.size.width
        self.query_one("#compare-legend", Static).update(legend_text(entries, width, lr_line(self.shown)))

    def top_line(self, candidates: list[dict], protocols: list) -> Text:
        text = Text()
        if self.source == "best":
            text.append("Best of each structure", style="bold")
            text.append(" (by validation accuracy, as pairs best)")
        else:
            text.append(f"{len(candidates)} marked setup(s)", style="bold")
        if not candidates:
            text.append(
                ": none yet: mark setups on Experiments (1, Space) or press b for the best of each structure"
                if self.source == "marked"
                else ": no setup has done runs yet"
            )
            return text
        if self.across and len(protocols) > 1:
            text.append(f" · {len(protocols)} protocols overlaid (the legend names each)")
            return text
        current = next(p for p in protocols if p.id == self.protocol_id)
        text.append(" · protocol ")
        text.append(current.label, style="bold reverse")  # Text: never parsed as markup
        text.append(f" (id {current.id[:8]})")
        hidden = len(candidates) - len(self.shown)
        if hidden:
            text.append(f" · {hidden} of other protocols not shown (p: next, a: overlay all)", style="yellow")
        return text

    # -- actions -----------------------------------------------------------------------------
    def action_toggle_source(self) -> None:
        self.set_source("best" if self.source == "marked" else "marked")

    def action_toggle_across(self) -> None:
        self.across = not self.across
        self.notify(
            "setups of every protocol overlaid (the legend names each)"
            if self.across
            else "one protocol at a time (p: the next)",
            title="Compare",
        )
        if self.data is not None:
            self.show_data(self.data)

    def action_protocol(self, step: int) -> None:
        protocols = [p.id for p in self.protocols()]
        if len(protocols) < 2:
            self.notify("the setups compared are of one protocol", severity="information")
            return
        index = protocols.index(self.protocol_id) if self.protocol_id in protocols else 0
        self.protocol_id = protocols[(index + step) % len(protocols)]
        if self.data is not None:
            self.show_data(self.data)

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        for plot in self.query(OverlayPlot):
            plot.set_log(self.log_scale)
