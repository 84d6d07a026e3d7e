"""Start-up of a short ``pairs run``: from process start to its first epoch row in the database.

    python bench/startup.py                      # this code, workers forked vs spawned, 3 rounds
    python bench/startup.py --rounds 5 --base /work/wt/workers-base   # and an older checkout

Each round runs, one after another and in a fresh database each, the same tiny ``pairs run``
(shared A1 k5, 2 reps x 1 epoch, 100/10/100 pairs by default) once per variant:

* ``forkserver``: this code as it is (workers forked from a server that has imported torch),
* ``spawn``: this code with ``PAIRS_START_METHOD=spawn`` (each worker a fresh interpreter that
  imports everything itself: how workers started before issue 19),
* ``base``: with ``--base DIR``, the code of another checkout (e.g. ``git worktree add DIR main``
  of an older commit) run by this interpreter (its spawned workers import that checkout too).

It prints, per variant, the median (and every figure) of the seconds from starting the process to
the first epoch row landing in the database (its ``recorded_at``) and to the process's exit.
Rounds interleave the variants, so a busy machine slows them alike; the figures still move with
the load (say so when you quote them from a shared machine).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["run", "--structure", "shared", "--arch", "A1", "--kernel", "5"]


def command(base: str | None) -> list[str]:
    if base is None:
        return [str(Path(sys.executable).with_name("pairs"))]
    code = (
        f"import sys; sys.path.insert(0, {base!r}); sys.argv[0] = 'pairs'; from tui.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", code]


def timed_run(args: list[str], env: dict[str, str], db: Path) -> tuple[float, float]:
    """(seconds to the first epoch row, seconds to the end) of one ``pairs run``."""
    started = time.time()
    result = subprocess.run([*args, "--db", str(db)], env=env, capture_output=True, text=True, timeout=600)
    ended = time.time()
    if result.returncode != 0:
        raise SystemExit(f"pairs run failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    with sqlite3.connect(db) as conn:
        (first,) = conn.execute("SELECT min(recorded_at) FROM epochs").fetchone()
    return first - started, ended - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default=None, help="a checkout of older code to time as well")
    parser.add_argument("--reps", default="2")
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--train-pairs", default="100")
    parser.add_argument("--val-pairs", default="10")
    parser.add_argument("--test-pairs", default="100")
    parser.add_argument("--workers", default=None)
    args = parser.parse_args()
    run = [
        *RUN,
        "--reps",
        args.reps,
        "--epochs",
        args.epochs,
        "--train-pairs",
        args.train_pairs,
        "--val-pairs",
        args.val_pairs,
        "--test-pairs",
        args.test_pairs,
    ]
    if args.workers:
        run += ["--workers", args.workers]
    clean = {k: v for k, v in os.environ.items() if k != "PAIRS_START_METHOD"}
    variants = {
        "forkserver": (command(None), clean),
        "spawn": (command(None), {**clean, "PAIRS_START_METHOD": "spawn"}),
    }
    if args.base:
        variants["base"] = (command(os.path.abspath(args.base)), clean)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    print(f"pairs {' '.join(run)}  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start)")
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for name, (cmd, env) in variants.items():
                db = Path(folder, f"{name}-{round_}.db")
                figures[name].append(timed_run([*cmd, *run], env, db))
                first, end = figures[name][-1]
                print(f"  round {round_ + 1} {name:10s} first epoch {first:5.2f} s  end {end:5.2f} s", flush=True)
    print(f"load {os.getloadavg()[0]:.1f} at the end")
    print(f"{'variant':10s} {'first epoch (median)':>22s} {'end (median)':>14s}")
    for name, rows in figures.items():
        first = statistics.median(r[0] for r in rows)
        end = statistics.median(r[1] for r in rows)
        print(f"{name:10s} {first:20.2f} s {end:12.2f} s")
    if "spawn" in figures:
        fork = statistics.median(r[0] for r in figures["forkserver"])
        for name in ("spawn", "base"):
            if name in figures:
                other = statistics.median(r[0] for r in figures[name])
                print(
                    f"first epoch: forkserver {fork:.2f} s vs {name} {other:.2f} s "
                    f"({other - fork:.2f} s sooner, {other / fork:.2f}x)"
                )


if __name__ == "__main__":
    main()
