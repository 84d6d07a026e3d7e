"""Concurrency: three ``pairs work`` processes and a reader polling like the console, one database.

Queues a grid of short runs (many small transactions: claims, epoch rows with checkpoints,
heartbeats, results), starts three ``pairs work --workers 1`` drivers on it, and polls it from
this process the way ``pairs-tui`` does: ``PRAGMA data_version``, then ``config_progress``,
``epoch_rows`` and ``running`` whenever it changed; every few seconds the reader also queues a
configuration, as the console's queue form would. After ``--seconds`` the drivers are stopped
(SIGINT: they finish the epoch and requeue what they hold) and the database is checked.

    python bench/concurrency.py [--seconds 180] [--keep DIR]

Prints the counts and exits 1 on any "database is locked" (or other error) seen by a driver or
the reader, on a lost or doubled epoch row, or on a run left running.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.api import open_store, queue  # noqa: E402
from core.config import RunConfig  # noqa: E402

SMALL = dict(arch="A1", kernel=3, epochs=3, train_pairs=60, val_pairs=10, test_pairs=60)


def grid(seeds: range) -> list[RunConfig]:
    return [
        RunConfig(**SMALL, structure=s, seed=seed) for seed in seeds for s in ("independent", "shared", "shared-aux")
    ]


def poll(
    db: Path,
    seconds: float,
    drivers: list[subprocess.Popen],
    queue_every: float = 5.0,
    queue_at_most: int | None = None,
) -> dict:
    """Read like the console until ``seconds`` passed or every driver exited; count what fails."""
    stats = {"polls": 0, "reads": 0, "changes": 0, "queued_by_reader": 0, "errors": []}
    store = open_store(db, create=False)
    last_version = None
    next_queue = time.monotonic() + queue_every
    extra_seed = 1000
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and any(d.poll() is None for d in drivers):
            stats["polls"] += 1
            try:
                version = store.data_version()
                if version != last_version:
                    last_version = version
                    stats["changes"] += 1
                    progress = store.config_progress()
                    for row in progress[:6]:
                        store.epoch_rows(row["id"])
                    store.running()
                    store.status_counts()
                    stats["reads"] += 1
                if time.monotonic() > next_queue and (
                    queue_at_most is None or stats["queued_by_reader"] < 2 * queue_at_most
                ):
                    queue(store, grid(range(extra_seed, extra_seed + 1))[:1], 2)
                    extra_seed += 1
                    stats["queued_by_reader"] += 2
                    next_queue = time.monotonic() + queue_every
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                stats["errors"].append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)
    finally:
        store.close()
    return stats


def check(db: Path) -> list[str]:
    """No run left running, done runs complete, unfinished runs' checkpoint at their last row."""
    conn = sqlite3.connect(str(db), timeout=60)
    try:
        problems = []
        rows = conn.execute(
            "SELECT r.id, r.status, c.epochs, count(e.epoch), max(e.epoch), "
            "(SELECT k.epoch FROM checkpoints k WHERE k.run_id = r.id) FROM runs r "
            "JOIN configs c ON c.id = r.config_id LEFT JOIN epochs e ON e.run_id = r.id GROUP BY r.id"
        ).fetchall()
        for run, status, epochs, count, last, checkpoint in rows:
            if status == "running":
                problems.append(f"{run} still running")
            if count != (last or 0):
                problems.append(f"{run}: {count} rows up to epoch {last}")
            if status == "done" and count != epochs:
                problems.append(f"{run}: done with {count}/{epochs} rows")
            if status in ("queued", "failed") and (checkpoint or 0) != (last or 0):
                problems.append(f"{run}: checkpoint {checkpoint}, last row {last}")
        return problems
    finally:
        conn.close()


def run(
    db: Path,
    seconds: float,
    drivers: int = 3,
    configs: int = 60,
    log_dir: Path | None = None,
    queue_every: float = 5.0,
    queue_at_most: int | None = None,
) -> dict:
    """The whole experiment; returns its counts (``problems`` empty when all is well)."""
    with open_store(db) as store:
        queue(store, grid(range(configs // 3)), 2)
    log_dir = log_dir or db.parent
    logs = [open(log_dir / f"driver-{i}.log", "w") for i in range(drivers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "work", "--workers", "1", "--db", str(db)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    started = time.perf_counter()
    try:
        stats = poll(db, seconds, procs, queue_every, queue_at_most)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # finish the epoch, requeue what it holds
        for proc in procs:
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    stats["seconds"] = time.perf_counter() - started
    stats["exit_codes"] = [p.returncode for p in procs]
    outputs = [(log_dir / f"driver-{i}.log").read_text(errors="replace") for i in range(drivers)]
    stats["driver_errors"] = [
        f"driver {i}: {line.strip()}"
        for i, text in enumerate(outputs)
        for line in text.splitlines()
        if "locked" in line or "Traceback" in line or line.startswith("error")
    ]
    conn = sqlite3.connect(str(db), timeout=60)
    try:
        stats["counts"] = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
        stats["epoch_rows"] = conn.execute("SELECT count(*) FROM epochs").fetchone()[0]
        stats["distinct_rows"] = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT run_id, epoch FROM epochs)"
        ).fetchone()[0]
    finally:
        conn.close()
    done_reported = 0
    for text in outputs:
        for line in text.splitlines():
            if "run(s) done" in line:
                done_reported += int(line.split()[0])
    stats["done_reported"] = done_reported
    problems = check(db) + stats["driver_errors"] + stats["errors"]
    if any(code not in (0, 130) for code in stats["exit_codes"]):
        problems.append(f"exit codes {stats['exit_codes']}")
    if stats["epoch_rows"] != stats["distinct_rows"]:
        problems.append("doubled epoch rows")
    if done_reported != stats["counts"].get("done", 0):
        problems.append(
            f"drivers reported {done_reported} runs done, the database has {stats['counts'].get('done', 0)}"
        )
    stats["problems"] = problems
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--configs", type=int, default=300, help="configurations queued (x 2 reps)")
    parser.add_argument("--keep", type=Path, help="keep the database and logs in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pairs-concurrency-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "shared.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    stats = run(db, args.seconds, configs=args.configs, log_dir=folder)
    print(
        f"{stats['seconds']:.0f} s, 3 drivers (exit codes {stats['exit_codes']}) and a reader: "
        f"{stats['polls']} polls, {stats['changes']} changes seen, {stats['reads']} full reads, "
        f"{stats['queued_by_reader']} runs queued by the reader"
    )
    print(
        f"runs: {stats['counts']}; {stats['epoch_rows']} epoch rows ({stats['distinct_rows']} distinct); "
        f"drivers reported {stats['done_reported']} done"
    )
    locked = sum("locked" in p for p in stats["problems"])
    lost = sum("rows" in p or "running" in p or "reported" in p for p in stats["problems"])
    for line in stats["problems"][:20]:
        print("  problem:", line)
    print(
        f"{locked} 'database is locked' errors surfaced, {lost} lost rows, "
        f"{len(stats['problems'])} problems (files in {folder})"
    )
    return 0 if not stats["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
