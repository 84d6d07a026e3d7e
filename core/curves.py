"""Per-epoch curves of a setup over its repetitions (the paper's Figs 4-6), as data and plots.

``epoch_curves`` is plain Python (no torch, no plotting library): the CLI, the report and the
TUI's plot widget share it. ``terminal_plot`` (plotext) and ``save_figure`` (matplotlib, Agg)
import their library only when called.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from core.config import ConfigError, RunConfig
from core.store import Store

CURVE_METRICS = ("train_loss", "val_loss", "val_acc")
CURVE_TITLES = {"train_loss": "Train loss", "val_loss": "Validation loss",
                "val_acc": "Validation accuracy (%)"}
FIGURE_FORMATS = (".png", ".svg", ".pdf")


def find_config(store: Store, structure: str, arch: str, kernel: int | str) -> str:
    """The configuration id of a setup; among several (other hyperparameters differ), the one
    with the most done runs (then the most runs, then the newest).

    Raises ConfigError on an unknown structure/arch/kernel or when the database has no such
    setup.
    """
    structure, arch, kernel = _check_setup(structure, arch, kernel)
    candidates = [
        row for row in store.config_progress()
        if (row["structure"], row["arch"], row["kernel"]) == (structure, arch, kernel)
        and row["total"]
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
    return {"config_id": config_id, "label": config.label, "config": config, "epochs": epochs,
            "reps": reps, "done": done, "metrics": metrics}


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
            f"no epoch recorded yet for {curves['label']} in {store.path}: "
            "train its queued runs with pairs work"
        )


def _scaled(curves: dict, metric: str) -> tuple[list[float], list[float]]:
    scale = 100.0 if metric == "val_acc" else 1.0
    data = curves["metrics"][metric]
    return [m * scale for m in data["mean"]], [s * scale for s in data["std"]]


def subtitle(curves: dict) -> str:
    runs = len(curves["reps"])
    return f"mean ± std over {runs} run(s), {curves['done']} done"


# -- terminal ---------------------------------------------------------------------------------

def terminal_plot(curves: dict, width: int = 100, height: int | None = None,
                  color: bool = True) -> str:
    """The three panels as text (plotext): the mean and, dotted, mean - std and mean + std.

    Side by side when ``width`` allows (>= 150 columns), else stacked.
    """
    import plotext as plt

    side_by_side = width >= 150
    height = height or (22 if side_by_side else 45)
    plt.clear_figure()
    plt.limitsize(False, False)  # the size asked for, not the (unknown when piped) terminal's
    if side_by_side:
        plt.subplots(1, 3)
    else:
        plt.subplots(3, 1)
    plt.plotsize(width, height)
    for index, metric in enumerate(CURVE_METRICS, start=1):
        if side_by_side:
            plt.subplot(1, index)
        else:
            plt.subplot(index, 1)
        plt.theme("pro")
        mean, std = _scaled(curves, metric)
        x = curves["epochs"]
        band = [(e, m, s) for e, m, s in zip(x, mean, std, strict=True) if not math.isnan(s)]
        if band:
            xs = [e for e, _, _ in band]
            plt.plot(xs, [m + s for _, m, s in band], color="gray", marker="dot", label="± std")
            plt.plot(xs, [m - s for _, m, s in band], color="gray", marker="dot")
        plt.plot(x, mean, color="blue", marker="braille", label="mean")
        plt.title(CURVE_TITLES[metric])
        plt.xlabel("epoch")
    text = plt.build()
    plt.clear_figure()
    if not color:
        text = plt.uncolorize(text)
    return f"{curves['label']}: {subtitle(curves)}\n{text}\n"


# -- figure file ------------------------------------------------------------------------------

def check_figure_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise ConfigError(
            f"cannot write a figure to {path}: use a name ending in "
            f"{', '.join(FIGURE_FORMATS)}"
        )
    if _is_dir(path):
        raise ConfigError(
            f"--output {path} is a directory: give a file name such as {path}/fig.png"
        )
    parent = path.parent
    if _exists(parent) and not _is_dir(parent):
        raise ConfigError(f"cannot write {path}: {parent} is a file, not a folder (choose a "
                          f"folder, e.g. --output fig.png)")
    if not _is_dir(parent):
        ancestor = next((p for p in parent.parents if _exists(p)), None)
        if ancestor is not None and not ancestor.is_dir():
            raise ConfigError(f"cannot write {path}: {ancestor} is a file, not a folder (choose a "
                              f"folder, e.g. --output fig.png)")
        raise ConfigError(f"the folder {parent} of --output {path} does not exist: create it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: the folder {parent} is not writable (make it "
                          f"writable or choose another --output)")
    if _exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write {path}: the file is read-only (make it writable or "
                          f"choose another --output)")
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


def save_figure(curves: dict, path: str | Path, paper: dict | None = None,
                title: str | None = None) -> Path:
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
        scale = 100.0 if metric == "val_acc" else 1.0
        data = curves["metrics"][metric]
        for values in data["series"].values():
            ax.plot(range(1, len(values) + 1), [v * scale for v in values], color="tab:blue",
                    alpha=0.15, linewidth=0.7)
        mean, std = _scaled(curves, metric)
        lower = [m - s if not math.isnan(s) else m for m, s in zip(mean, std, strict=True)]
        upper = [m + s if not math.isnan(s) else m for m, s in zip(mean, std, strict=True)]
        ax.fill_between(x, lower, upper, color="tab:blue", alpha=0.25, linewidth=0,
                        label="± std")
        ax.plot(x, mean, color="tab:blue", linewidth=1.8, label="mean")
        if paper and metric in paper and x:
            reference_mean, reference_std = paper[metric]
            ax.errorbar([x[-1]], [reference_mean * scale], yerr=[reference_std * scale],
                        fmt="o", color="tab:red", capsize=4, label="paper (final epoch)")
        ax.set_title(CURVE_TITLES[metric])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title or f"{curves['label']}: {subtitle(curves)}")
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:  # raced away, disk full, a name the file system refuses
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc} (choose another "
                          f"--output)") from None
    return path
