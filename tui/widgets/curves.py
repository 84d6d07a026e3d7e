"""A per-epoch curve of one metric: every repetition thin, the mean bold, a ±std band."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from textual_plotext import PlotextPlot


@dataclass
class Curves:
    """The numbers one plot shows (kept apart from drawing so tests can read them)."""

    reps: dict[int, tuple[list[int], list[float]]] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, rows: list[dict], metric: str, scale: float = 1.0) -> Curves:
        """From epoch rows (``rep``, ``epoch``, metrics): each rep's line, mean and std per epoch."""
        reps: dict[int, tuple[list[int], list[float]]] = {}
        by_epoch: dict[int, list[float]] = defaultdict(list)
        for row in sorted(rows, key=lambda r: (r["rep"], r["epoch"])):
            value = row.get(metric)
            if value is None:
                continue
            xs, ys = reps.setdefault(row["rep"], ([], []))
            xs.append(row["epoch"])
            ys.append(value * scale)
            by_epoch[row["epoch"]].append(value * scale)
        curves = cls(reps=reps)
        for epoch in sorted(by_epoch):
            values = by_epoch[epoch]
            n = len(values)
            mean = sum(values) / n
            var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
            curves.epochs.append(epoch)
            curves.mean.append(mean)
            curves.std.append(math.sqrt(var))
        return curves


class CurvePlot(PlotextPlot):
    """One metric over epochs for every repetition of a configuration."""

    def __init__(self, metric: str, title: str, *, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.title = title
        self.scale = scale
        self.curves = Curves()
        self.max_epoch = 1

    def on_mount(self) -> None:
        super().on_mount()
        self.draw()

    def set_rows(self, rows: list[dict], max_epoch: int) -> None:
        self.curves = Curves.of(rows, self.metric, self.scale)
        self.max_epoch = max(1, max_epoch)
        self.draw()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title(self.title)
        plt.xlabel("epoch")
        plt.xlim(1, max(self.max_epoch, 2))
        curves = self.curves
        for xs, ys in curves.reps.values():
            plt.plot(xs, ys, marker="braille", color="gray")
        if curves.epochs:
            upper = [m + s for m, s in zip(curves.mean, curves.std)]
            lower = [m - s for m, s in zip(curves.mean, curves.std)]
            if len(curves.reps) > 1:
                plt.plot(curves.epochs, upper, marker="dot", color="cyan", label="±std")
                plt.plot(curves.epochs, lower, marker="dot", color="cyan")
            plt.plot(curves.epochs, curves.mean, marker="hd", color="orange+",
                     label=f"mean of {len(curves.reps)}")
        self.refresh()
