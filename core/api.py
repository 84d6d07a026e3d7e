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
from core.stats import BestComparison, SetupRow, best_setups, setup_rows
from core.store import Store, StoreError


class DeviceError(ValueError):
    """The requested device does not exist here."""


#: Errors caused by what the user typed or pointed at: shown as one line, exit code 2.
USER_ERRORS = (ConfigError, StoreError, DataError, DeviceError)

__all__ = [
    "USER_ERRORS", "DEFAULT_REPS", "FORMATS", "Table", "paper_tables", "best_table",
    "base_config", "plan", "plan_preset", "open_store", "queue", "work", "table_rows",
    "render_rows", "render_best", "best", "model_catalog", "check_format", "check_device",
    "check_run_inputs", "check_reps", "check_workers", "pending_runs", "pending_epochs", "run_summary", "StopRequest",
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
        raise ConfigError(f"{len(configs):,} setups x {reps} repetitions = {len(configs) * reps:,} "
                          f"runs, more than {MAX_QUEUED_RUNS:,} in one command: give fewer values "
                          "or fewer --reps")


def plan(options: Mapping, base: RunConfig | None = None, reps: int = DEFAULT_REPS) -> list[RunConfig]:
    """The configurations of a product of option values (see ``config.parse_grid``)."""
    check_reps(reps)
    return _checked(parse_grid(options, base), reps)


def _checked(configs: list[RunConfig], reps: int) -> list[RunConfig]:
    check_size(configs, reps)
    for config in configs:
        check_pair_counts(config.data, config.train_pairs, config.test_pairs)
    return configs


def plan_preset(name: str, options: Mapping, base: RunConfig | None = None,
                reps: int = DEFAULT_REPS) -> list[RunConfig]:
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
        raise ConfigError(f"--workers must be from 1 to {MAX_WORKERS}, got {workers} "
                          "(leave it out: one worker per core)")
    return workers


def check_device(device: str) -> str:
    from core.train import DeviceError as TrainDeviceError
    from core.train import resolve_device

    try:
        return resolve_device(device)
    except TrainDeviceError as exc:
        raise DeviceError(str(exc)) from None


def check_run_inputs(configs: list[RunConfig], device: str,
                     data_dir: str | os.PathLike | None = None) -> str:
    """Fail early (before the database changes) on a bad device or unavailable digits."""
    from core.data import digit_pools

    resolved = check_device(device)
    for source in sorted({c.data for c in configs}):
        digit_pools(source, data_dir)
    return resolved


def work(store: Store, *, workers: int | None = None, device: str = "cpu",
         data_dir: str | os.PathLike | None = None, configs: list[RunConfig] | None = None,
         on_event: Callable[[tuple], None] | None = None,
         stop: StopRequest | None = None, vectorize: bool = True, executor: str = "local",
         address: str | None = None, max_retries: int = 4) -> WorkSummary:
    """Train queued runs (of ``configs`` only, if given) until none is left.

    ``executor`` is ``local`` (worker processes here) or ``ray`` (tasks on the Ray cluster at
    ``address``, ``auto`` or HOST:PORT; without one, a local Ray instance). A run whose worker
    is lost is tried again, from its last checkpoint, up to ``max_retries`` times.
    """
    from core.executors import EXECUTORS
    from core.scheduler import work as drive

    check_workers(workers)
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    check_max_retries(max_retries)
    if address is not None and executor != "ray":
        raise ConfigError("--address is for --executor ray")
    if executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--executor ray needs Ray: pip install -e '.[ray]'")
    return drive(
        store, workers=workers, device=device, data_dir=str(data_dir) if data_dir else None,
        config_ids=[c.id for c in configs] if configs else None, on_event=on_event, stop=stop,
        vectorize=vectorize, executor=executor, address=address or None,
        max_attempts=max_retries + 1,
    )


def pending_runs(store: Store, configs: list[RunConfig] | None) -> int:
    rows = store.config_progress()
    ids = {c.id for c in configs} if configs else None
    return sum((r["queued"] or 0) + (r["running"] or 0) for r in rows if ids is None or r["id"] in ids)


def pending_epochs(store: Store, configs: list[RunConfig] | None) -> int:
    """Epochs still to train in the queued and running runs (of ``configs``, if given)."""
    ids = [c.id for c in configs] if configs else None
    where = "r.status IN ('queued', 'running')"
    params: list = []
    if ids:
        where += f" AND r.config_id IN ({','.join('?' * len(ids))})"
        params = ids
    row = store.db.execute(
        f"SELECT sum(c.epochs - coalesce(k.epoch, 0)) FROM runs r JOIN configs c "
        f"ON c.id = r.config_id LEFT JOIN checkpoints k ON k.run_id = r.id WHERE {where}",
        params,
    ).fetchone()
    return row[0] or 0


def check_structures(structures: list[str] | str | None) -> list[str] | None:
    """Structure names from repeated / comma-separated values (None: all); ConfigError if unknown."""
    from core.config import split_values

    wanted = [s.lower() for s in split_values(structures)] or None
    if wanted:
        parse_grid({"structure": wanted})  # validates the names
    return wanted


def table_rows(store: Store, structures: list[str] | str | None = None) -> list[SetupRow]:
    """Tables II-IV rows (of some structures) with mean ± std over done runs."""
    return setup_rows(store, check_structures(structures))


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
    """Per structure, the best setup by validation accuracy (from ``rows`` when already read)."""
    return best_setups(store, rows)


def render_best(comparison: BestComparison, fmt: str) -> str:
    if fmt in ("csv", "json"):
        records = []
        for b in comparison.best:
            record = setup_records([b.row])[0]
            for name, value in b.test.items():
                record[f"{name}_mean"] = value.mean if value.n else None
                record[f"{name}_std"] = value.std
            for other in comparison.best:  # Welch's p on test accuracy against each best
                pair = (b.structure, other.structure)
                record[f"welch_p_vs_{other.structure}"] = comparison.p_values.get(
                    pair, comparison.p_values.get(pair[::-1]))
            records.append(record)
        return to_csv(records) if fmt == "csv" else to_json(
            {"best": records,
             "welch_p_test_acc": {f"{a} vs {b}": p for (a, b), p in comparison.p_values.items()}}
        )
    table = best_table(comparison)
    return to_markdown([table]) if fmt == "markdown" else to_latex([table])


def run_summary(store: Store, configs: list[RunConfig]) -> list[str]:
    """One line per configuration: mean ± std validation and test accuracy of its done runs."""
    from core.report import format_mean_std
    from core.stats import MeanStd

    lines = []
    for config in configs:
        runs = store.run_rows(config.id, "done")
        finals = {
            row["run_id"]: row
            for row in store.db.query(
                "SELECT e.run_id, e.val_acc FROM epochs e JOIN runs r ON r.id = e.run_id "
                "WHERE r.config_id = ? AND r.status = 'done' AND e.epoch = ?",
                [config.id, config.epochs],
            )
        }
        val = MeanStd.of([finals[r["id"]]["val_acc"] for r in runs if r["id"] in finals])
        test = MeanStd.of([r["test_acc"] for r in runs])
        lines.append(
            f"{config.label}: {len(runs)} run(s) done; validation accuracy "
            f"{format_mean_std(val, percent=True)} %, test accuracy "
            f"{format_mean_std(test, percent=True)} %"
        )
    return lines


def model_catalog() -> list[dict]:
    from core.models import model_catalog as catalog

    return catalog()


def default_db_path(db: str | os.PathLike | None = None) -> Path:
    from core.store import resolve_db_path

    return resolve_db_path(db)
