"""``pairs table``, ``best``, ``models``, ``plot`` and ``report``: what the database holds.

Each report takes the protocol filters (the protocol flags of ``pairs queue`` and
``--protocol``, ``tui.cli.options.protocol_choice``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from core import api, compare
from core.config import STRUCTURES, RunConfig
from core.curves import (
    check_figure_path,
    check_has_epochs,
    epoch_curves,
    find_config,
    save_figure,
    terminal_plot,
)
from core.protocol import Protocol, ProtocolChoice, available_line
from tui.cli.options import (
    DbOption,
    FormatOpt,
    StructureOpt,
    complete_arch,
    complete_structure,
    protocol_choice,
)
from tui.cli.output import notes, out, print_tables
from tui.literal import clean, clean_block, literal

app = typer.Typer()
DEFAULTS = RunConfig()


@app.command()
@protocol_choice
def table(
    structure: StructureOpt = None,
    format: FormatOpt = "rich",
    compare: Annotated[
        str | None,
        typer.Option(
            help="`paper`: beside each cell the paper's mean ± std "
            "and the difference in paper σ (runs of the "
            "paper's protocol, unless --protocol or a "
            "protocol flag chooses others).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    choice: ProtocolChoice | None = None,
) -> None:
    """Final-epoch mean ± std per setup, in the layout of the paper's Tables II-IV: one table
    per structure and protocol (rows of two protocols are never ranked or bolded together)."""
    fmt = api.check_format(format)
    api.check_compare(compare)
    structures = api.check_structures(structure)
    caveats: list[str] = []
    with api.open_store(db, create=False) as store:
        if compare:
            rows, caveats = api.compare_rows(store, structures, choice)
        else:
            rows = api.table_rows(store, structures, choice)
        mixed = api.code_version_note(store, rows)
    if fmt == "rich":
        for line in caveats:  # first, and once: not again in the tables' captions
            out.print(literal(line, "bold yellow"))
        tables = api.compare_tables(rows) if compare else api.paper_tables(rows)
        for t in tables:
            t.notes = [n for n in t.notes if not n.lower().startswith("caveat: ")]
        print_tables(tables)
        if not rows:
            out.print("no configurations in this database yet")
        notes([], mixed, fmt)
    else:
        sys.stdout.write(clean_block(api.render_comparison(rows, fmt) if compare else api.render_rows(rows, fmt)))
        notes(caveats, mixed, fmt)


@app.command()
@protocol_choice
def best(
    format: FormatOpt = "rich",
    db: DbOption = None,
    choice: ProtocolChoice | None = None,
) -> None:
    """The best setup of each structure on the test set, with Welch p-values between structures,
    per protocol (a best setup is never chosen, nor a p-value computed, across protocols)."""
    fmt = api.check_format(format)
    with api.open_store(db, create=False) as store:
        rows = api.table_rows(store, None, choice)
        comparisons = api.best_of_protocols(store, rows)
        mixed = api.code_version_note(store, rows)  # the best setups are chosen among all
    if fmt == "rich":
        print_tables([api.best_table(c) for c in comparisons])
        if not comparisons:
            out.print("no configurations in this database yet")
    else:
        sys.stdout.write(clean_block(api.render_best(comparisons, fmt)))
    notes([], mixed, fmt)


@app.command()
def models(
    layers: Annotated[
        tuple[str, str, int] | None,
        typer.Option(
            "--layers",
            metavar="STRUCTURE ARCH KERNEL",
            help="Draw one setup's layers (Figs 1-3): each layer's output shape and parameters.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Every structure x architecture x kernel with its parameter count (with --db: and how
    many runs of each setup that database holds; --layers: one setup's layers)."""
    if layers is not None:
        from core.curves import _check_setup
        from tui.widgets.model import model_diagram

        structure, arch, kernel = _check_setup(*layers)
        config = RunConfig(structure=structure, arch=arch, kernel=kernel)
        out.print(model_diagram(config, width=out.width), soft_wrap=True)
        return
    counts = None
    if db is not None:
        with api.open_store(db, create=False) as store:
            counts = store.setup_run_counts()
    columns = ["structure", "arch", "channels", "kernel", "parameters"]
    table = RichTable(*columns, *(["runs in --db"] if counts is not None else []))
    for row in api.model_catalog():
        extra = [] if counts is None else [str(counts.get((row["structure"], row["arch"], row["kernel"]), 0))]
        table.add_row(
            row["structure"], row["arch"], row["channels"], str(row["kernel"]), f"{row['parameters']:,}", *extra
        )
    out.print(table)


PlotStructure = Annotated[
    str, typer.Option(help="A structure: " + ", ".join(STRUCTURES) + ".", autocompletion=complete_structure)
]
PlotArch = Annotated[str, typer.Option(help="Table I architecture A1-A6.", autocompletion=complete_arch)]
PlotKernel = Annotated[int, typer.Option(help="Convolution kernel, 3 or 5.")]
FigureOutput = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write a figure file (.png, .svg or .pdf) instead of plotting in the terminal.",
        show_default=False,
    ),
]

CompareOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--compare",
        metavar="SETUP",
        help="Overlay setups, each STRUCTURE:ARCH:KERNEL (e.g. shared:A5:5), or best (the best "
        "setup of each structure on validation, as pairs best); repeat for several.",
        show_default=False,
    ),
]
AcrossOpt = Annotated[
    bool,
    typer.Option(
        "--across-protocols",
        help="With --compare: overlay setups of several protocols (the legend names each one's protocol).",
    ),
]


@app.command()
@protocol_choice
def plot(
    structure: PlotStructure = DEFAULTS.structure,
    arch: PlotArch = DEFAULTS.arch,
    kernel: PlotKernel = DEFAULTS.kernel,
    output: FigureOutput = None,
    log: Annotated[bool, typer.Option("--log", help="The losses on a log scale (terminal).")] = False,
    compare_setups: CompareOpt = None,
    across_protocols: AcrossOpt = False,
    db: DbOption = None,
    choice: ProtocolChoice | None = None,
) -> None:
    """Train loss, val loss and val accuracy per epoch: mean ± std over runs (Figs 4-6) of one
    setup under one protocol (with several in the database, choose one); with --compare,
    several setups' means overlaid, each with its ± std."""
    if output is not None:
        check_figure_path(output)
    if across_protocols and not compare_setups:
        raise api.ConfigError("--across-protocols is for --compare: give the setups to overlay (e.g. --compare best)")
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
        plotted = terminal_plot({**curves, "label": clean(curves["label"])}, width=width, color=color, log=log)
        sys.stdout.write(plotted if color else clean_block(plotted))
    else:
        config = curves["config"]
        reference = (
            compare.paper_final(config.structure, config.arch, config.kernel, config.epochs)
            if protocol.is_paper
            else None
        )
        save_figure(curves, output, reference)
        out.print(
            literal(f"wrote {output} ({curves['label']}, protocol {protocol.label}, {len(curves['reps'])} run(s))"),
            soft_wrap=True,
        )


def _plot_compare(
    specs: list[str], output: Path | None, log: bool, across: bool, db, choice: ProtocolChoice | None
) -> None:
    from core.overlay import overlay_curves, resolve_setups, save_overlay_figure, terminal_overlay

    with api.open_store(db, create=False) as store:
        overlaid = overlay_curves(store, resolve_setups(store, specs, choice, across))
        for curves in overlaid:
            check_has_epochs(curves, store)
    if output is None:
        width = shutil.get_terminal_size((100, 40)).columns
        sys.stdout.write(terminal_overlay(overlaid, width=width, color=sys.stdout.isatty(), log=log))
    else:
        save_overlay_figure(overlaid, output)
        out.print(f"wrote {output} ({', '.join(c['label'] for c in overlaid)})", soft_wrap=True, markup=False)


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
            f"(or the protocol flags, e.g. --epochs); available: {available_line(chosen)}"
        )
    return candidates[chosen[0].id][1]


@app.command()
@protocol_choice
def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for report.md and its figures.")] = Path(
        "report"
    ),
    db: DbOption = None,
    choice: ProtocolChoice | None = None,
) -> None:
    """One Markdown reproduction report of one protocol (the paper's by default): Tables II-IV
    vs the paper, tests, Figs 4-6."""
    from core.reproduction import write_report

    with api.open_store(db, create=False) as store:
        result = write_report(store, output, choice=choice)
    out.print(literal(f"wrote {result.path} and {len(result.figures)} figure(s)"), soft_wrap=True)
