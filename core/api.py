"""The one facade that both interfaces (the ``pairs`` CLI and the Textual app) call.

Importing it does not import torch: training code loads lazily, in the processes that train.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from core.config import (
    DEFAULT_REPS,
    MAX_QUEUED_RUNS,
    MAX_REPS,
    MAX_RETRIES,
    MAX_WORKERS,
    ConfigError,
    RunConfig,
    check_pair_counts,
    parse_grid,
    preset_configs,
)
from core.errors import DataError
from core.execution import EXECUTORS, Event, check_executor
from core.protocol import Protocol, ProtocolChoice, available_line, ordered
from core.report import (
    FORMATS,
    Table,
    best_table,
    paper_tables,
    render,
    setup_records,
    to_csv,
    to_json,
    to_latex,
    to_markdown,
)
from core.scheduler import StopRequest, WorkSummary
from core.stats import BestComparison, SetupRow, best_per_protocol, best_setups, setup_rows
from core.store import Store, StoreError


class DeviceError(ValueError):
    """The requested device does not exist here."""


#: Errors caused by what the user typed or pointed at: shown as one line, exit code 2.
USER_ERRORS = (ConfigError, StoreError, DataError, DeviceError)

__all__ = [
    "USER_ERRORS",
    "DEFAULT_REPS",
    "FORMATS",
    "Table",
    "paper_tables",
    "best_table",
    "base_config",
    "plan",
    "plan_preset",
    "open_store",
    "queue",
    "work",
    "table_rows",
    "render_rows",
    "render_best",
    "best",
    "model_catalog",
    "check_format",
    "check_device",
    "check_run_inputs",
    "check_reps",
    "check_workers",
    "pending_runs",
    "pending_epochs",
    "run_summary",
    "StopRequest",
    "protocols_in",
    "chosen_protocols",
    "compare_rows",
    "code_version_note",
    "best_of_protocols",
    "EXECUTORS",
    "Event",
    "check_executor",
]


def base_config(**fields) -> RunConfig:
    """A configuration from the paper's defaults and the given fields (validated, the pair counts
    against the data source's pools too)."""
    config = RunConfig().replace(**fields)
    check_pair_counts(config.data, config.train_pairs, config.test_pairs)
    return config


def check_reps(reps: int) -> int:
    if not isinstance(reps, int) or isinstance(reps, bool) or not 1 <= reps <= MAX_REPS:
        raise ConfigError(f"--reps must be an integer from 1 to {MAX_REPS}, got {reps!r}")
    return reps


def check_size(configs: list[RunConfig], reps: int) -> None:
    """Refuse more than MAX_QUEUED_RUNS runs in one command (a typo, not a study)."""
    if len(configs) * reps > MAX_QUEUED_RUNS:
        raise ConfigError(
            f"{len(configs):,} setups x {reps} repetitions = {len(configs) * reps:,} "
            f"runs, more than {MAX_QUEUED_RUNS:,} in one command: give fewer values "
            "or fewer --reps"
        )


def plan(options: Mapping, base: RunConfig | None = None, reps: int = DEFAULT_REPS) -> list[RunConfig]:
    """The configurations of a product of option values (see ``config.parse_grid``)."""
    check_reps(reps)
    return _checked(parse_grid(options, base), reps)


def _checked(configs: list[RunConfig], reps: int) -> list[RunConfig]:
    check_size(configs, reps)
    for config in configs:
        check_pair_counts(config.data, config.train_pairs, config.test_pairs)
    return configs


def plan_preset(
    name: str, options: Mapping, base: RunConfig | None = None, reps: int = DEFAULT_REPS
) -> list[RunConfig]:
    """A named grid (``paper``, ``beyond``) with the given scalar options applied to every setup."""
    check_reps(reps)
    return _checked(preset_configs(name, options, base), reps)


def open_store(db: str | os.PathLike | None = None, *, create: bool = True) -> Store:
    """Open (``create=False``: only open an existing) pairs database."""
    return Store(db, create=create)


def queue(store: Store, configs: list[RunConfig], reps: int) -> int:
    """Queue ``reps`` repetitions of each configuration; returns how many runs were new."""
    check_size(configs, check_reps(reps))
    return store.queue(configs, reps)


def check_max_retries(max_retries: int) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= MAX_RETRIES:
        raise ConfigError(f"--max-retries must be an integer >= 0 and <= {MAX_RETRIES}, got {max_retries!r}")
    return max_retries


def check_workers(workers: int | None) -> int | None:
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(
            f"--workers must be from 1 to {MAX_WORKERS}, got {workers} (leave it out: one worker per core)"
        )
    return workers


def check_device(device: str) -> str:
    """The device ``device`` names, checked. Before that (it imports torch) starts the process
    local workers are forked from, which imports torch meanwhile. ``cpu`` and ``auto`` need no
    look (nor torch here): ``auto`` stays ``auto`` and each local worker resolves it when it
    starts a task (``core.executors.execute_task``; ``work`` resolves it for Ray), which saves
    the driver of every ``pairs run`` a torch import (~0.6 s to its first epoch)."""
    from core.executors import start_workers_early

    start_workers_early()
    if device in ("cpu", "auto"):
        return device
    return _resolved_device(device)


def _resolved_device(device: str) -> str:
    from core.train import DeviceError as TrainDeviceError
    from core.train import resolve_device

    try:
        return resolve_device(device)
    except TrainDeviceError as exc:
        raise DeviceError(str(exc)) from None


def check_run_inputs(configs: list[RunConfig], device: str, data_dir: str | os.PathLike | None = None) -> str:
    """Fail early (before the database changes) on a bad device or unavailable digits."""
    from core.data import digit_pools

    resolved = check_device(device)
    for source in sorted({c.data for c in configs}):
        digit_pools(source, data_dir)
    return resolved


def work(
    store: Store,
    *,
    workers: int | None = None,
    device: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    configs: list[RunConfig] | None = None,
    on_event: Callable[[Event], None] | None = None,
    stop: StopRequest | None = None,
    vectorize: bool = True,
    executor: str = "local",
    address: str | None = None,
    max_retries: int = 4,
    stall_timeout_s: float | None = None,
    follow: bool = False,
    fuse: bool | None = None,
) -> WorkSummary:
    """Train queued runs (of ``configs`` only, if given) until none is left.

    ``executor`` names one of ``core.execution.EXECUTORS``: ``local`` (worker processes here)
    or ``ray`` (tasks on the Ray cluster at ``address``, ``auto`` or HOST:PORT; without one, a
    local Ray instance); ``on_event`` gets the events of ``core.execution``. A run whose worker
    is lost is tried again, from its last checkpoint, up to ``max_retries`` times; a local
    worker that makes no progress for ``stall_timeout_s`` (default 60 s, or far longer than its
    batches take) is taken for hung, killed, and so lost. With ``follow`` (and ``configs``),
    runs of those configurations held by another driver are followed until they end (see
    ``core.scheduler.work``). ``fuse`` (None: on unless ``PAIRS_FUSE=0``) trains a fusion
    family's configurations as one fused model (``core.fused``).
    """
    from core.scheduler import work as drive

    check_workers(workers)
    check_executor(executor, address=address)
    check_max_retries(max_retries)
    if stall_timeout_s is not None and (
        isinstance(stall_timeout_s, bool)
        or not isinstance(stall_timeout_s, (int, float))
        or not 1 <= stall_timeout_s <= 86_400
    ):
        raise ConfigError(f"--stall-timeout must be a number of seconds from 1 to 86400, got {stall_timeout_s!r}")
    if device == "auto" and executor != "local":
        device = _resolved_device(device)  # what the driver sees asks Ray for GPUs or not
    return drive(
        store,
        workers=workers,
        device=device,
        data_dir=str(data_dir) if data_dir else None,
        config_ids=[c.id for c in configs] if configs else None,
        on_event=on_event,
        stop=stop,
        vectorize=vectorize,
        executor=executor,
        address=address or None,
        max_attempts=max_retries + 1,
        follow=follow,
        fuse=fuse,
        **({"stall_timeout_s": float(stall_timeout_s)} if stall_timeout_s is not None else {}),
    )


def pending_runs(store: Store, configs: list[RunConfig] | None) -> int:
    rows = store.config_progress()
    ids = {c.id for c in configs} if configs else None
    return sum((r["queued"] or 0) + (r["running"] or 0) for r in rows if ids is None or r["id"] in ids)


def pending_epochs(store: Store, configs: list[RunConfig] | None) -> int:
    """Epochs still to train in the queued and running runs (of ``configs``, if given)."""
    return store.pending_epochs([c.id for c in configs] if configs else None)


def check_structures(structures: list[str] | str | None) -> list[str] | None:
    """Structure names from repeated / comma-separated values (None: all); ConfigError if unknown."""
    from core.config import split_values

    wanted = [s.lower() for s in split_values(structures)] or None
    if wanted:
        parse_grid({"structure": wanted})  # validates the names
    return wanted


def protocols_in(store: Store) -> list[Protocol]:
    """Every protocol of the database's configurations, the paper's first."""
    return ordered(Protocol.of(row) for row in store.config_rows())


def chosen_protocols(store: Store, choice: ProtocolChoice | None) -> list[Protocol]:
    """The protocols ``choice`` names (all when empty); ConfigError naming the available ones
    when it names none."""
    return (choice or ProtocolChoice()).select(protocols_in(store))


def table_rows(
    store: Store, structures: list[str] | str | None = None, choice: ProtocolChoice | None = None
) -> list[SetupRow]:
    """Tables II-IV rows (of some structures, of the chosen protocols) with mean ± std over
    done runs, the paper's protocol first."""
    rows = setup_rows(store, check_structures(structures))
    if choice is None or choice.empty:
        return rows
    ids = {p.id for p in chosen_protocols(store, choice)}
    return [r for r in rows if r.protocol.id in ids]


def compare_rows(
    store: Store, structures: list[str] | str | None = None, choice: ProtocolChoice | None = None
) -> tuple[list[SetupRow], list[str]]:
    """The rows ``--compare paper`` compares and its caveat lines: the paper's protocol only
    unless ``choice`` asks for others (then a caveat per protocol that is not the paper's)."""
    from core.compare import caveat

    if choice is None or choice.empty:
        paper = Protocol.paper()
        available = protocols_in(store)
        if available and all(p.id != paper.id for p in available):
            raise ConfigError(
                f"no runs of the paper's protocol ({paper.description}) in {store.path} to "
                f"compare with the paper: choose one with --protocol (the comparison then "
                f"carries a caveat); available: {available_line(available)}"
            )
        choice = ProtocolChoice(protocol=paper.id)
    rows = table_rows(store, structures, choice)
    caveats = [line for p in ordered(r.protocol for r in rows) if (line := caveat(p))]
    return rows, caveats


def code_version_note(store: Store, rows: list[SetupRow] | None) -> str | None:
    """A line when the done runs of ``rows`` (None: of the whole database) were trained by more
    than one code version."""
    from core.provenance import code_versions, mixed_line

    ids = None if rows is None else [r.config_id for r in rows]
    return mixed_line(code_versions(store, ids))


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def check_compare(compare: str | None) -> None:
    if compare not in (None, "paper"):
        raise ConfigError(f"unknown --compare {compare!r}: the only reference is paper")


def compare_tables(rows: list[SetupRow]) -> list[Table]:
    from core.compare import compare_tables as tables

    return tables(rows)


def render_comparison(rows: list[SetupRow], fmt: str) -> str:
    from core.compare import render_comparison as render_text

    return render_text(rows, fmt)


def render_rows(rows: list[SetupRow], fmt: str) -> str:
    return render(rows, fmt)


def best(store: Store, rows: list[SetupRow] | None = None) -> BestComparison:
    """Per structure, the best setup by validation accuracy (from ``rows`` when already read);
    the rows must be of one protocol (see ``best_of_protocols``)."""
    return best_setups(store, rows)


def best_of_protocols(store: Store, rows: list[SetupRow] | None = None) -> list[BestComparison]:
    """The best setups of each protocol of ``rows`` (all rows when None), the paper's first:
    a best setup is never chosen, nor a p-value computed, across protocols."""
    return best_per_protocol(store, rows)


def render_best(comparisons: BestComparison | list[BestComparison], fmt: str) -> str:
    """The best setups as markdown, latex (a heading per protocol), csv (one record per best
    setup, with protocol and protocol_id) or json (a list: per protocol, its best setups and
    Welch p-values)."""
    if isinstance(comparisons, BestComparison):
        comparisons = [comparisons]
    if fmt == "csv":
        return to_csv([r for c in comparisons for r in _best_records(c)])
    if fmt == "json":
        return to_json(
            [
                {
                    "protocol": c.protocol.label if c.protocol else None,
                    "protocol_id": c.protocol.id if c.protocol else None,
                    "best": _best_records(c),
                    "welch_p_test_acc": {f"{a} vs {b}": p for (a, b), p in c.p_values.items()},
                }
                for c in comparisons
            ]
        )
    tables = [best_table(c) for c in comparisons]
    return to_markdown(tables) if fmt == "markdown" else to_latex(tables)


def _best_records(comparison: BestComparison) -> list[dict]:
    records = []
    for b in comparison.best:
        record = setup_records([b.row])[0]
        for name, value in b.test.items():
            record[f"{name}_mean"] = value.mean if value.n else None
            record[f"{name}_std"] = value.std
        for other in comparison.best:  # Welch's p on test accuracy against each best
            pair = (b.structure, other.structure)
            record[f"welch_p_vs_{other.structure}"] = comparison.p_values.get(pair, comparison.p_values.get(pair[::-1]))
        records.append(record)
    return records


def run_summary(store: Store, configs: list[RunConfig]) -> list[str]:
    """One line per configuration: mean ± std validation and test accuracy of its done runs."""
    from core.report import format_mean_std
    from core.stats import MeanStd

    lines = []
    for config in configs:
        runs = store.run_rows(config.id, "done")
        finals = store.final_val_acc(config.id, config.epochs)
        val = MeanStd.of([finals[r["id"]] for r in runs if r["id"] in finals])
        test = MeanStd.of([r["test_acc"] for r in runs])
        failed = store.run_rows(config.id, "failed")
        why = "; ".join(dict.fromkeys(_one_line(r["error"] or "no reason recorded") for r in failed))
        if failed and not runs:
            lines.append(f"{config.label}: all {len(failed)} run(s) failed: {why}")
            continue
        lines.append(
            f"{config.label}: {len(runs)} run(s) done; validation accuracy "
            f"{format_mean_std(val, percent=True)} %, test accuracy "
            f"{format_mean_std(test, percent=True)} %" + (f"; {len(failed)} failed: {why}" if failed else "")
        )
    return lines


def _one_line(text: str, limit: int = 200) -> str:
    """A stored error as one short line of printable text."""
    line = "".join(ch if ch.isprintable() else " " for ch in str(text)).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def model_catalog() -> list[dict]:
    """Every setup with its parameter count, from the architecture spec (no torch)."""
    from core.config import model_catalog as catalog

    return catalog()


def default_db_path(db: str | os.PathLike | None = None) -> Path:
    from core.store import resolve_db_path

    return resolve_db_path(db)
