"""The ``pairs`` command line: thin Typer commands over the core library."""

from __future__ import annotations

import copy
import functools
import inspect
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable
from rich.text import Text

from core import __version__, api, structures
from core.config import ARCHITECTURES, DEFAULT_REPS, PRESETS, STRUCTURES, RunConfig
from core.execution import Done, Epoch, Failed, Followed, Following, Lost, Restarted
from core.protocol import PROTOCOL_FIELDS, ProtocolChoice
from core.report import FORMATS, Table
from tui._early import EARLY_SIGNALS as _EARLY_SIGNALS
from tui._early import defer_signals as _defer_signals
from tui.literal import clean_block, join, literal, literal_block

app = typer.Typer(
    name="pairs",
    help="Experiment console for weight sharing and auxiliary losses on MNIST digit pairs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
# Lines wrap at the terminal's width only on a terminal: piped or redirected, a line stays whole
# (never cut mid-number at Rich's default 80 columns). Tables keep their layout either way.
out = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULTS = RunConfig()

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="SQLite database (default: $PAIRS_DB, else ./runs.db).",
                 show_default=False),
]
Multi = list[str] | None


def _multi(help_text: str, default: object = None, complete=None):
    shown = f" \\[default: {default}]" if default is not None else ""  # \\[: not Rich markup
    return typer.Option(help=f"{help_text} Repeat or comma-separate for several.{shown}",
                        show_default=False, autocompletion=complete)


def _completer(choices):
    """Shell completion of one value of a list option (the part after the last comma)."""

    def complete(incomplete: str) -> list[str]:
        head, _, tail = incomplete.rpartition(",")
        prefix = f"{head}," if head else ""
        return [prefix + c for c in choices if c.lower().startswith(tail.lower())]

    return complete


complete_structure = _completer(STRUCTURES)
complete_arch = _completer(tuple(ARCHITECTURES))
complete_format = _completer(FORMATS)


StructureOpt = Annotated[Multi, _multi(structures.help_text(), DEFAULTS.structure, complete_structure)]
structures.on_change(lambda: setattr(StructureOpt.__metadata__[0], "help", _multi(
    structures.help_text(), DEFAULTS.structure).help))  # a structure registered later is listed
ArchOpt = Annotated[Multi, _multi("Table I architecture A1-A6.", DEFAULTS.arch, complete_arch)]
KernelOpt = Annotated[Multi, _multi("Convolution kernel, 3 or 5.", DEFAULTS.kernel)]
EpochsOpt = Annotated[Multi, _multi("Epochs.", DEFAULTS.epochs)]
LrOpt = Annotated[Multi, _multi("Initial learning rate.", DEFAULTS.lr)]
LrStepOpt = Annotated[Multi, _multi("Multiply the lr by --lr-gamma every this many epochs.",
                                    DEFAULTS.lr_step)]
LrGammaOpt = Annotated[Multi, _multi("Learning-rate decay factor.", DEFAULTS.lr_gamma)]
OptimizerOpt = Annotated[Multi, _multi("sgd or adam.", DEFAULTS.optimizer)]
BatchOpt = Annotated[Multi, _multi("Mini-batch size.", DEFAULTS.batch_size)]
AuxOpt = Annotated[Multi, _multi("Weight of the digit losses (shared-aux, digits).",
                                 DEFAULTS.aux_weight)]
SeedOpt = Annotated[Multi, _multi("Base seed of data draws and initialisations.", DEFAULTS.seed)]
PrecisionOpt = Annotated[Multi, _multi("fp32 or bf16 (autocast).", DEFAULTS.precision)]
# Beyond the paper (each at a default that is the paper's protocol); on/off values: on or off.
BatchNormOpt = Annotated[Multi, _multi("Batch normalisation after each convolution: on or off.",
                                       "off")]
DropoutOpt = Annotated[Multi, _multi("Dropout probability before each fully-connected layer.",
                                     DEFAULTS.dropout)]
PoolingOpt = Annotated[Multi, _multi("Pooling of the tower: max or avg.", DEFAULTS.pooling)]
HiddenOpt = Annotated[Multi, _multi("Units of a hidden fully-connected layer (0: none).",
                                    DEFAULTS.hidden)]
MomentumOpt = Annotated[Multi, _multi("SGD momentum.", DEFAULTS.momentum)]
WeightDecayOpt = Annotated[Multi, _multi("L2 weight decay.", DEFAULTS.weight_decay)]
RepairOpt = Annotated[Multi, _multi("Augment: pair the training digits anew each epoch: on or off.",
                                    "off")]
ShiftOpt = Annotated[Multi, _multi("Augment: shift training images by up to this many pixels.",
                                   DEFAULTS.shift)]
RotateOpt = Annotated[Multi, _multi("Augment: rotate training images by up to this many degrees.",
                                    DEFAULTS.rotate)]
SwapOpt = Annotated[Multi, _multi("Augment: swap the two images of half the training pairs "
                                  "(label recomputed): on or off.", "off")]
RepsOpt = Annotated[int, typer.Option(help="Repetitions (new weights and new data each).")]
DataOpt = Annotated[str, typer.Option(help="sample (embedded 5000 MNIST digits) or mnist (full, "
                                           "torchvision).")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Where full MNIST lives (default: "
                                                      "$PYTORCH_DATA_DIR, else ./data).",
                                                 show_default=False)]
TrainPairsOpt = Annotated[int, typer.Option(help="Training pairs per repetition (the validation "
                                                 "pairs are taken out of these).")]
ValPairsOpt = Annotated[int, typer.Option(help="Validation pairs per repetition, taken out of the "
                                               "training pairs (the paper: 100 of 1000).")]
TestPairsOpt = Annotated[int, typer.Option(help="Test pairs per repetition (drawn from the test "
                                                "pool).")]
WorkersOpt = Annotated[int | None, typer.Option(help="Worker processes (default: one per core, "
                                                     "at most one per queued run).",
                                                show_default=False)]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
VectorizeOpt = Annotated[bool, typer.Option(help="Train a configuration's repetitions together as one "
                                                 "vectorised model (same numbers, faster).")]


#: --executor's choices: the executors of core.execution.EXECUTORS, when this module is imported
Executor = Enum("Executor", {name: name for name in api.EXECUTORS}, type=str)  # type: ignore[misc]
_EXECUTOR_HELP = [f"{spec.name} ({spec.help})" for spec in api.EXECUTORS.values()]
ExecutorOpt = Annotated[Executor, typer.Option(help=(" or ".join([", ".join(_EXECUTOR_HELP[:-1]), _EXECUTOR_HELP[-1]])
                                                     if len(_EXECUTOR_HELP) > 1 else _EXECUTOR_HELP[0]) + ".")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray cluster: auto or HOST:PORT (default: start a "
                                                     "local Ray instance).", show_default=False)]
StallTimeoutOpt = Annotated[float, typer.Option(min=1, max=86_400, help="Seconds without progress "
                                                 "after which a worker is taken for hung, killed and "
                                                 "its runs resumed from their checkpoints (or ten times "
                                                 "its longest pause between batches if longer; five "
                                                 "times both before a task's first batch). Local "
                                                 "executor.")]
MaxRetriesOpt = Annotated[int, typer.Option(min=0, help="Times a run whose worker (or node) is lost is "
                                                        "tried again from its last checkpoint before it "
                                                        "fails.")]


#: The protocol flags of ``pairs queue``, reused by the reports to choose protocols.
PROTOCOL_OPTIONS: dict[str, object] = {
    "epochs": EpochsOpt, "lr": LrOpt, "lr_step": LrStepOpt, "lr_gamma": LrGammaOpt,
    "optimizer": OptimizerOpt, "batch_size": BatchOpt, "aux_weight": AuxOpt, "seed": SeedOpt,
    "precision": PrecisionOpt, "batch_norm": BatchNormOpt, "dropout": DropoutOpt,
    "pooling": PoolingOpt, "hidden": HiddenOpt, "momentum": MomentumOpt,
    "weight_decay": WeightDecayOpt, "repair": RepairOpt, "shift": ShiftOpt, "rotate": RotateOpt,
    "swap": SwapOpt,
    # single-valued in queue (DataOpt, *PairsOpt); several values to choose among protocols
    "data": Annotated[Multi, _multi("sample or mnist.")],
    "train_pairs": Annotated[Multi, _multi("Training pairs per repetition.")],
    "val_pairs": Annotated[Multi, _multi("Validation pairs per repetition.")],
    "test_pairs": Annotated[Multi, _multi("Test pairs per repetition.")],
}
assert set(PROTOCOL_OPTIONS) == set(PROTOCOL_FIELDS)
PROTOCOL_PANEL = "Protocol (which runs to show; default: every protocol, the paper's first)"


def complete_protocol(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of --protocol: the labels and ids of the --db's protocols."""
    try:
        with api.open_store(ctx.params.get("db"), create=False) as store:
            protocols = api.protocols_in(store)
    except Exception:  # noqa: BLE001 - completion never fails loudly
        return []
    words = [w for p in protocols for w in (p.label, p.id)]
    return [w for w in dict.fromkeys(words) if w.lower().startswith(incomplete.lower())]


ProtocolOpt = Annotated[str | None, typer.Option(
    "--protocol", help="Show one protocol: its label (`paper`, `2ep sgd b4 lr .01/15x.1`) or its "
                       "id (or the id's first digits), as the tables' headings show them.",
    show_default=False, autocompletion=complete_protocol, rich_help_panel=PROTOCOL_PANEL)]


def _as_filter(alias):
    """A protocol flag of ``pairs queue`` (its OptionInfo), in the Protocol panel of a report,
    without the queue's default: given, it keeps the protocols with one of its values."""
    info = copy.copy(alias.__metadata__[0])
    info.help = (info.help or "").split(" Repeat or comma-separate")[0] + \
        " Keeps the protocols with this value (several: any of them)."
    info.rich_help_panel = PROTOCOL_PANEL
    return Annotated[Multi, info]


def protocol_choice(command):
    """Give a report command the protocol flags of ``pairs queue`` and ``--protocol``; the
    command receives them as one ``choice: ProtocolChoice`` argument."""
    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != "choice"]
    extra = [inspect.Parameter("protocol", inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation=ProtocolOpt)]
    extra += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=_as_filter(alias))
              for name, alias in PROTOCOL_OPTIONS.items()]
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

    @functools.wraps(command)
    def wrapper(**kwargs):
        options = {name: kwargs.pop(name, None) for name in PROTOCOL_OPTIONS}
        choice = ProtocolChoice.from_options(kwargs.pop("protocol", None), options)
        return command(choice=choice, **kwargs)

    del wrapper.__wrapped__
    wrapper.__signature__ = signature.replace(parameters=[*keyword, *extra])
    wrapper.__annotations__ = {p.name: p.annotation for p in [*keyword, *extra]}
    return wrapper


def _grid_options(**values) -> dict:
    return {k: v for k, v in values.items() if v}


def _base(data: str, train_pairs: int, val_pairs: int, test_pairs: int) -> RunConfig:
    return api.base_config(data=data, train_pairs=train_pairs, val_pairs=val_pairs,
                           test_pairs=test_pairs)


def _version(value: bool) -> None:
    if value:
        out.print(f"pairs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """pairs: queue, train, watch and tabulate the digit-comparison study."""


@app.command()
def run(
    structure: StructureOpt = None, arch: ArchOpt = None,
    kernel: KernelOpt = None, reps: RepsOpt = DEFAULT_REPS,
    epochs: EpochsOpt = None, lr: LrOpt = None, lr_step: LrStepOpt = None,
    lr_gamma: LrGammaOpt = None, optimizer: OptimizerOpt = None, batch_size: BatchOpt = None,
    aux_weight: AuxOpt = None, seed: SeedOpt = None, precision: PrecisionOpt = None,
    batch_norm: BatchNormOpt = None, dropout: DropoutOpt = None, pooling: PoolingOpt = None,
    hidden: HiddenOpt = None, momentum: MomentumOpt = None, weight_decay: WeightDecayOpt = None,
    repair: RepairOpt = None, shift: ShiftOpt = None, rotate: RotateOpt = None, swap: SwapOpt = None,
    data: DataOpt = DEFAULTS.data, data_dir: DataDirOpt = None,
    train_pairs: TrainPairsOpt = DEFAULTS.train_pairs, val_pairs: ValPairsOpt = DEFAULTS.val_pairs,
    test_pairs: TestPairsOpt = DEFAULTS.test_pairs,
    workers: WorkersOpt = None, device: DeviceOpt = "auto", vectorize: VectorizeOpt = True,
    executor: ExecutorOpt = Executor("local"), address: AddressOpt = None, max_retries: MaxRetriesOpt = 4,
    stall_timeout: StallTimeoutOpt = 60.0, db: DbOption = None,
) -> None:
    """Queue a configuration and train it in the foreground (Ctrl-C stops after the epoch)."""
    configs = api.plan(
        _grid_options(structure=structure, arch=arch, kernel=kernel, epochs=epochs, lr=lr,
                      lr_step=lr_step, lr_gamma=lr_gamma, optimizer=optimizer,
                      batch_size=batch_size, aux_weight=aux_weight, seed=seed,
                      precision=precision, batch_norm=batch_norm, dropout=dropout,
                      pooling=pooling, hidden=hidden, momentum=momentum,
                      weight_decay=weight_decay, repair=repair, shift=shift, rotate=rotate,
                      swap=swap),
        _base(data, train_pairs, val_pairs, test_pairs), reps,
    )
    api.check_workers(workers)
    api.check_max_retries(max_retries)
    device = api.check_run_inputs(configs, device, data_dir)
    if _EARLY_SIGNALS:  # Ctrl-C while it started (loading torch and the data): queue nothing
        err.print("interrupted: nothing was queued")
        raise typer.Exit(130)
    with api.open_store(db) as store:
        added = api.queue(store, configs, reps)
        err.print(literal(f"queued {added} new run(s) of {len(configs)} configuration(s) in {store.path}"))
        summary = _work_with_progress(store, configs, workers, device, data_dir, vectorize,
                                      executor=executor.value, address=address, max_retries=max_retries,
                                      stall_timeout_s=stall_timeout, follow=True)
        for line in api.run_summary(store, configs):
            out.print(literal(line))
    _exit_for(summary)


@app.command()
def queue(
    structure: StructureOpt = None, arch: ArchOpt = None,
    kernel: KernelOpt = None, reps: RepsOpt = DEFAULT_REPS,
    epochs: EpochsOpt = None, lr: LrOpt = None, lr_step: LrStepOpt = None,
    lr_gamma: LrGammaOpt = None, optimizer: OptimizerOpt = None, batch_size: BatchOpt = None,
    aux_weight: AuxOpt = None, seed: SeedOpt = None, precision: PrecisionOpt = None,
    batch_norm: BatchNormOpt = None, dropout: DropoutOpt = None, pooling: PoolingOpt = None,
    hidden: HiddenOpt = None, momentum: MomentumOpt = None, weight_decay: WeightDecayOpt = None,
    repair: RepairOpt = None, shift: ShiftOpt = None, rotate: RotateOpt = None, swap: SwapOpt = None,
    data: DataOpt = DEFAULTS.data,
    train_pairs: TrainPairsOpt = DEFAULTS.train_pairs, val_pairs: ValPairsOpt = DEFAULTS.val_pairs,
    test_pairs: TestPairsOpt = DEFAULTS.test_pairs, db: DbOption = None,
) -> None:
    """Queue the product of the given values (run them with `pairs work`)."""
    configs = api.plan(
        _grid_options(structure=structure, arch=arch, kernel=kernel, epochs=epochs, lr=lr,
                      lr_step=lr_step, lr_gamma=lr_gamma, optimizer=optimizer,
                      batch_size=batch_size, aux_weight=aux_weight, seed=seed,
                      precision=precision, batch_norm=batch_norm, dropout=dropout,
                      pooling=pooling, hidden=hidden, momentum=momentum,
                      weight_decay=weight_decay, repair=repair, shift=shift, rotate=rotate,
                      swap=swap),
        _base(data, train_pairs, val_pairs, test_pairs), reps,
    )
    with api.open_store(db) as store:
        added = api.queue(store, configs, reps)
    out.print(f"queued {added} new run(s) ({len(configs)} configuration(s) x {reps} reps; "
              f"{len(configs) * reps - added} already there)")


@app.command()
def grid(
    name: Annotated[str, typer.Argument(help=f"Preset: {'; '.join(f'{k} = {v}' for k, v in PRESETS.items())}.")],
    reps: RepsOpt = DEFAULT_REPS,
    epochs: EpochsOpt = None, lr: LrOpt = None, optimizer: OptimizerOpt = None,
    batch_size: BatchOpt = None, seed: SeedOpt = None, precision: PrecisionOpt = None,
    data: DataOpt = DEFAULTS.data,
    train_pairs: TrainPairsOpt = DEFAULTS.train_pairs, val_pairs: ValPairsOpt = DEFAULTS.val_pairs,
    test_pairs: TestPairsOpt = DEFAULTS.test_pairs, db: DbOption = None,
) -> None:
    """Queue a named grid, e.g. `pairs grid paper` (3 x 6 x 2 setups x 10 reps = 360 runs)."""
    configs = api.plan_preset(
        name,
        _grid_options(epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size,
                      seed=seed, precision=precision),
        _base(data, train_pairs, val_pairs, test_pairs), reps,
    )
    with api.open_store(db) as store:
        added = api.queue(store, configs, reps)
    out.print(f"queued {added} new run(s) of grid {name!r} ({len(configs)} configurations x "
              f"{reps} reps); run them with: pairs work")


@app.command()
def work(
    workers: WorkersOpt = None, device: DeviceOpt = "auto", data_dir: DataDirOpt = None,
    vectorize: VectorizeOpt = True, executor: ExecutorOpt = Executor("local"), address: AddressOpt = None,
    max_retries: MaxRetriesOpt = 4, stall_timeout: StallTimeoutOpt = 60.0, db: DbOption = None,
) -> None:
    """Run the queue until it is empty, here or on a Ray cluster (Ctrl-C stops after the epoch)."""
    api.check_workers(workers)
    api.check_max_retries(max_retries)
    device = api.check_device(device)
    with api.open_store(db, create=False) as store:
        counts = store.status_counts()
        if counts["queued"] + counts["running"] == 0:  # running: maybe left by a killed driver
            out.print("nothing queued: add runs with pairs queue, pairs grid or pairs run")
            return
        summary = _work_with_progress(store, None, workers, device, data_dir, vectorize,
                                      executor=executor.value, address=address, max_retries=max_retries,
                                      stall_timeout_s=stall_timeout)
        elsewhere = store.status_counts()["running"]
    out.print(f"{summary.done} run(s) done, {summary.failed} failed")
    if elsewhere and not summary.interrupted:  # held by other drivers: theirs to finish
        out.print(f"{elsewhere} run(s) are held by another pairs: pairs status shows them (a "
                  "dead one's runs are queued again after 60 s without its heartbeat)")
    _exit_for(summary)


@app.command()
def status(db: DbOption = None) -> None:
    """Counts by status, what is running and how far, and failures."""
    with api.open_store(db, create=False) as store:
        counts = store.status_counts()
        out.print("  ".join(f"{k}: {v}" for k, v in counts.items()))
        running = store.running()
        if running:
            table = RichTable("run", "setup", "rep", "epoch", "host", "driver", title="running")
            for r in running:
                table.add_row(*map(literal, (
                    r["id"], f"{r['structure']} {r['arch']} k{r['kernel']}", r["rep"],
                    f"{r['epoch'] or 0}/{r['epochs']}", r["host"] or "", r["worker"] or "")))
            out.print(table)
        for f in store.failures():
            out.print(join(Text("failed", style="red"), f" {f['structure']} {f['arch']} "
                           f"k{f['kernel']} rep {f['rep']}: ", literal_block(f["error"])),
                      soft_wrap=True)
        mixed = api.code_version_note(store, None)
        if mixed:
            out.print(literal(mixed, "bold yellow"))


FormatOpt = Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.",
                                         autocompletion=complete_format)]


@app.command()
@protocol_choice
def table(
    structure: StructureOpt = None,
    format: FormatOpt = "rich",
    compare: Annotated[str | None, typer.Option(help="`paper`: beside each cell the paper's mean ± std "
                                                     "and the difference in paper σ (runs of the "
                                                     "paper's protocol, unless --protocol or a "
                                                     "protocol flag chooses others).",
                                                show_default=False)] = None,
    db: DbOption = None, choice: ProtocolChoice | None = None,
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
        _print_tables(tables)
        if not rows:
            out.print("no configurations in this database yet")
        _notes([], mixed, fmt)
    else:
        sys.stdout.write(clean_block(api.render_comparison(rows, fmt) if compare
                                     else api.render_rows(rows, fmt)))
        _notes(caveats, mixed, fmt)


@app.command()
@protocol_choice
def best(
    format: FormatOpt = "rich",
    db: DbOption = None, choice: ProtocolChoice | None = None,
) -> None:
    """The best setup of each structure on the test set, with Welch p-values between structures,
    per protocol (a best setup is never chosen, nor a p-value computed, across protocols)."""
    fmt = api.check_format(format)
    with api.open_store(db, create=False) as store:
        rows = api.table_rows(store, None, choice)
        comparisons = api.best_of_protocols(store, rows)
        mixed = api.code_version_note(store, rows)  # the best setups are chosen among all
    if fmt == "rich":
        _print_tables([api.best_table(c) for c in comparisons])
        if not comparisons:
            out.print("no configurations in this database yet")
    else:
        sys.stdout.write(clean_block(api.render_best(comparisons, fmt)))
    _notes([], mixed, fmt)


def _notes(caveats: list[str], mixed: str | None, fmt: str) -> None:
    """Caveats and the mixed-code-version mark: under a rich table on stdout; on stderr for
    the text formats (their stdout stays parseable)."""
    console = out if fmt == "rich" else err
    for line in [*caveats, *([mixed] if mixed else [])]:
        console.print(literal(line, "bold yellow" if fmt == "rich" else ""))


def _print_tables(tables: list[Table]) -> None:
    """Rich tables, each protocol's under a heading with its label."""
    last = None
    for t in tables:
        if t.protocol is not None and t.protocol.id != last:
            last = t.protocol.id
            out.print(literal(t.protocol.heading, "bold underline"))
        out.print(_rich_table(t))


@app.command()
def models(
    layers: Annotated[tuple[str, str, int] | None, typer.Option(
        "--layers", metavar="STRUCTURE ARCH KERNEL",
        help="Draw one setup's layers (Figs 1-3): each layer's output shape and parameters.",
        show_default=False)] = None,
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
        extra = [] if counts is None else [
            str(counts.get((row["structure"], row["arch"], row["kernel"]), 0))]
        table.add_row(row["structure"], row["arch"], row["channels"], str(row["kernel"]),
                      f"{row['parameters']:,}", *extra)
    out.print(table)


@app.command()
def retry(db: DbOption = None) -> None:
    """Queue every failed run again."""
    with api.open_store(db, create=False) as store:
        n = store.retry_failed()
    if n:
        out.print(f"re-queued {n} failed run(s); run them with: pairs work", markup=False)
    else:
        out.print("nothing to retry: no failed runs in this database", markup=False)


def _rich_table(t: Table) -> RichTable:
    table = RichTable(title=literal(t.title) if t.title else None,
                      caption=Text("\n").join(map(literal, t.notes)) if t.notes else None,
                      min_width=len(t.title) + 2)  # the title on one line (Table IV's is long)
    for column in t.columns:
        table.add_column(literal(column))
    for row in t.rows:
        table.add_row(*(literal(c.text, "bold" if c.bold else "") for c in row))
    return table


def _work_with_progress(store, configs, workers, device, data_dir, vectorize, **executor):
    total_epochs = api.pending_epochs(store, configs)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as progress:
        runs_task = progress.add_task("runs  ", total=api.pending_runs(store, configs))
        epochs_task = progress.add_task("epochs", total=total_epochs)

        def on_event(event: api.Event) -> None:
            match event:  # a run trained here, or held elsewhere and followed
                case Epoch() | Followed(what="epoch"):
                    progress.advance(epochs_task)
                case Done() | Failed() | Followed(what="done" | "failed"):
                    progress.advance(runs_task)
                case Following(count=count, holders=holders):  # asked for, held by another driver
                    progress.console.print(f"{count} run(s) are held by another pairs ({', '.join(holders)}): "
                                           "following them here (Ctrl-C leaves them to it)",
                                           markup=False, highlight=False)
                case Lost(run_id=run, reason=str(reason)):  # e.g. a hung worker, killed
                    progress.console.print(f"run {run}: its worker was lost: {reason}",
                                           markup=False, highlight=False)
                case Restarted(run_id=run, reason=reason, epochs_lost=lost):  # its epochs train again
                    progress.console.print(f"run {run}: {reason}", markup=False, highlight=False)
                    if lost:
                        total = progress.tasks[epochs_task].total or 0
                        progress.update(epochs_task, total=total + lost)

        stop = api.StopRequest()
        for _ in _EARLY_SIGNALS:  # Ctrl-C before the driver's handlers: stop (twice: at once)
            stop()
        _EARLY_SIGNALS.clear()
        summary = api.work(store, workers=workers, device=device, data_dir=data_dir,
                           configs=configs, on_event=on_event, vectorize=vectorize, stop=stop,
                           **executor)
    return summary


def _exit_for(summary) -> None:
    if summary.interrupted:
        left = (f"; {summary.left} run(s) held by another pairs are left to it"
                if getattr(summary, "left", 0) else "")
        err.print("interrupted: unfinished runs are queued again; "
                  f"run the same command to resume from their last epoch{left}")
        raise typer.Exit(130)
    if summary.failed:
        err.print(f"{summary.failed} run(s) failed: see pairs status; pairs retry queues them again")
        raise typer.Exit(1)


def _started() -> None:
    """Signals while the program started: exit 130 at once (nothing was done yet). Then only
    ``run`` and ``work`` keep deferring them (their driver stops cleanly); the other commands
    are interrupted by Ctrl-C as usual."""
    if _EARLY_SIGNALS:
        err.print("interrupted: nothing was done")
        sys.exit(130)
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if command not in ("run", "work"):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main() -> None:
    """Entry point: every expected error is one line on stderr and exit code 2."""
    _defer_signals()
    _started()
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("interrupted")
        code = 130
    except api.USER_ERRORS as exc:
        err.print(literal(f"error: {exc}"))
        code = 2
    except KeyboardInterrupt:
        err.print("interrupted: unfinished runs are queued again")
        code = 130
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            out.print(clean_block(exc.ctx.get_help()), markup=False, highlight=False)
            code = 0
        else:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx else ""
            err.print(literal(f"error: {exc.format_message()}{hint}"))
            code = 2
    if _EARLY_SIGNALS and code in (0, None):  # noted after the driver stopped, before the end
        err.print("interrupted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (typer vendors click in recent releases, so match by shape)."""
    return hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2

from tui import cli_reports  # noqa: E402,F401  (registers `pairs plot` and `pairs report`)

if __name__ == "__main__":
    from tui.cli import main as _main  # the imported module's app carries every command

    _main()
