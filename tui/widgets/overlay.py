"""Several setups' mean curves on one plot (the Compare screen), and their legend.

The numbers and the drawing come from ``core.overlay`` (shared with ``pairs plot --compare``);
the legend is never drawn inside a plot: :func:`legend_text` gives it for a widget of its own.
"""

from __future__ import annotations

from rich.text import Text
from textual_plotext import PlotextPlot

from core.curves import LOSS_METRICS, LR_COLOR
from core.overlay import LegendEntry, dim, draw_overlay


def _style(rgb: tuple[int, int, int]) -> str:
    return f"bold rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def legend_text(entries: list[LegendEntry], width: int = 80, lr: str | None = None) -> Text:
    """One line per setup in its colour: the setup, n, the final mean ± std of each metric (and
    its protocol when several are overlaid); a last line says how the spread is drawn. Every
    string from the database goes in as plain text, never as markup."""
    text = Text(no_wrap=False)
    if not entries:
        return text
    short = width < 100
    head = max(len(e.head) for e in entries)
    for e in entries:
        text.append("━━ ", style=_style(e.color))
        text.append(e.head.ljust(head), style=_style(e.color))
        text.append("  " + e.values(short=short))
        if e.protocol:
            text.append("  · protocol ")
            text.append(e.protocol, style="italic")
        text.append("\n")
    text.append("┈┈ ", style=_style(dim(entries[0].color)))
    text.append("dimmer: mean ± std · values at the final epoch", style="dim")
    if lr:
        text.append("  │ ", style=_style(LR_COLOR))
        text.append(lr, style="dim")
    return text


class OverlayPlot(PlotextPlot):
    """One metric of several configurations: each mean in its colour with its ±std bounds."""

    def __init__(self, metric: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.overlaid: list[dict] = []
        self.log_scale = False

    def set_curves(self, overlaid: list[dict]) -> None:
        self.overlaid = overlaid
        self.refresh()

    def set_log(self, log: bool) -> None:
        self.log_scale = log and self.metric in LOSS_METRICS
        self.refresh()

    def render(self):
        plt = self.plt
        plt.clear_figure()
        draw_overlay(plt, self.overlaid, self.metric, log=self.log_scale, rows=self.size.height - 5)
        return super().render()
