"""The SQLite store (through sqlite-utils): configurations, runs, epoch metrics, checkpoints.

One file is the only channel between processes. WAL mode, a busy timeout and short
``BEGIN IMMEDIATE`` transactions let several drivers and readers share it; epoch rows are keyed
by (run_id, epoch) and written with upserts, so a replay never doubles a row. Times are seconds
since the Unix epoch (UTC).

Every SQL statement of pairs is in this package, split by concern:

- ``errors``: the errors, and the one-line messages that explain an SQLite failure;
- ``busy``: waiting out a locked database (the one retry loop);
- ``opening``: paths, the connection, the checks on open, the write transaction, the file's
  identity (``DatabaseGone``);
- ``validate``: the checks of the file, its tables and its rows made when it is opened;
- ``schema``: the tables and their columns, creating them, migrations;
- ``workers``: a driver's identity and whether it still lives;
- ``queue``: the queue and the run lifecycle (queue, claim, heartbeat, finish, retry, requeue);
- ``queries``: the read queries (status, progress, tables, curves, reports, the CLI).

``Store`` is the one class the rest of pairs uses: the lifecycle and the queries over one
connection.
"""

from __future__ import annotations

from core.store.errors import DatabaseGone, DatabaseUnusable, LostClaim, StoreError
from core.store.opening import DEFAULT_DB, copy_database, resolve_db_path
from core.store.queries import FINAL_METRICS, Queries
from core.store.queue import ClaimedRun, RunLifecycle, run_id
from core.store.schema import (
    CONFIG_COLUMNS,
    EPOCH_COLUMNS,
    MIGRATIONS,
    REQUIRED_TABLES,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
)
from core.store.workers import _pid_alive, worker_host, worker_id


class Store(RunLifecycle, Queries):
    """A validated, migrated connection to one pairs database: the run lifecycle
    (``queue.RunLifecycle``) and the read queries (``queries.Queries``) over one connection
    (``opening.Connection``)."""


__all__ = [
    "CONFIG_COLUMNS",
    "DEFAULT_DB",
    "EPOCH_COLUMNS",
    "FINAL_METRICS",
    "MIGRATIONS",
    "REQUIRED_TABLES",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "STATUSES",
    "ClaimedRun",
    "DatabaseGone",
    "DatabaseUnusable",
    "LostClaim",
    "Store",
    "StoreError",
    "_pid_alive",
    "copy_database",
    "resolve_db_path",
    "run_id",
    "worker_host",
    "worker_id",
]
