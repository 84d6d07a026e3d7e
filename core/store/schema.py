"""The schema: the tables and their columns, creating them, and upgrading an older database."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.store._sqlite_utils import sqlite_utils
from core.store.errors import StoreError

SCHEMA_VERSION = 2
STATUSES = ("queued", "running", "done", "failed")

CONFIG_COLUMNS = {
    "id": str,
    "structure": str,
    "arch": str,
    "kernel": int,
    "epochs": int,
    "lr": float,
    "lr_step": int,
    "lr_gamma": float,
    "optimizer": str,
    "batch_size": int,
    "aux_weight": float,
    "data": str,
    "train_pairs": int,
    "val_pairs": int,
    "test_pairs": int,
    "seed": int,
    "precision": str,
    "options": str,
    "created_at": float,
}
RUN_COLUMNS = {
    "id": str,
    "config_id": str,
    "rep": int,
    "seed": int,
    "status": str,
    "attempts": int,
    "worker": str,
    "host": str,
    "heartbeat_at": float,
    "queued_at": float,
    "started_at": float,
    "finished_at": float,
    "error": str,
    "test_loss": float,
    "test_main_loss": float,
    "test_acc": float,
    "test_digit_acc": float,
    "seconds": float,
    "device": str,
    "torch_version": str,
    "code_version": str,
    # the final epoch's metrics, copied when the run is done (fast tables on huge grids)
    "final_train_loss": float,
    "final_val_loss": float,
    "final_val_acc": float,
}
EPOCH_COLUMNS = {
    "run_id": str,
    "epoch": int,
    "train_loss": float,
    "train_main_loss": float,
    "train_acc": float,
    "val_loss": float,
    "val_main_loss": float,
    "val_acc": float,
    "val_digit_acc": float,
    "lr": float,
    "seconds": float,
    "recorded_at": float,
}

#: Tables every pairs database has.
REQUIRED_TABLES = ("meta", "configs", "runs", "epochs", "checkpoints")


def schema_version(db: sqlite_utils.Database, path: Path) -> int | None:
    """The database's schema version; None when it has no meta table or no version in it."""
    if "meta" not in db.table_names():
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return None
    try:
        return int(row[0])
    except ValueError:
        raise StoreError(f"{path} has an unreadable schema_version {row[0]!r}: restore a backup") from None


def create_schema(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["configs"].create(CONFIG_COLUMNS, pk="id", not_null={"structure", "arch", "kernel"})
    db["runs"].create(
        RUN_COLUMNS,
        pk="id",
        foreign_keys=[("config_id", "configs", "id")],
        not_null={"config_id", "rep", "status"},
        defaults={"attempts": 0},
    )
    db["runs"].create_index(["config_id", "rep"], unique=True)
    db["runs"].create_index(["status"])
    db["runs"].create_index(["config_id", "status"])
    db["epochs"].create(EPOCH_COLUMNS, pk=("run_id", "epoch"), foreign_keys=[("run_id", "runs", "id")])
    db["checkpoints"].create(
        {"run_id": str, "epoch": int, "state": bytes, "saved_at": float},
        pk="run_id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    from core import __version__

    db["meta"].insert_all(
        [
            {"key": "schema_version", "value": str(SCHEMA_VERSION)},
            {"key": "created_by", "value": f"pairs {__version__}"},
            {"key": "created_at", "value": str(time.time())},
        ]
    )


def copy_final_metrics(db: sqlite_utils.Database, where: str, params: Sequence = ()) -> None:
    """Copy the final epoch's metrics onto the rows of ``runs`` that ``where`` selects."""
    db.execute(
        "UPDATE runs SET (final_train_loss, final_val_loss, final_val_acc) = "
        "(SELECT e.train_loss, e.val_loss, e.val_acc FROM epochs e JOIN configs c "
        " ON c.id = runs.config_id WHERE e.run_id = runs.id AND e.epoch = c.epochs) "
        f"WHERE {where}",
        list(params),
    )


def _add_precision(db: sqlite_utils.Database) -> None:
    """Version 0 -> 1: the databases of the first, unreleased pairs had no ``configs.precision``
    (every run was fp32) and no index on ``runs (config_id, status)``."""
    if "precision" not in {c.name for c in db["configs"].columns}:
        db.execute("ALTER TABLE configs ADD COLUMN precision TEXT")
    db.execute("UPDATE configs SET precision = 'fp32' WHERE precision IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS idx_runs_config_id_status ON runs (config_id, status)")


def _add_final_metrics(db: sqlite_utils.Database) -> None:
    """Version 1 -> 2: the final epoch's metrics on the run row (fast tables on huge grids), and
    ``configs.options`` (JSON of the hyperparameters added after the paper's)."""
    if "options" not in {c.name for c in db["configs"].columns}:
        db.execute("ALTER TABLE configs ADD COLUMN options TEXT")
    columns = {c.name for c in db["runs"].columns}
    for name in ("final_train_loss", "final_val_loss", "final_val_acc"):
        if name not in columns:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} REAL")
    if "code_version" not in columns:  # which code trained a run (NULL: unknown)
        db.execute("ALTER TABLE runs ADD COLUMN code_version TEXT")
    copy_final_metrics(db, "status = 'done'")


#: Upgrades from version N to N + 1, each a callable(db) run inside the upgrade's transaction.
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    0: _add_precision,
    1: _add_final_metrics,
}


def check_upgradable(path: Path, version: int) -> None:
    """StoreError when no chain of migrations leads from ``version`` to ``SCHEMA_VERSION``."""
    missing = [step for step in range(version, SCHEMA_VERSION) if step not in MIGRATIONS]
    if missing:
        raise StoreError(
            f"{path} has schema version {version}, older than any this pairs can "
            f"upgrade (from {min(MIGRATIONS)}): open it with an older pairs, or start a new --db"
        )


def upgrade(db: sqlite_utils.Database, path: Path, version: int) -> None:
    """Run the migrations from the version the database has now (it read ``version`` before
    the write lock; another process may have upgraded it since) up to ``SCHEMA_VERSION``.
    Called inside the upgrade's transaction."""
    current = schema_version(db, path)
    if current is not None and current >= SCHEMA_VERSION:
        return  # another process upgraded it meanwhile
    for step in range(current if current is not None else version, SCHEMA_VERSION):
        MIGRATIONS[step](db)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
