"""The queue and the run lifecycle: queueing runs, claiming them, heartbeats, epochs, finishing,
failing, restarting and releasing a run, requeueing the runs of a driver that is gone.

One driver is the writer of the runs it holds; every write is one short transaction, run again
from the start when it meets a lock (``busy.retrying``).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from core.config import ConfigError, RunConfig, run_seed, training_cost
from core.store._sqlite_utils import sqlite_utils
from core.store.busy import retrying
from core.store.errors import LostClaim, StoreError
from core.store.opening import Connection
from core.store.schema import copy_final_metrics
from core.store.workers import _pid_alive, worker_host, worker_id


@dataclass(frozen=True)
class ClaimedRun:
    id: str
    config: RunConfig
    rep: int
    checkpoint: bytes | None
    attempts: int


def run_id(config: RunConfig, rep: int) -> str:
    return f"{config.id}-r{rep:03d}"


class RunLifecycle(Connection):
    """The writes of the queue and of the runs' lifecycle (a part of ``Store``)."""

    def _opened_existing(self) -> None:
        self._requeue_dead_local()

    def _requeue_dead_local(self) -> None:
        """Queue again the runs still marked running by a process of this host that is gone.

        A driver killed with SIGKILL (or a machine that rebooted) leaves its runs ``running``;
        whoever opens the database next, ``pairs work``, ``pairs status`` or the console, sees
        them queued again (they resume from their last checkpoint). A read-only database is
        left as it is.
        """
        host = socket.gethostname()
        try:
            rows = self.db.execute("SELECT worker FROM runs WHERE status = 'running'").fetchall()
            if any(worker_host(worker) == host and not _pid_alive(worker) for (worker,) in rows):
                self.requeue_stale(float("inf"), host=host)
        except (sqlite3.OperationalError, StoreError):
            pass  # read-only or busy: `pairs work` requeues them when it starts

    # -- queueing ----------------------------------------------------------------------------
    @retrying
    def queue(self, configs: Iterable[RunConfig], reps: int) -> int:
        """Add (configuration, repetition) runs; what is already there is left alone.

        Returns how many runs were added.
        """
        if not isinstance(reps, int) or reps < 1:
            raise ConfigError(f"reps must be an integer >= 1, got {reps!r}")
        now = time.time()
        configs = list(configs)
        with self.transaction() as db:
            before = db.execute("SELECT count(*) FROM runs").fetchone()[0]
            db["configs"].insert_all([_config_row(c, now) for c in configs], ignore=True)
            db["runs"].insert_all(
                [
                    {
                        "id": run_id(c, rep),
                        "config_id": c.id,
                        "rep": rep,
                        "seed": run_seed(c, rep),
                        "status": "queued",
                        "attempts": 0,
                        "queued_at": now,
                    }
                    for c in configs
                    for rep in range(reps)
                ],
                ignore=True,
            )
            after = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        return after - before

    def count_new(self, configs: Iterable[RunConfig], reps: int) -> int:
        """How many runs ``queue(configs, reps)`` would add (for previews)."""
        ids = [run_id(c, rep) for c in configs for rep in range(reps)]
        existing = 0
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            existing += self.db.execute(f"SELECT count(*) FROM runs WHERE id IN ({marks})", chunk).fetchone()[0]
        return len(ids) - existing

    @retrying
    def retry_failed(self) -> int:
        """Queue every failed run again; returns how many."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'queued', error = NULL, worker = NULL, queued_at = ? WHERE status = 'failed'",
                [time.time()],
            )
            return cursor.rowcount

    # -- claiming and reporting (one driver is the writer of its runs) -----------------------
    @retrying
    def claim(self, worker: str, limit: int = 1, config_ids: list[str] | None = None) -> list[ClaimedRun]:
        """Atomically mark up to ``limit`` queued runs of ONE configuration as running for ``worker``.

        The configuration: among those with the lowest queued repetition, the costliest to train
        (``config.training_cost``), so a grid's last runs are its cheapest and no process idles
        through a long tail; then queue order. Its queued runs are taken lowest repetition first.
        """
        now = time.time()
        host = worker_host(worker)
        where, params = "r.status = 'queued'", []
        if config_ids:
            where += f" AND r.config_id IN ({','.join('?' * len(config_ids))})"
            params.extend(config_ids)
        with self.transaction() as db:
            candidates = db.execute(
                f"SELECT r.config_id, min(r.rep), c.created_at, c.arch, c.kernel, c.epochs, c.train_pairs, "
                f"c.val_pairs FROM runs r JOIN configs c ON c.id = r.config_id WHERE {where} "
                f"GROUP BY r.config_id",
                params,
            ).fetchall()
            if not candidates:
                return []
            first = min(candidates, key=lambda c: (c[1], -_cost_or_zero(c[3:]), c[2], c[0]))
            config = RunConfig.from_dict(db["configs"].get(first[0]))
            rows = list(
                db.query(
                    "SELECT r.id, r.rep, r.attempts, k.state FROM runs r "
                    "LEFT JOIN checkpoints k ON k.run_id = r.id "
                    "WHERE r.status = 'queued' AND r.config_id = ? ORDER BY r.rep LIMIT ?",
                    [first[0], limit],
                )
            )
            for row in rows:
                db.execute(
                    "UPDATE runs SET status = 'running', worker = ?, host = ?, heartbeat_at = ?, "
                    "started_at = coalesce(started_at, ?), attempts = attempts + 1, error = NULL "
                    "WHERE id = ?",
                    [worker, host, now, now, row["id"]],
                )
        return [
            ClaimedRun(
                id=row["id"], config=config, rep=row["rep"], checkpoint=row["state"], attempts=row["attempts"] + 1
            )
            for row in rows
        ]

    @retrying
    def heartbeat(self, worker: str, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self.transaction() as db:
            db.execute(
                f"UPDATE runs SET heartbeat_at = ? WHERE worker = ? AND status = 'running' AND id IN ({marks})",
                [time.time(), worker, *ids],
            )

    @retrying
    def record_epoch(self, run_id_: str, worker: str, metrics: dict, checkpoint: bytes) -> None:
        """Persist one epoch row and the run's checkpoint in one transaction."""
        now = time.time()
        with self.transaction() as db:
            self._own(db, run_id_, worker, now)
            db["epochs"].upsert({"run_id": run_id_, **metrics, "recorded_at": now}, pk=("run_id", "epoch"))
            db["checkpoints"].upsert(
                {"run_id": run_id_, "epoch": metrics["epoch"], "state": checkpoint, "saved_at": now},
                pk="run_id",
            )

    @retrying
    def finish_run(self, run_id_: str, worker: str, results: dict) -> None:
        """Mark done with its test metrics and run information; drop the checkpoint."""
        now = time.time()
        with self.transaction() as db:
            self._own(db, run_id_, worker, now)
            db["runs"].update(run_id_, {**results, "status": "done", "finished_at": now, "error": None})
            copy_final_metrics(db, "id = ?", [run_id_])
            db.execute("DELETE FROM checkpoints WHERE run_id = ?", [run_id_])

    @retrying
    def fail_run(self, run_id_: str, worker: str, error: str) -> None:
        now = time.time()
        with self.transaction() as db:
            self._own(db, run_id_, worker, now)
            db["runs"].update(run_id_, {"status": "failed", "error": error, "finished_at": now})

    @retrying
    def restart_run(self, run_id_: str, worker: str) -> int:
        """Drop the epoch rows and checkpoint of a run this worker holds (its checkpoint was
        unreadable and it trains again from epoch 0); returns how many epoch rows went."""
        with self.transaction() as db:
            self._own(db, run_id_, worker, time.time())
            gone = db.execute("DELETE FROM epochs WHERE run_id = ?", [run_id_]).rowcount
            db.execute("DELETE FROM checkpoints WHERE run_id = ?", [run_id_])
        return gone

    @retrying
    def release_run(self, run_id_: str, worker: str) -> None:
        """Put a run this worker holds back in the queue (interrupted; resumes from checkpoint)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'queued', worker = NULL WHERE id = ? AND worker = ? AND status = 'running'",
                [run_id_, worker],
            )

    def _own(self, db: sqlite_utils.Database, run_id_: str, worker: str, now: float) -> None:
        cursor = db.execute(
            "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND worker = ? AND status = 'running'",
            [now, run_id_, worker],
        )
        if cursor.rowcount != 1:
            raise LostClaim(f"run {run_id_} is no longer held by {worker}")

    @retrying
    def requeue_stale(self, timeout_s: float, *, host: str | None = None) -> list[str]:
        """Queue again the running runs whose worker is gone.

        Gone means: no heartbeat for ``timeout_s`` seconds, or a worker on this host whose
        process no longer exists. Never the runs of the calling process itself (it is alive,
        whatever its heartbeat says). Returns the ids requeued.
        """
        host = host or socket.gethostname()
        me = worker_id()
        now = time.time()
        with self.transaction() as db:
            stale = []
            for row in db.query("SELECT id, worker, host, heartbeat_at FROM runs WHERE status = 'running'"):
                if row["worker"] == me:
                    continue
                old = (row["heartbeat_at"] or 0) < now - timeout_s
                dead = worker_host(row["worker"]) == host and not _pid_alive(row["worker"])
                if old or dead:
                    stale.append(row["id"])
            for chunk in _chunks(stale, 500):
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"UPDATE runs SET status = 'queued', worker = NULL WHERE id IN ({marks})",
                    chunk,
                )
        return stale

    def set_host(self, run_id_: str, worker: str, host: str) -> None:
        """Record the machine that trains a run (a Ray node), while this worker holds it."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET host = ? WHERE id = ? AND worker = ? AND status = 'running'", [host, run_id_, worker]
            )


def _config_row(config: RunConfig, now: float) -> dict:
    """A ``configs`` row: the paper's fields as columns, later ones as ``options`` JSON."""
    extensions = config.extension_values()
    row = {k: v for k, v in config.to_dict().items() if k not in extensions}
    return {"id": config.id, **row, "options": json.dumps(extensions, sort_keys=True), "created_at": now}


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _cost_or_zero(columns: tuple) -> int:
    """``training_cost`` of a configs row; 0 for a row edited into nonsense by hand (claiming it
    then names the problem, through ``RunConfig.from_dict``)."""
    try:
        return training_cost(*columns)
    except (TypeError, ValueError):
        return 0
