"""Per-epoch curves of a setup over its repetitions (the paper's Figs 4-6), as data and plots.

``epoch_curves`` is plain Python (no torch, no plotting library): the CLI, the report and the
TUI's plot widget share it. ``terminal_plot`` (plotext) and ``save_figure`` (matplotlib, Agg)
import their library only when called.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import ConfigError, RunConfig
from core.store import Store

CURVE_METRICS = ("train_loss", "val_loss", "val_acc")
CURVE_TITLES = {"train_loss": "Train loss", "val_loss": "Validation loss", "val_acc": "Validation accuracy (%)"}
FIGURE_FORMATS = (".png", ".svg", ".pdf")


def find_config(store: Store, structure: str, arch: str, kernel: int | str) -> str:
    """The configuration id of a setup; among several (other hyperparameters differ), the one
    with the most done runs (then the most runs, then the newest).

    Raises ConfigError on an unknown structure/arch/kernel or when the database has no such
    setup.
    """
    structure, arch, kernel = _check_setup(structure, arch, kernel)
    candidates = [
        row
        for row in store.config_progress()
        if (row["structure"], row["arch"], row["kernel"]) == (structure, arch, kernel) and row["total"]
    ]
    label = f"{structure} {arch} k{kernel}"
    if not candidates:
        raise ConfigError(
            f"no runs of {label} in {store.path}: queue them with pairs run --structure "
            f"{structure} --arch {arch} --kernel {kernel} (or pairs grid paper)"
        )
    best = max(candidates, key=lambda r: (r["done"] or 0, r["total"] or 0, r["created_at"] or 0))
    return best["id"]


def _check_setup(structure: str, arch: str, kernel: int | str) -> tuple[str, str, int]:
    try:
        kernel = int(kernel)
    except (TypeError, ValueError):
        raise ConfigError(f"--kernel must be an integer, got {kernel!r}") from None
    structure, arch = str(structure).strip().lower(), str(arch).strip().upper()
    RunConfig(structure=structure, arch=arch, kernel=kernel)  # ConfigError names a bad value
    return structure, arch, kernel


def epoch_curves(store: Store, config_id: str, *, done_only: bool = False) -> dict:
    """Every repetition's per-epoch train loss, val loss and val accuracy, with mean and std.

    Returns::

        {"config_id": str, "label": "shared A5 k5", "config": RunConfig,
         "epochs": [1, 2, ...],                # 1 .. the highest epoch recorded
         "reps": [0, 1, ...],                  # repetitions with at least one epoch
         "done": int,                          # how many of those runs are done
         "metrics": {"train_loss" | "val_loss" | "val_acc": {
             "series": {rep: [value per epoch 1..k]},   # k = that run's last epoch
             "mean": [per epoch],              # over the runs that reached the epoch
             "std": [per epoch],               # sample std (ddof=1); NaN with fewer than 2
             "n": [per epoch]}}}               # how many runs reached the epoch

    Failed runs are left out; ``done_only`` keeps only finished runs. Accuracies are fractions.
    """
    config = store.config(config_id)
    rows = [r for r in store.epoch_rows(config_id) if r["status"] != "failed"]
    if done_only:
        rows = [r for r in rows if r["status"] == "done"]
    reps = sorted({r["rep"] for r in rows})
    done = len({r["rep"] for r in rows if r["status"] == "done"})
    last = max((r["epoch"] for r in rows), default=0)
    epochs = list(range(1, last + 1))
    metrics = {}
    for metric in CURVE_METRICS:
        by_rep: dict[int, dict[int, float]] = {rep: {} for rep in reps}
        for r in rows:
            if r[metric] is not None:
                by_rep[r["rep"]][r["epoch"]] = r[metric]
        series = {rep: [values[e] for e in sorted(values)] for rep, values in by_rep.items()}
        mean, std, n = [], [], []
        for epoch in epochs:
            values = [v[epoch] for v in by_rep.values() if epoch in v]
            m, s = _mean_std(values)
            mean.append(m)
            std.append(s)
            n.append(len(values))
        metrics[metric] = {"series": series, "mean": mean, "std": std, "n": n}
    return {
        "config_id": config_id,
        "label": config.label,
        "config": config,
        "epochs": epochs,
        "reps": reps,
        "done": done,
        "metrics": metrics,
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def check_has_epochs(curves: dict, store: Store) -> None:
    if not curves["epochs"]:
        raise ConfigError(
            f"no epoch recorded yet for {curves['label']} in {store.path}: train its queued runs with pairs work"
        )


def metric_scale(metric: str) -> float:
    """How a metric is drawn: accuracies (fractions in the database) in percent, losses as is."""
    return 100.0 if metric == "val_acc" else 1.0


def scaled(curves: dict, metric: str) -> tuple[dict[int, list[float]], list[float], list[float]]:
    """(each run's values by rep, the mean, the std) of ``metric`` as drawn (accuracies in
    percent): what ``pairs plot``, the figure file and the TUI's plots show."""
    scale = metric_scale(metric)
    data = curves["metrics"][metric]
    return (
        {rep: [v * scale for v in values] for rep, values in data["series"].items()},
        [m * scale for m in data["mean"]],
        [s * scale for s in data["std"]],
    )


def spread(mean: list[float], std: list[float]) -> tuple[list[float], list[float]]:
    """mean - std and mean + std per epoch (the mean itself where std is unknown): the
    matplotlib figures' ``fill_between`` band."""
    lower = [m - s if not math.isnan(s) else m for m, s in zip(mean, std, strict=True)]
    upper = [m + s if not math.isnan(s) else m for m, s in zip(mean, std, strict=True)]
    return lower, upper


def subtitle(curves: dict) -> str:
    runs = len(curves["reps"])
    return f"mean ± std over {runs} run(s), {curves['done']} done"


# -- terminal ---------------------------------------------------------------------------------

#: Colours (RGB) of the terminal drawing, shared by ``pairs plot`` and the TUI's plots.
MEAN_COLOR = (255, 160, 40)
BAND_COLOR = (70, 160, 220)
RUN_COLOR = (110, 110, 110)
LR_COLOR = (200, 70, 70)
#: Metrics that may be drawn on a log scale.
LOSS_METRICS = ("train_loss", "val_loss")


def nice_step(span: float, count: int = 5) -> float:
    """A 1-2-5 step (1, 2, 5, 10, 20 ...) giving about ``count`` ticks over ``span``."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw * 0.999:
            return factor * magnitude
    return 10 * magnitude


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Evenly spaced 1-2-5 ticks from a multiple of the step at or below ``low`` to one at or
    above ``high`` (one value: a step around it)."""
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    step = nice_step(high - low, count)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def tick_labels(ticks: list[float]) -> list[str]:
    """The ticks with as many decimals as their step needs (``0.2 0.4``, ``70 75``)."""
    if len(ticks) < 2:
        return [f"{t:g}" for t in ticks]
    step = min(abs(b - a) for a, b in zip(ticks, ticks[1:]))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return [f"{t:.{decimals}f}" for t in ticks]


def log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks of a log axis, from the one at or below ``low`` to the one at or above
    ``high`` (decades only when there would be more than 8)."""
    low, high = max(min(low, high), 1e-12), max(low, high, 1e-12)
    candidates = [
        f * 10.0**k for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2) for f in (1, 2, 5)
    ]
    below = max(c for c in candidates if c <= low * (1 + 1e-9))
    above = min(c for c in candidates if c >= high * (1 - 1e-9))
    if above == below:
        above = min(c for c in candidates if c > below)
    ticks = [c for c in candidates if below <= c <= above]
    if len(ticks) > 8:
        ticks = [below] + [c for c in ticks if f"{c:e}".startswith("1")] + [above]
        ticks = sorted(set(ticks))
    return ticks


def _epoch_ticks(last: int) -> list[int]:
    step = max(1, int(nice_step(last - 1 or 1, 6)))
    return list(range(1 if step == 1 else step, last + 1, step))


#: A line of a terminal plot: epochs, values (as drawn), RGB colour.
Line = tuple[Sequence[float], Sequence[float], tuple[int, int, int]]


@dataclass(frozen=True)
class YAxis:
    """The y axis of a terminal plot: tick positions and labels, the limits, and (log) the
    floor under which values are drawn at the floor."""

    positions: list[float]
    labels: list[str]
    low: float
    high: float
    floor: float | None = None  # None: a linear axis

    def place(self, values: Sequence[float]) -> list[float]:
        """Where ``values`` are drawn on this axis (log: log10 of them)."""
        if self.floor is None:
            return list(values)
        floor = self.floor
        return [math.log10(max(v, floor)) for v in values]


def y_axis(values: Sequence[float], rows: int | None = None, log: bool = False, cap: int = 6) -> YAxis:
    """The y axis for ``values``: 1-2-5 ticks (``log``: 1-2-5 per decade, labelled in the
    values), at most ``cap`` of them and, given ``rows`` (the plot area's height), at most one
    every other row so that none is dropped or crowded. On a linear axis the top limit is
    stretched so that the ticks fall evenly on rows."""
    most = cap if rows is None else max(2, min(cap, (rows - 1) // 2 + 1))
    if log:
        floor = min((v for v in values if v > 0), default=1e-6)
        ticks = log_ticks(floor, max(max(values), floor))
        if most < len(ticks):  # keep the ends and thin the rest
            keep = max(1, math.ceil((len(ticks) - 1) / max(most - 1, 1)))
            ticks = ticks[::keep] if (len(ticks) - 1) % keep == 0 else [*ticks[::keep], ticks[-1]]
        positions = [math.log10(t) for t in ticks]
        return YAxis(positions, [f"{t:g}" for t in ticks], positions[0], positions[-1], floor)
    low, high = min(values), max(values)
    count = most
    ticks = nice_ticks(low, high, count)
    while len(ticks) > most and count > 1:  # fewer rows: a coarser step
        count -= 1
        ticks = nice_ticks(low, high, count)
    if len(ticks) > most:  # two rows' worth: the ends only
        ticks = [ticks[0], ticks[-1]]
    top = ticks[-1]
    if rows and rows > len(ticks) > 1:  # each tick on a row, evenly apart
        spacing = (rows - 1) // (len(ticks) - 1)
        top = ticks[0] + (ticks[1] - ticks[0]) * (rows - 1) / spacing
    return YAxis(ticks, tick_labels(ticks), ticks[0], top)


def band_lines(
    epochs: Sequence[float],
    mean: Sequence[float],
    std: Sequence[float],
    band_color: tuple[int, int, int],
    mean_color: tuple[int, int, int],
) -> tuple[list[Line], list[Line]]:
    """(mean - std and mean + std as two thin lines over the epochs where both are known, the
    mean as a line): how every terminal plot draws a spread."""
    band = [(e, m, s) for e, m, s in zip(epochs, mean, std) if not math.isnan(s) and not math.isnan(m)]
    bounds: list[Line] = []
    if band:
        xs = [e for e, _, _ in band]
        bounds = [(xs, [m - s for _, m, s in band], band_color), (xs, [m + s for _, m, s in band], band_color)]
    points = [(e, m) for e, m in zip(epochs, mean) if not math.isnan(m)]
    means: list[Line] = [([e for e, _ in points], [m for _, m in points], mean_color)] if points else []
    return bounds, means


def draw_frame(plt: Any, metric: str, last: int, log: bool, title: str | None) -> None:
    """A panel's title and epoch axis (1 .. ``last``)."""
    plt.title(title or CURVE_TITLES[metric] + (" (log)" if log else ""))
    plt.xlabel("epoch")
    plt.xlim(1, last)
    plt.xticks(_epoch_ticks(last))


def draw_lines(plt: Any, lines: list[Line], *, rows: int | None, log: bool, lr_step: int | None = None) -> None:
    """``lines`` (in order: the last on top) in braille with the y axis of :func:`y_axis`, and
    a vertical line after epoch ``lr_step``. Nothing when no value is finite."""
    values = [v for _, ys, _ in lines for v in ys if math.isfinite(v)]
    if not values:
        return
    axis = y_axis(values, rows, log)
    plt.ylim(axis.low, axis.high)
    plt.yticks(axis.positions, axis.labels)
    if lr_step is not None:
        plt.vline(lr_step + 0.5, LR_COLOR)
    for xs, ys, color in lines:
        plt.plot(xs, axis.place(ys), marker="braille", color=color)


def lr_step_epoch(curves: dict, last: int) -> int | None:
    """The last epoch at the first learning rate, when the rate changes within ``last``."""
    config = curves.get("config") if curves else None
    if config is None or config.lr_gamma == 1 or config.lr_step >= last:
        return None
    return config.lr_step


def legend(curves: dict | None, last: int | None = None) -> list[tuple[str, str, tuple]]:
    """What the drawing shows, as (glyph, words, colour): drawn outside the plot area."""
    runs = len(curves["reps"]) if curves else 0
    entries = [
        ("━━", f"mean of {runs} run(s)", MEAN_COLOR),
        ("┈┈", "mean ± std", BAND_COLOR),
        ("──", "each run", RUN_COLOR),
    ]
    config = curves.get("config") if curves else None
    step = lr_step_epoch(curves, last or config.epochs) if curves and config else None
    if config is not None and step is not None:
        entries.append(("│", f"lr ×{config.lr_gamma:g} after epoch {step}", LR_COLOR))
    return entries


def legend_line(curves: dict | None, last: int | None = None, color: bool = False) -> str:
    """The legend as one line of text (ANSI colours with ``color``)."""
    parts = []
    for glyph, words, rgb in legend(curves, last):
        if color:
            glyph = f"\x1b[38;2;{rgb[0]};{rgb[1]};{rgb[2]}m{glyph}\x1b[0m"
        parts.append(f"{glyph} {words}")
    return "   ".join(parts)


def draw_metric(
    plt: Any,
    curves: dict | None,
    metric: str,
    *,
    last: int | None = None,
    log: bool = False,
    title: str | None = None,
    rows: int | None = None,
) -> None:
    """Draw one metric into a plotext figure (the ``plotext`` module's active subplot or a
    textual-plotext ``Plot``): each run a thin grey line, mean - std and mean + std as two thin
    bounds, the mean on top, a vertical line after the learning-rate step's epoch, 1-2-5 ticks.

    ``log`` (losses only) draws log10 of the values with ticks labelled in the values. ``rows``
    (the plot area's height) caps the y ticks at one every other row, so none is dropped. No
    legend is drawn inside the plot: show :func:`legend` beside it.
    """
    log = log and metric in LOSS_METRICS
    epochs = curves["epochs"] if curves else []
    last = max(last or (epochs[-1] if epochs else 1), epochs[-1] if epochs else 1, 2)
    draw_frame(plt, metric, last, log, title)
    if not curves or not epochs:
        return
    series, mean, std = scaled(curves, metric)
    runs: list[Line] = [(list(range(1, len(values) + 1)), values, RUN_COLOR) for values in series.values() if values]
    bounds, means = band_lines(epochs, mean, std, BAND_COLOR, MEAN_COLOR)
    draw_lines(plt, runs + bounds + means, rows=rows, log=log, lr_step=lr_step_epoch(curves, last))


def terminal_panels(
    draw: Callable[[Any, str, int], None], width: int = 100, height: int | None = None, color: bool = True
) -> str:
    """The three metrics' panels as text (plotext), side by side when ``width`` allows (>= 150
    columns), else stacked; ``draw(panel, metric, rows)`` fills each (``rows``: the height of
    its plot area)."""
    import plotext as plt
    from plotext._figure import _figure_class

    side_by_side = width >= 150
    height = height or (22 if side_by_side else 45)
    # Its own figure: the module's keeps the previous call's subplots (clear_figure() clears the
    # active one only), so a second plot in one process would draw over the first's.
    figure = _figure_class()
    figure._limit_size(False, False)  # the size asked for, not the (unknown when piped) terminal's
    figure.subplots(1, 3) if side_by_side else figure.subplots(3, 1)
    figure.plot_size(width, height)
    rows = (height if side_by_side else height // 3) - 5
    for index, metric in enumerate(CURVE_METRICS, start=1):
        panel = figure.subplot(1, index) if side_by_side else figure.subplot(index, 1)
        panel.theme("pro")
        draw(panel, metric, rows)
    text = figure.build()
    return text if color else plt.uncolorize(text)


def terminal_plot(
    curves: dict, width: int = 100, height: int | None = None, color: bool = True, log: bool = False
) -> str:
    """The three panels as text (plotext, as the TUI draws them), the legend on a line of its
    own under them. Side by side when ``width`` allows (>= 150 columns), else stacked."""
    last = curves["config"].epochs if curves.get("config") else None

    def draw(panel: Any, metric: str, rows: int) -> None:
        draw_metric(panel, curves, metric, last=last, log=log, rows=rows)

    text = terminal_panels(draw, width, height, color)
    return f"{curves['label']}: {subtitle(curves)}\n{text}\n{legend_line(curves, last, color=color)}\n"


# -- figure file ------------------------------------------------------------------------------


def check_figure_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise ConfigError(f"cannot write a figure to {path}: use a name ending in {', '.join(FIGURE_FORMATS)}")
    if _is_dir(path):
        raise ConfigError(f"--output {path} is a directory: give a file name such as {path}/fig.png")
    parent = path.parent
    if _exists(parent) and not _is_dir(parent):
        raise ConfigError(
            f"cannot write {path}: {parent} is a file, not a folder (choose a folder, e.g. --output fig.png)"
        )
    if not _is_dir(parent):
        ancestor = next((p for p in parent.parents if _exists(p)), None)
        if ancestor is not None and not ancestor.is_dir():
            raise ConfigError(
                f"cannot write {path}: {ancestor} is a file, not a folder (choose a folder, e.g. --output fig.png)"
            )
        raise ConfigError(f"the folder {parent} of --output {path} does not exist: create it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write {path}: the folder {parent} is not writable (make it writable or choose another --output)"
        )
    if _exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write {path}: the file is read-only (make it writable or choose another --output)")
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a too long name, a symlink loop
        return False


def save_figure(curves: dict, path: str | Path, paper: dict | None = None, title: str | None = None) -> Path:
    """Write the three panels with matplotlib (Agg; PNG, SVG or PDF by the file's extension).

    Each panel shows every run thinly, the mean and a ±std band (``fill_between``). ``paper``
    (metric -> (mean, std), accuracies as fractions) marks the paper's final-epoch value.
    """
    path = check_figure_path(path)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    x = curves["epochs"]
    for ax, metric in zip(axes, CURVE_METRICS, strict=True):
        scale = metric_scale(metric)
        series, mean, std = scaled(curves, metric)
        for values in series.values():
            ax.plot(range(1, len(values) + 1), values, color="tab:blue", alpha=0.15, linewidth=0.7)
        lower, upper = spread(mean, std)
        ax.fill_between(x, lower, upper, color="tab:blue", alpha=0.25, linewidth=0, label="± std")
        ax.plot(x, mean, color="tab:blue", linewidth=1.8, label="mean")
        if paper and metric in paper and x:
            reference_mean, reference_std = paper[metric]
            ax.errorbar(
                [x[-1]],
                [reference_mean * scale],
                yerr=[reference_std * scale],
                fmt="o",
                color="tab:red",
                capsize=4,
                label="paper (final epoch)",
            )
        ax.set_title(CURVE_TITLES[metric])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title or f"{curves['label']}: {subtitle(curves)}")
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:  # raced away, disk full, a name the file system refuses
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc} (choose another --output)") from None
    return path
