"""Several setups' mean curves on one plot per metric (the paper's Figs 4-6 side by side).

``overlay_curves`` reads the curves of several configurations (``core.curves.epoch_curves``
each), ``best_config_ids`` picks the best setup of each structure on validation (as ``pairs
best`` does, through ``core.stats.best_setups``) and ``resolve_setups`` turns the command
line's ``STRUCTURE:ARCH:KERNEL`` / ``best`` into configurations of one protocol. The drawing
(``draw_overlay`` for plotext, shared by the console and ``pairs plot --compare``;
``save_overlay_figure`` for matplotlib) puts each setup's mean in its own colour with its
mean - std and mean + std as two thin bounds of the same, dimmer colour; the legend (each
setup, its n and final mean ± std) is never drawn inside a plot: :func:`overlay_legend` gives
its lines.

Plain Python here (no torch, no textual); plotext and matplotlib load only when drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError
from core.curves import (
    CURVE_METRICS,
    CURVE_TITLES,
    LOSS_METRICS,
    Line,
    band_lines,
    check_figure_path,
    draw_frame,
    draw_lines,
    epoch_curves,
    metric_scale,
    scaled,
    spread,
    terminal_panels,
)
from core.protocol import Protocol, ProtocolChoice, available_line, ordered
from core.store import Store

#: One colour per overlaid setup (RGB), then again from the start.
PALETTE = ((70, 160, 220), (255, 160, 40), (90, 200, 110), (220, 90, 200), (230, 210, 70), (240, 90, 90))
#: The matplotlib colours of the same order.
MPL_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:olive", "tab:red")
MAX_OVERLAID = 12


def color_of(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def dim(rgb: tuple[int, int, int], factor: float = 0.55) -> tuple[int, int, int]:
    """The colour of a setup's ±std bounds: its own, darker."""
    return tuple(int(c * factor) for c in rgb)  # type: ignore[return-value]


# -- data -----------------------------------------------------------------------------------


def overlay_curves(store: Store, config_ids: list[str]) -> list[dict]:
    """``epoch_curves`` of each configuration, in the given order (duplicates dropped), each
    with its ``protocol`` added. ConfigError for an id not in the database."""
    known = {row["id"] for row in store.config_progress()}
    result = []
    for config_id in dict.fromkeys(config_ids):
        if config_id not in known:
            raise ConfigError(f"configuration {config_id} is not in {store.path}")
        curves = epoch_curves(store, config_id)
        curves["protocol"] = Protocol.of(curves["config"])
        result.append(curves)
    return result


def best_config_ids(store: Store, rows=None) -> list[str]:
    """The best setup of each structure (mean validation accuracy of its done runs, as ``pairs
    best`` chooses), per protocol of ``rows`` (all setups when None), the paper's first."""
    from core.stats import best_per_protocol

    return [b.row.config_id for comparison in best_per_protocol(store, rows) for b in comparison.best]


def final_value(curves: dict, metric: str) -> tuple[float, float, int, int]:
    """(mean, std, n, epoch) at the last epoch drawn of ``metric`` (accuracies in percent);
    std NaN with fewer than two runs."""
    data = curves["metrics"][metric]
    scale = metric_scale(metric)
    for index in range(len(curves["epochs"]) - 1, -1, -1):
        mean = data["mean"][index]
        if not math.isnan(mean):
            return mean * scale, data["std"][index] * scale, data["n"][index], curves["epochs"][index]
    return math.nan, math.nan, 0, 0


def format_final(mean: float, std: float, metric: str) -> str:
    if math.isnan(mean):
        return "-"
    digits = 1 if metric == "val_acc" else 3
    text = f"{mean:.{digits}f}"
    return text if math.isnan(std) else f"{text}±{std:.{digits}f}"


@dataclass(frozen=True)
class LegendEntry:
    """What the legend says of one overlaid setup."""

    label: str  # ``shared A5 k5``
    protocol: str  # the protocol's label
    n: int  # runs at the final epoch
    runs: int  # runs drawn
    epoch: int  # the final epoch drawn
    epochs: int  # the configuration's epochs
    finals: dict  # metric -> "mean±std" at the final epoch
    color: tuple[int, int, int]

    @property
    def head(self) -> str:
        text = f"{self.label}  n={self.n}"
        if self.epoch and self.epoch < self.epochs:
            text += f" (epoch {self.epoch}/{self.epochs})"
        return text

    def values(self, short: bool = False) -> str:
        names = (
            {"train_loss": "train", "val_loss": "val", "val_acc": "acc %"}
            if short
            else {"train_loss": "train loss", "val_loss": "val loss", "val_acc": "val acc %"}
        )
        return "  ".join(f"{names[m]} {self.finals[m]}" for m in CURVE_METRICS)


def overlay_legend(overlaid: list[dict], *, with_protocol: bool | None = None) -> list[LegendEntry]:
    """One entry per overlaid setup, in its drawing colour; ``with_protocol`` (default: when
    they are of several protocols) says each one's protocol."""
    several = len({c["protocol"].id for c in overlaid}) > 1
    entries = []
    for index, curves in enumerate(overlaid):
        finals, n, epoch = {}, 0, 0
        for metric in CURVE_METRICS:
            mean, std, count, last = final_value(curves, metric)
            finals[metric] = format_final(mean, std, metric)
            if metric == "val_acc":
                n, epoch = count, last
        protocol = curves["protocol"].label if (several if with_protocol is None else with_protocol) else ""
        entries.append(
            LegendEntry(
                curves["label"],
                protocol,
                n,
                len(curves["reps"]),
                epoch,
                curves["config"].epochs,
                finals,
                color_of(index),
            )
        )
    return entries


def legend_lines(entries: list[LegendEntry], color: bool = False) -> list[str]:
    """The legend as text, one line per setup (ANSI colours with ``color``)."""
    lines = []
    width = max((len(e.head) for e in entries), default=0)
    for e in entries:
        glyph = "━━"
        if color:
            r, g, b = e.color
            glyph = f"\x1b[38;2;{r};{g};{b}m{glyph}\x1b[0m"
        line = f"{glyph} {e.head:<{width}}  {e.values()}"
        if e.protocol:
            line += f"  · protocol {e.protocol}"
        lines.append(line)
    lines.append("thin lines of the same colour: mean - std and mean + std; values at the final epoch")
    return lines


def shared_lr_step(overlaid: list[dict]) -> tuple[int, float] | None:
    """(last epoch at the first rate, gamma) when every overlaid setup steps its learning rate
    at the same epoch within the plotted epochs (the plots then mark it), else None."""
    steps = {(c["config"].lr_step, c["config"].lr_gamma) for c in overlaid}
    if len(steps) != 1:
        return None
    step, gamma = next(iter(steps))
    last = max(c["config"].epochs for c in overlaid)
    return (step, gamma) if gamma != 1 and step < last else None


def lr_line(overlaid: list[dict]) -> str | None:
    step = shared_lr_step(overlaid)
    return None if step is None else f"lr ×{step[1]:g} after epoch {step[0]}"


# -- choosing the setups (the command line) -------------------------------------------------


def parse_setup(text: str) -> tuple[str, str, int]:
    """``shared:A5:5`` -> ("shared", "A5", 5); ConfigError naming the expected form."""
    from core.curves import _check_setup

    parts = str(text).strip().split(":")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ConfigError(f"--compare {text!r} is not a setup: write STRUCTURE:ARCH:KERNEL (e.g. shared:A5:5) or best")
    try:
        return _check_setup(*(p.strip() for p in parts))
    except ConfigError as exc:
        raise ConfigError(f"--compare {text}: {exc}") from None


def resolve_setups(
    store: Store, specs: list[str], choice: ProtocolChoice | None = None, across_protocols: bool = False
) -> list[str]:
    """The configuration ids ``pairs plot --compare SPEC ...`` overlays.

    A spec is ``STRUCTURE:ARCH:KERNEL`` or ``best`` (the best setup of each structure on
    validation). The setups must be of one protocol (the chosen one, if ``choice`` chooses)
    unless ``across_protocols``; ConfigError, one line, for a bad spec, a setup not in the
    database, or several protocols without a choice.
    """
    rows = store.config_progress()
    present = [r for r in rows if r["total"]]
    protocols = {r["id"]: Protocol.of(r) for r in present}
    allowed = set(protocols)
    if choice is not None and not choice.empty:
        chosen = {p.id for p in choice.select(protocols.values())}
        allowed = {cid for cid, p in protocols.items() if p.id in chosen}
    ids: list[str] = []
    for spec in specs:
        if str(spec).strip().lower() == "best":
            from core.stats import setup_rows

            table = [r for r in setup_rows(store) if r.config_id in allowed]
            picked = best_config_ids(store, table)
            if not picked:
                raise ConfigError(
                    f"--compare best: no setup has done runs in {store.path} "
                    "(of the chosen protocol): train some with pairs work"
                )
            ids += picked
            continue
        structure, arch, kernel = parse_setup(spec)
        matching = [r["id"] for r in present if (r["structure"], r["arch"], r["kernel"]) == (structure, arch, kernel)]
        if not matching:
            raise ConfigError(
                f"--compare {spec}: no runs of {structure} {arch} k{kernel} in "
                f"{store.path}: queue them with pairs run --structure {structure} "
                f"--arch {arch} --kernel {kernel}"
            )
        kept = [cid for cid in matching if cid in allowed]
        if not kept:
            raise ConfigError(
                f"--compare {spec}: {structure} {arch} k{kernel} has no runs of "
                f"the chosen protocol ({choice.describe() if choice else ''}); its "
                f"protocols: {available_line(protocols[c] for c in matching)}"
            )
        ids += kept
    ids = list(dict.fromkeys(ids))
    used = ordered(protocols[c] for c in ids)
    if len(used) > 1 and not across_protocols:
        raise ConfigError(
            f"the setups compared have runs of {len(used)} protocols: choose one "
            f"with --protocol (or a protocol flag, e.g. --epochs), or overlay them "
            f"with --across-protocols; available: {available_line(used)}"
        )
    if len(ids) > MAX_OVERLAID:
        raise ConfigError(
            f"--compare: {len(ids)} setups are more than {MAX_OVERLAID} on one "
            "plot: give fewer setups or choose a protocol"
        )
    return ids


# -- plotext --------------------------------------------------------------------------------


def draw_overlay(
    plt, overlaid: list[dict], metric: str, *, log: bool = False, title: str | None = None, rows: int | None = None
) -> None:
    """Draw one metric of several setups into a plotext figure: per setup (in the order given,
    colour ``color_of(index)``) the mean as a line and mean ± std as two thin bounds of the
    dimmer colour, 1-2-5 ticks, the learning-rate step when every setup shares it. No legend
    inside the plot (see :func:`overlay_legend`)."""
    log = log and metric in LOSS_METRICS
    last = max([2] + [c["epochs"][-1] for c in overlaid if c["epochs"]] + [c["config"].epochs for c in overlaid])
    draw_frame(plt, metric, last, log, title)
    bounds: list[Line] = []
    means: list[Line] = []
    for index, curves in enumerate(overlaid):
        _, mean, std = scaled(curves, metric)
        color = color_of(index)
        setup_bounds, setup_mean = band_lines(curves["epochs"], mean, std, dim(color), color)
        bounds += setup_bounds
        means += setup_mean
    step = shared_lr_step(overlaid)
    draw_lines(
        plt,
        bounds + means,
        rows=rows,
        log=log,  # every mean on top of every band
        lr_step=step[0] if step is not None and step[0] < last else None,
    )


def terminal_overlay(
    overlaid: list[dict], width: int = 100, height: int | None = None, color: bool = True, log: bool = False
) -> str:
    """``pairs plot --compare`` in the terminal: the three panels (side by side from 150
    columns, else stacked), the legend lines under them."""

    def draw(panel, metric: str, rows: int) -> None:
        draw_overlay(panel, overlaid, metric, log=log, rows=rows)

    text = terminal_panels(draw, width, height, color)
    lines = legend_lines(overlay_legend(overlaid), color)
    if lr_line(overlaid):
        lines.append(f"│ {lr_line(overlaid)}")
    return f"{overlay_title(overlaid)}\n{text}\n" + "\n".join(lines) + "\n"


def overlay_title(overlaid: list[dict]) -> str:
    protocols = ordered(c["protocol"] for c in overlaid)
    which = f"protocol {protocols[0].label}" if len(protocols) == 1 else f"{len(protocols)} protocols"
    return f"{len(overlaid)} setups compared ({which}): mean ± std over runs"


# -- matplotlib -----------------------------------------------------------------------------


def save_overlay_figure(overlaid: list[dict], path: str | Path) -> Path:
    """The three panels with matplotlib (PNG, SVG or PDF): each setup's mean and ±std band
    (``fill_between``) in its colour; the legend under the panels, outside every plot."""
    path = check_figure_path(path)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    entries = overlay_legend(overlaid)
    figure = Figure(figsize=(13, 4.2 + 0.28 * len(entries)), layout="constrained")
    axes = figure.subplots(1, 3)
    handles = []
    for ax, metric in zip(axes, CURVE_METRICS, strict=True):
        for index, curves in enumerate(overlaid):
            colour = MPL_PALETTE[index % len(MPL_PALETTE)]
            x = curves["epochs"]
            _, mean, std = scaled(curves, metric)
            lower, upper = spread(mean, std)
            ax.fill_between(x, lower, upper, color=colour, alpha=0.2, linewidth=0)
            (line,) = ax.plot(x, mean, color=colour, linewidth=1.8)
            if metric == CURVE_METRICS[0]:
                handles.append(line)
        ax.set_title(CURVE_TITLES[metric])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    labels = [f"{e.head}: {e.values()}" + (f" (protocol {e.protocol})" if e.protocol else "") for e in entries]
    figure.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=1,
        fontsize="small",
        title="mean (band: ± std); values at the final epoch",
        frameon=False,
    )
    figure.suptitle(overlay_title(overlaid))
    figure.savefig(path, dpi=120)
    return path
