"""``pairs plot`` and ``pairs report``: Figs 4-6 and the reproduction report.

Registered on the ``pairs`` Typer app by importing this module (``tui/cli.py`` does so).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from core import api, compare
from core.curves import (
    check_figure_path,
    check_has_epochs,
    epoch_curves,
    find_config,
    save_figure,
    terminal_plot,
)
from tui.cli import DEFAULTS, DbOption, app, err, out
from tui.literal import clean, clean_block, literal

PlotStructure = Annotated[str, typer.Option(help="independent, shared or shared-aux.")]
PlotArch = Annotated[str, typer.Option(help="Table I architecture A1-A6.")]
PlotKernel = Annotated[int, typer.Option(help="Convolution kernel, 3 or 5.")]
FigureOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write a figure file (.png, .svg or .pdf) instead of "
                                        "plotting in the terminal.", show_default=False),
]


@app.command()
def plot(
    structure: PlotStructure = DEFAULTS.structure, arch: PlotArch = DEFAULTS.arch,
    kernel: PlotKernel = DEFAULTS.kernel, output: FigureOutput = None, db: DbOption = None,
) -> None:
    """Train loss, val loss and val accuracy per epoch: mean ± std over runs (Figs 4-6)."""
    if output is not None:
        check_figure_path(output)
    with api.open_store(db, create=False) as store:
        config_id = find_config(store, structure, arch, kernel)
        curves = epoch_curves(store, config_id)
        check_has_epochs(curves, store)
        others = _other_configs(store, curves)
    if output is None:
        width = shutil.get_terminal_size((100, 40)).columns
        color = sys.stdout.isatty()  # the plot's own colours: clean the data, not the output
        plotted = terminal_plot({**curves, "label": clean(curves["label"])}, width=width,
                                color=color)
        sys.stdout.write(plotted if color else clean_block(plotted))
    else:
        config = curves["config"]
        reference = compare.paper_final(config.structure, config.arch, config.kernel,
                                        config.epochs)
        save_figure(curves, output, reference)
        out.print(literal(f"wrote {output} ({curves['label']}, {len(curves['reps'])} run(s))"),
                  soft_wrap=True)
    if others:
        err.print(literal(f"note: {others} other configuration(s) of {curves['label']} differ in "
                          f"other settings; plotted {curves['config_id']} (the one with the most "
                          f"done runs)"))


def _other_configs(store, curves: dict) -> int:
    config = curves["config"]
    return store.db.execute(
        "SELECT count(*) FROM configs WHERE structure = ? AND arch = ? AND kernel = ? "
        "AND id != ?", [config.structure, config.arch, config.kernel, curves["config_id"]],
    ).fetchone()[0]


@app.command()
def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for report.md and its "
                                                                "figures.")] = Path("report"),
    db: DbOption = None,
) -> None:
    """One Markdown reproduction report: protocol, Tables II-IV vs the paper, tests, Figs 4-6."""
    from core.reproduction import write_report

    with api.open_store(db, create=False) as store:
        result = write_report(store, output)
    out.print(literal(f"wrote {result.path} and {len(result.figures)} figure(s)"), soft_wrap=True)
