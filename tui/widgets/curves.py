"""A per-epoch curve of one metric: every repetition thin, the mean on top, ±std bounds.

The numbers come from ``core.curves.epoch_curves`` and the drawing from
``core.curves.draw_metric``, both shared with ``pairs plot`` in the terminal. The legend is not
drawn inside the plot: :func:`legend_text` gives it for a line of its own.
"""

from __future__ import annotations

from rich.text import Text
from textual_plotext import PlotextPlot

from core.curves import LOSS_METRICS, draw_metric, legend, scaled


def legend_text(curves: dict | None, last: int | None = None) -> Text:
    """The legend of :class:`CurvePlot` as Rich text, in the drawing's colours."""
    text = Text()
    for index, (glyph, words, (r, g, b)) in enumerate(legend(curves, last)):
        if index:
            text.append("   ")
        text.append(glyph, style=f"bold rgb({r},{g},{b})")
        text.append(f" {words}")
    return text


class CurvePlot(PlotextPlot):
    """One metric over epochs for every repetition of a configuration."""

    def __init__(self, metric: str, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.title = title
        #: Log scale of the y axis (losses only; ``toggle_log`` flips it).
        self.log_scale = False
        self.curves: dict | None = None
        #: What is drawn (``core.curves.scaled``: accuracies in percent): rep -> values of
        #: epochs 1..k, and per-epoch mean and std.
        self.series: dict[int, list[float]] = {}
        self.mean: list[float] = []
        self.std: list[float] = []
        self.max_epoch = 1

    @property
    def can_log(self) -> bool:
        return self.metric in LOSS_METRICS

    def on_mount(self) -> None:
        super().on_mount()
        self.draw()

    def set_curves(self, curves: dict | None, max_epoch: int) -> None:
        """Show ``epoch_curves(...)`` (None: nothing recorded)."""
        self.curves = curves
        self.series, self.mean, self.std = scaled(curves, self.metric) if curves else ({}, [], [])
        self.max_epoch = max(1, max_epoch)
        self.draw()

    def set_log(self, log: bool) -> None:
        self.log_scale = log and self.can_log
        self.draw()

    def draw(self) -> None:
        """Redraw on the next render (which knows the size: as many y ticks as rows allow)."""
        self.refresh()

    def render(self):
        plt = self.plt
        plt.clear_figure()  # ticks and limits too: each draw sets them anew
        draw_metric(
            plt,
            self.curves,
            self.metric,
            last=self.max_epoch,
            log=self.log_scale,
            title=self.title + (" (log)" if self.log_scale else ""),
            rows=self.size.height - 5,
        )
        return super().render()
