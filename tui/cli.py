"""The ``pairs`` command line: thin Typer commands over the core library."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable
from rich.text import Text

from core import __version__, api
from core.config import DEFAULT_REPS, PRESETS, RunConfig
from core.report import FORMATS, Table
from tui.literal import clean_block, join, literal, literal_block

app = typer.Typer(
    name="pairs",
    help="Experiment console for weight sharing and auxiliary losses on MNIST digit pairs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
out = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULTS = RunConfig()

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="SQLite database (default: $PAIRS_DB, else ./runs.db).",
                 show_default=False),
]
Multi = list[str] | None


def _multi(help_text: str, default: object = None):
    shown = f" [default: {default}]" if default is not None else ""
    return typer.Option(help=f"{help_text} Repeat or comma-separate for several.{shown}",
                        show_default=False)


StructureOpt = Annotated[Multi, _multi("independent, shared or shared-aux (the paper's), or digits "
                                       "(comparison from the two digit posteriors).",
                                       DEFAULTS.structure)]
ArchOpt = Annotated[Multi, _multi("Table I architecture A1-A6.", DEFAULTS.arch)]
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
PairsOpt = Annotated[int, typer.Option(help="Pairs per repetition.")]
WorkersOpt = Annotated[int | None, typer.Option(help="Worker processes (default: one per core, "
                                                     "at most one per queued run).",
                                                show_default=False)]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
VectorizeOpt = Annotated[bool, typer.Option(help="Train a configuration's repetitions together as one "
                                                 "vectorised model (same numbers, faster).")]


class Executor(str, Enum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[Executor, typer.Option(help="local (worker processes here) or ray (tasks on a Ray "
                                                    "cluster; needs the ray extra).")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray cluster: auto or HOST:PORT (default: start a "
                                                     "local Ray instance).", show_default=False)]
MaxRetriesOpt = Annotated[int, typer.Option(min=0, help="Times a run whose worker (or node) is lost is "
                                                        "tried again from its last checkpoint before it "
                                                        "fails.")]


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
    train_pairs: PairsOpt = DEFAULTS.train_pairs, val_pairs: PairsOpt = DEFAULTS.val_pairs,
    test_pairs: PairsOpt = DEFAULTS.test_pairs,
    workers: WorkersOpt = None, device: DeviceOpt = "auto", vectorize: VectorizeOpt = True,
    executor: ExecutorOpt = Executor.local, address: AddressOpt = None, max_retries: MaxRetriesOpt = 4,
    db: DbOption = None,
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
    with api.open_store(db) as store:
        added = api.queue(store, configs, reps)
        err.print(literal(f"queued {added} new run(s) of {len(configs)} configuration(s) in {store.path}"))
        summary = _work_with_progress(store, configs, workers, device, data_dir, vectorize,
                                      executor=executor.value, address=address, max_retries=max_retries)
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
    train_pairs: PairsOpt = DEFAULTS.train_pairs, val_pairs: PairsOpt = DEFAULTS.val_pairs,
    test_pairs: PairsOpt = DEFAULTS.test_pairs, db: DbOption = None,
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
    train_pairs: PairsOpt = DEFAULTS.train_pairs, val_pairs: PairsOpt = DEFAULTS.val_pairs,
    test_pairs: PairsOpt = DEFAULTS.test_pairs, db: DbOption = None,
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
    vectorize: VectorizeOpt = True, executor: ExecutorOpt = Executor.local, address: AddressOpt = None,
    max_retries: MaxRetriesOpt = 4, db: DbOption = None,
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
                                      executor=executor.value, address=address, max_retries=max_retries)
    out.print(f"{summary.done} run(s) done, {summary.failed} failed")
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


@app.command()
def table(
    structure: StructureOpt = None,
    format: Annotated[str, typer.Option("--format", "-f",
                                        help=f"One of {', '.join(FORMATS)}.")] = "rich",
    compare: Annotated[str | None, typer.Option(help="`paper`: beside each cell the paper's mean ± std "
                                                     "and the difference in paper σ.",
                                                show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """Final-epoch mean ± std per setup, in the layout of the paper's Tables II-IV."""
    fmt = api.check_format(format)
    api.check_compare(compare)
    structures = api.check_structures(structure)
    with api.open_store(db, create=False) as store:
        rows = api.table_rows(store, structures)
    if fmt == "rich":
        for t in api.compare_tables(rows) if compare else api.paper_tables(rows):
            out.print(_rich_table(t))
        if not rows:
            out.print("no configurations in this database yet")
    else:
        sys.stdout.write(clean_block(api.render_comparison(rows, fmt) if compare
                                     else api.render_rows(rows, fmt)))


@app.command()
def best(
    format: Annotated[str, typer.Option("--format", "-f",
                                        help=f"One of {', '.join(FORMATS)}.")] = "rich",
    db: DbOption = None,
) -> None:
    """The best setup of each structure on the test set, with Welch p-values between structures."""
    fmt = api.check_format(format)
    with api.open_store(db, create=False) as store:
        comparison = api.best(store)
    if fmt == "rich":
        out.print(_rich_table(api.best_table(comparison)))
    else:
        sys.stdout.write(clean_block(api.render_best(comparison, fmt)))


@app.command()
def models() -> None:
    """Every structure x architecture x kernel with its parameter count."""
    table = RichTable("structure", "arch", "channels", "kernel", "parameters")
    for row in api.model_catalog():
        table.add_row(row["structure"], row["arch"], row["channels"], str(row["kernel"]),
                      f"{row['parameters']:,}")
    out.print(table)


@app.command()
def retry(db: DbOption = None) -> None:
    """Queue every failed run again."""
    with api.open_store(db, create=False) as store:
        n = store.retry_failed()
    out.print(f"re-queued {n} failed run(s); run them with: pairs work", markup=False)


def _rich_table(t: Table) -> RichTable:
    table = RichTable(title=literal(t.title) if t.title else None,
                      caption=Text("\n").join(map(literal, t.notes)) if t.notes else None)
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

        def on_event(event: tuple) -> None:
            if event[0] == "epoch":
                progress.advance(epochs_task)
            elif event[0] in ("done", "failed"):
                progress.advance(runs_task)

        summary = api.work(store, workers=workers, device=device, data_dir=data_dir,
                           configs=configs, on_event=on_event, vectorize=vectorize, **executor)
    return summary


def _exit_for(summary) -> None:
    if summary.interrupted:
        err.print("interrupted: unfinished runs are queued again; "
                  "run the same command to resume from their last epoch")
        raise typer.Exit(130)
    if summary.failed:
        err.print(f"{summary.failed} run(s) failed: see pairs status; pairs retry queues them again")
        raise typer.Exit(1)


def main() -> None:
    """Entry point: every expected error is one line on stderr and exit code 2."""
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
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (typer vendors click in recent releases, so match by shape)."""
    return hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2

from tui import cli_reports  # noqa: E402,F401  (registers `pairs plot` and `pairs report`)

if __name__ == "__main__":
    from tui.cli import main as _main  # the imported module's app carries every command

    _main()
