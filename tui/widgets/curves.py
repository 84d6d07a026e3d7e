"""A per-epoch curve of one metric: every repetition thin, the mean bold, a ±std band.

The numbers come from ``core.curves.epoch_curves`` (shared with ``pairs plot`` and the report).
"""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot


class CurvePlot(PlotextPlot):
    """One metric over epochs for every repetition of a configuration."""

    def __init__(self, metric: str, title: str, *, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.title = title
        self.scale = scale
        #: What is drawn (scaled): rep -> values of epochs 1..k, and per-epoch mean and std.
        self.series: dict[int, list[float]] = {}
        self.epochs: list[int] = []
        self.mean: list[float] = []
        self.std: list[float] = []
        self.max_epoch = 1

    def on_mount(self) -> None:
        super().on_mount()
        self.draw()

    def set_curves(self, curves: dict | None, max_epoch: int) -> None:
        """Show ``epoch_curves(...)`` (None: nothing recorded)."""
        data = curves["metrics"][self.metric] if curves else None
        scale = self.scale
        self.series = {rep: [v * scale for v in values]
                       for rep, values in (data["series"].items() if data else ())}
        self.epochs = list(curves["epochs"]) if curves else []
        self.mean = [m * scale for m in data["mean"]] if data else []
        self.std = [s * scale for s in data["std"]] if data else []
        self.max_epoch = max(1, max_epoch)
        self.draw()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title(self.title)
        plt.xlabel("epoch")
        last = max(self.max_epoch, 2)
        plt.xlim(1, last)
        step = max(1, math.ceil(last / 8))
        plt.xticks(list(range(1, last + 1, step)))
        for values in self.series.values():
            if values:
                plt.plot(list(range(1, len(values) + 1)), values, marker="braille",
                         color="gray")
        band = [(e, m, s) for e, m, s in zip(self.epochs, self.mean, self.std)
                if not math.isnan(s)]
        if band:
            xs = [e for e, _, _ in band]
            plt.plot(xs, [m + s for _, m, s in band], marker="dot", color="cyan", label="±std")
            plt.plot(xs, [m - s for _, m, s in band], marker="dot", color="cyan")
        points = [(e, m) for e, m in zip(self.epochs, self.mean) if not math.isnan(m)]
        if points:
            plt.plot([e for e, _ in points], [m for _, m in points], marker="hd",
                     color="orange+", label=f"mean of {len(self.series)}")
        self.refresh()
