"""Time `pairs table` and the best-setup query on a database of 100 000 runs x 30 epochs.

    python bench/table.py [--runs 100000] [--epochs 30] [--db /tmp/pairs-table-bench.db]

The database is built once (direct inserts, about a minute) and reused when it already exists.
Prints the build time and, over 3 repetitions, the best wall time of: the `pairs table` query
(core.stats.setup_rows, aggregated in SQL), rendering it as Markdown, the `pairs best` query, and
the whole `pairs table --format markdown` command in a fresh process (imports included).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

from core.api import best_of_protocols, open_store, render_rows, table_rows
from core.config import GridSpec, RunConfig
from core.store import run_id
from core.store.schema import copy_final_metrics

REPS = 10


def build(path: Path, runs: int, epochs: int) -> float:
    started = time.perf_counter()
    n_configs = runs // REPS
    seeds = -(-n_configs // 36)
    configs = []
    for seed in range(seeds):
        configs.extend(GridSpec().expand(RunConfig(epochs=epochs, seed=seed)))
    configs = configs[:n_configs]
    rng = random.Random(0)
    with open_store(path) as store:
        store.queue(configs, REPS)
        now = time.time()
        with store.transaction() as db:
            db.execute("UPDATE runs SET status = 'done', test_acc = 0.85, test_loss = 0.4, finished_at = ?", [now])
            rows = (
                (
                    run_id(c, rep),
                    e,
                    rng.random(),
                    rng.random(),
                    rng.random(),
                    rng.random(),
                    rng.random(),
                    0.7 + 0.2 * rng.random(),
                    0.01,
                    1.0,
                    now,
                )
                for c in configs
                for rep in range(REPS)
                for e in range(1, epochs + 1)
            )
            db.conn.executemany(
                "INSERT INTO epochs (run_id, epoch, train_loss, train_main_loss, train_acc, val_loss, "
                "val_main_loss, val_acc, lr, seconds, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            copy_final_metrics(db, "status = 'done'")  # what Store.finish_run records
    return time.perf_counter() - started


def best_of(repeats: int, action) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--db", type=Path, default=Path("/tmp/pairs-table-bench.db"))
    args = parser.parse_args()

    if not args.db.exists():
        print(f"built {args.runs} runs x {args.epochs} epochs in {build(args.db, args.runs, args.epochs):.1f} s")
    with open_store(args.db, create=False) as store:
        runs = store.db["runs"].count
        print(f"database: {args.db} ({args.db.stat().st_size / 1e6:.0f} MB, {runs} runs)")
        rows = table_rows(store)
        print(f"table query (setup_rows, {len(rows)} setups): {best_of(3, lambda: table_rows(store)):.3f} s")
        print(f"markdown rendering: {best_of(3, lambda: render_rows(rows, 'markdown')):.3f} s")
        print(f"best query (best setups + Welch): {best_of(3, lambda: best_of_protocols(store)):.3f} s")
    command = [sys.executable, "-m", "tui.cli", "table", "--format", "markdown", "--db", str(args.db)]
    whole = best_of(3, lambda: subprocess.run(command, check=True, capture_output=True))
    print(f"`pairs table --format markdown` end to end (new process): {whole:.3f} s")


if __name__ == "__main__":
    main()
