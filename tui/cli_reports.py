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
from core.config import STRUCTURES
from core.curves import (
    check_figure_path,
    check_has_epochs,
    epoch_curves,
    find_config,
    save_figure,
    terminal_plot,
)
from core.protocol import Protocol, ProtocolChoice, available_line
from tui.cli import DEFAULTS, DbOption, app, complete_arch, complete_structure, out, protocol_choice
from tui.literal import clean, clean_block, literal

PlotStructure = Annotated[str, typer.Option(help="A structure: " + ", ".join(STRUCTURES) + ".",
                                            autocompletion=complete_structure)]
PlotArch = Annotated[str, typer.Option(help="Table I architecture A1-A6.",
                                       autocompletion=complete_arch)]
PlotKernel = Annotated[int, typer.Option(help="Convolution kernel, 3 or 5.")]
FigureOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write a figure file (.png, .svg or .pdf) instead of "
                                        "plotting in the terminal.", show_default=False),
]

CompareOpt = Annotated[list[str] | None, typer.Option(
    "--compare", metavar="SETUP",
    help="Overlay setups, each STRUCTURE:ARCH:KERNEL (e.g. shared:A5:5), or best (the best "
         "setup of each structure on validation, as pairs best); repeat for several.",
    show_default=False)]
AcrossOpt = Annotated[bool, typer.Option(
    "--across-protocols", help="With --compare: overlay setups of several protocols (the "
                               "legend names each one's protocol).")]


@app.command()
@protocol_choice
def plot(
    structure: PlotStructure = DEFAULTS.structure, arch: PlotArch = DEFAULTS.arch,
    kernel: PlotKernel = DEFAULTS.kernel, output: FigureOutput = None,
    log: Annotated[bool, typer.Option("--log", help="The losses on a log scale (terminal).")] = False,
    compare_setups: CompareOpt = None, across_protocols: AcrossOpt = False,
    db: DbOption = None, choice: ProtocolChoice | None = None,
) -> None:
    """Train loss, val loss and val accuracy per epoch: mean ± std over runs (Figs 4-6) of one
    setup under one protocol (with several in the database, choose one); with --compare,
    several setups' means overlaid, each with its ± std."""
    if output is not None:
        check_figure_path(output)
    if across_protocols and not compare_setups:
        raise api.ConfigError("--across-protocols is for --compare: give the setups to overlay "
                              "(e.g. --compare best)")
    if compare_setups:
        _plot_compare(compare_setups, output, log, across_protocols, db, choice)
        return
    with api.open_store(db, create=False) as store:
        config_id = find_config(store, structure, arch, kernel)
        config_id = _one_protocol(store, config_id, choice)
        curves = epoch_curves(store, config_id)
        check_has_epochs(curves, store)
    protocol = Protocol.of(curves["config"])
    if output is None:
        width = shutil.get_terminal_size((100, 40)).columns
        color = sys.stdout.isatty()  # the plot's own colours: clean the data, not the output
        plotted = terminal_plot({**curves, "label": clean(curves["label"])}, width=width,
                                color=color, log=log)
        sys.stdout.write(plotted if color else clean_block(plotted))
    else:
        config = curves["config"]
        reference = compare.paper_final(config.structure, config.arch, config.kernel,
                                        config.epochs) if protocol.is_paper else None
        save_figure(curves, output, reference)
        out.print(literal(f"wrote {output} ({curves['label']}, protocol {protocol.label}, "
                          f"{len(curves['reps'])} run(s))"), soft_wrap=True)


def _plot_compare(specs: list[str], output: Path | None, log: bool, across: bool, db,
                  choice: ProtocolChoice | None) -> None:
    from core.overlay import overlay_curves, resolve_setups, save_overlay_figure, terminal_overlay

    with api.open_store(db, create=False) as store:
        overlaid = overlay_curves(store, resolve_setups(store, specs, choice, across))
        for curves in overlaid:
            check_has_epochs(curves, store)
    if output is None:
        width = shutil.get_terminal_size((100, 40)).columns
        sys.stdout.write(terminal_overlay(overlaid, width=width, color=sys.stdout.isatty(),
                                          log=log))
    else:
        save_overlay_figure(overlaid, output)
        out.print(f"wrote {output} ({', '.join(c['label'] for c in overlaid)})", soft_wrap=True,
                  markup=False)


def _one_protocol(store, config_id: str, choice: ProtocolChoice | None) -> str:
    """The configuration of the setup of ``config_id`` under the chosen protocol; with several
    protocols and no choice, a ConfigError naming them."""
    config = store.config(config_id)
    candidates = {}
    for row in store.setup_configs(config.structure, config.arch, config.kernel):
        if row["total"]:
            candidates[Protocol.of(row).id] = (Protocol.of(row), row["id"])
    protocols = [p for p, _ in candidates.values()]
    if choice is not None and not choice.empty:
        chosen = choice.select(protocols)
    else:
        chosen = protocols
    if len(chosen) > 1:
        raise api.ConfigError(
            f"{config.label} has runs of {len(chosen)} protocols: choose one with --protocol "
            f"(or the protocol flags, e.g. --epochs); available: {available_line(chosen)}")
    return candidates[chosen[0].id][1]


@app.command()
@protocol_choice
def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for report.md and its "
                                                                "figures.")] = Path("report"),
    db: DbOption = None, choice: ProtocolChoice | None = None,
) -> None:
    """One Markdown reproduction report of one protocol (the paper's by default): Tables II-IV
    vs the paper, tests, Figs 4-6."""
    from core.reproduction import write_report

    with api.open_store(db, create=False) as store:
        result = write_report(store, output, choice=choice)
    out.print(literal(f"wrote {result.path} and {len(result.figures)} figure(s)"), soft_wrap=True)
