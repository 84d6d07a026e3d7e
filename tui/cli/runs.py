"""``pairs run``, ``queue``, ``grid``, ``work``, ``status`` and ``retry``: queueing and training.

``make_app(config)`` builds them for a ``RunConfig`` class: the hyperparameter flags of
``run``, ``queue`` and ``grid`` come from its fields (``tui.cli.options.config_flags``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable
from rich.text import Text

from core import api
from core.config import DEFAULT_REPS, PRESETS, RunConfig, check_pair_counts
from core.execution import Done, Epoch, Failed, Followed, Following, Lost, Restarted
from tui._early import EARLY_SIGNALS as _EARLY_SIGNALS
from tui.cli.options import (
    AddressOpt,
    Base,
    DataDirOpt,
    DbOption,
    DeviceOpt,
    Executor,
    ExecutorOpt,
    Grid,
    MaxRetriesOpt,
    Preset,
    RepsOpt,
    Setup,
    StallTimeoutOpt,
    VectorizeOpt,
    WorkersOpt,
    config_flags,
    grid_options,
)
from tui.cli.output import err, out
from tui.literal import join, literal, literal_block

PresetName = Annotated[str, typer.Argument(help=f"Preset: {'; '.join(f'{k} = {v}' for k, v in PRESETS.items())}.")]


def make_app(config: type[RunConfig] = RunConfig) -> typer.Typer:
    """The run commands, with the flags of ``config``'s fields."""
    app = typer.Typer()
    flags = config_flags(config)

    @app.command()
    @flags
    def run(
        *,
        setup: Setup,
        reps: RepsOpt = DEFAULT_REPS,
        protocol: Grid,
        data_dir: DataDirOpt = None,
        base: Base,
        workers: WorkersOpt = None,
        device: DeviceOpt = "auto",
        vectorize: VectorizeOpt = True,
        executor: ExecutorOpt = Executor("local"),
        address: AddressOpt = None,
        max_retries: MaxRetriesOpt = 4,
        stall_timeout: StallTimeoutOpt = 60.0,
        db: DbOption = None,
    ) -> None:
        """Queue a configuration and train it in the foreground (Ctrl-C stops after the epoch)."""
        configs = api.plan(grid_options({**setup, **protocol}), _base(config, base), reps)
        api.check_workers(workers)
        api.check_max_retries(max_retries)
        device = api.check_run_inputs(configs, device, data_dir)
        if _EARLY_SIGNALS:  # Ctrl-C while it started (loading torch and the data): queue nothing
            err.print("interrupted: nothing was queued")
            raise typer.Exit(130)
        with api.open_store(db) as store:
            added = api.queue(store, configs, reps)
            err.print(literal(f"queued {added} new run(s) of {len(configs)} configuration(s) in {store.path}"))
            summary = _work_with_progress(
                store,
                configs,
                workers,
                device,
                data_dir,
                vectorize,
                executor=executor.value,
                address=address,
                max_retries=max_retries,
                stall_timeout_s=stall_timeout,
                follow=True,
            )
            for line in api.run_summary(store, configs):
                out.print(literal(line))
        _exit_for(summary)

    @app.command()
    @flags
    def queue(*, setup: Setup, reps: RepsOpt = DEFAULT_REPS, protocol: Grid, base: Base, db: DbOption = None) -> None:
        """Queue the product of the given values (run them with `pairs work`)."""
        configs = api.plan(grid_options({**setup, **protocol}), _base(config, base), reps)
        with api.open_store(db) as store:
            added = api.queue(store, configs, reps)
        out.print(
            f"queued {added} new run(s) ({len(configs)} configuration(s) x {reps} reps; "
            f"{len(configs) * reps - added} already there)"
        )

    @app.command()
    @flags
    def grid(
        name: PresetName, *, reps: RepsOpt = DEFAULT_REPS, protocol: Preset, base: Base, db: DbOption = None
    ) -> None:
        """Queue a named grid, e.g. `pairs grid paper` (3 x 6 x 2 setups x 10 reps = 360 runs)."""
        configs = api.plan_preset(name, grid_options(protocol), _base(config, base), reps)
        with api.open_store(db) as store:
            added = api.queue(store, configs, reps)
        out.print(
            f"queued {added} new run(s) of grid {name!r} ({len(configs)} configurations x "
            f"{reps} reps); run them with: pairs work"
        )

    app.command()(work)
    app.command()(status)
    app.command()(retry)
    return app


def _base(config: type[RunConfig], values: dict) -> RunConfig:
    """The base configuration of the one-valued flags (data, pair counts), checked against
    the data source's pools."""
    base = config(**values)
    check_pair_counts(base.data, base.train_pairs, base.test_pairs)
    return base


def work(
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    vectorize: VectorizeOpt = True,
    executor: ExecutorOpt = Executor("local"),
    address: AddressOpt = None,
    max_retries: MaxRetriesOpt = 4,
    stall_timeout: StallTimeoutOpt = 60.0,
    db: DbOption = None,
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
        summary = _work_with_progress(
            store,
            None,
            workers,
            device,
            data_dir,
            vectorize,
            executor=executor.value,
            address=address,
            max_retries=max_retries,
            stall_timeout_s=stall_timeout,
        )
        elsewhere = store.status_counts()["running"]
    out.print(f"{summary.done} run(s) done, {summary.failed} failed")
    if elsewhere and not summary.interrupted:  # held by other drivers: theirs to finish
        out.print(
            f"{elsewhere} run(s) are held by another pairs: pairs status shows them (a "
            "dead one's runs are queued again after 60 s without its heartbeat)"
        )
    _exit_for(summary)


def status(db: DbOption = None) -> None:
    """Counts by status, what is running and how far, and failures."""
    with api.open_store(db, create=False) as store:
        counts = store.status_counts()
        out.print("  ".join(f"{k}: {v}" for k, v in counts.items()))
        running = store.running()
        if running:
            table = RichTable("run", "setup", "rep", "epoch", "host", "driver", title="running")
            for r in running:
                table.add_row(
                    *map(
                        literal,
                        (
                            r["id"],
                            f"{r['structure']} {r['arch']} k{r['kernel']}",
                            r["rep"],
                            f"{r['epoch'] or 0}/{r['epochs']}",
                            r["host"] or "",
                            r["worker"] or "",
                        ),
                    )
                )
            out.print(table)
        for f in store.failures():
            out.print(
                join(
                    Text("failed", style="red"),
                    f" {f['structure']} {f['arch']} k{f['kernel']} rep {f['rep']}: ",
                    literal_block(f["error"]),
                ),
                soft_wrap=True,
            )
        mixed = api.code_version_note(store, None)
        if mixed:
            out.print(literal(mixed, "bold yellow"))


def retry(db: DbOption = None) -> None:
    """Queue every failed run again."""
    with api.open_store(db, create=False) as store:
        n = store.retry_failed()
    if n:
        out.print(f"re-queued {n} failed run(s); run them with: pairs work", markup=False)
    else:
        out.print("nothing to retry: no failed runs in this database", markup=False)


def _work_with_progress(store, configs, workers, device, data_dir, vectorize, **executor):
    total_epochs = api.pending_epochs(store, configs)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
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
                    progress.console.print(
                        f"{count} run(s) are held by another pairs ({', '.join(holders)}): "
                        "following them here (Ctrl-C leaves them to it)",
                        markup=False,
                        highlight=False,
                    )
                case Lost(run_id=run, reason=str(reason)):  # e.g. a hung worker, killed
                    progress.console.print(f"run {run}: its worker was lost: {reason}", markup=False, highlight=False)
                case Restarted(run_id=run, reason=reason, epochs_lost=lost):  # its epochs train again
                    progress.console.print(f"run {run}: {reason}", markup=False, highlight=False)
                    if lost:
                        total = progress.tasks[epochs_task].total or 0
                        progress.update(epochs_task, total=total + lost)

        stop = api.StopRequest()
        for _ in _EARLY_SIGNALS:  # Ctrl-C before the driver's handlers: stop (twice: at once)
            stop()
        _EARLY_SIGNALS.clear()
        summary = api.work(
            store,
            workers=workers,
            device=device,
            data_dir=data_dir,
            configs=configs,
            on_event=on_event,
            vectorize=vectorize,
            stop=stop,
            **executor,
        )
    return summary


def _exit_for(summary) -> None:
    if summary.interrupted:
        left = f"; {summary.left} run(s) held by another pairs are left to it" if getattr(summary, "left", 0) else ""
        err.print(
            f"interrupted: unfinished runs are queued again; run the same command to resume from their last epoch{left}"
        )
        raise typer.Exit(130)
    if summary.failed:
        err.print(f"{summary.failed} run(s) failed: see pairs status; pairs retry queues them again")
        raise typer.Exit(1)
