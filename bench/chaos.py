"""Chaos test: kill ``pairs work`` (and single worker processes) at random moments, restart, and
check that nothing is lost, nothing is doubled and the numbers are those of an undisturbed run.

A small grid (2 structures x A1 x k3, 3 reps, 8 epochs, 200 pairs) is queued in two databases.
One is trained undisturbed (the reference). The other is trained by ``pairs work --workers 2``
started again and again in its own process group, which is killed with SIGKILL (the driver and
its workers at once) at a random moment: during start-up, right after an epoch row was committed
(the driver is then writing the next rows and checkpoints), or at a random time in training.
In some of those lives one worker process alone is killed while the driver goes on. After every
kill the database is checked: each unfinished run's checkpoint is exactly at its last epoch row
(the epoch row and the checkpoint are written in one transaction), epoch rows are contiguous.
At the end: every run done, exactly E epoch rows each, no duplicates, and every epoch row and
test metric equal to the reference.

    python bench/chaos.py [--kills 20] [--worker-kills 5] [--seed 0] [--no-vectorize] [--keep DIR]

Prints e.g. ``20 kills, 0 lost, 0 duplicated, metrics identical`` and exits 1 otherwise.

On bitwise equality: with ``--no-vectorize`` every run is trained alone and a resumed run is
bitwise identical to an undisturbed one (the checkpoint holds the model and optimiser state, and
the shuffling of epoch e depends on (run seed, e) only). With the default vectorised engine, the
repetitions of a configuration are trained as one batched model, and which repetitions share a
batch depends on where the kills fell (a restart can resume them from different epochs, or
split them over the two workers); batched and single convolutions add in a different order, so
metrics agree to float32 rounding (a relative 1e-6 or so) rather than bit for bit.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--structure", "shared,independent", "--arch", "A1", "--kernel", "3", "--reps", "3",
        "--epochs", "8", "--train-pairs", "200", "--val-pairs", "20", "--test-pairs", "100"]
EPOCH_FIELDS = ("train_loss", "train_main_loss", "train_acc", "val_loss", "val_main_loss",
                "val_acc", "val_digit_acc", "lr")
TEST_FIELDS = ("test_loss", "test_main_loss", "test_acc", "test_digit_acc")
REL_TOL = 1e-5


def pairs(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, **kwargs)


def start_work(db: Path, log, vectorize: bool) -> subprocess.Popen:
    flags = [] if vectorize else ["--no-vectorize"]
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "work", "--workers", "2", *flags, "--db", str(db)],
        cwd=ROOT, stdout=log, stderr=log, start_new_session=True,
    )


def read(db: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(str(db), timeout=60)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def epoch_count(db: Path) -> int:
    return read(db, "SELECT count(*) FROM epochs")[0][0]


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (psutil if installed, else /proc, else pgrep)."""
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children()]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - the process is gone
        return []
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    if task_dir.is_dir():
        for task in task_dir.iterdir():
            try:
                found += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                pass
        return found
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def worker_pids(driver: int) -> list[int]:
    """The driver's training processes (multiprocessing spawn children, not its helpers)."""
    pids = []
    for pid in children(driver):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b"spawn_main"  # no /proc: take every child
        if b"spawn_main" in cmdline:
            pids.append(pid)
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def check_invariants(db: Path, epochs: int) -> list[str]:
    """What must hold after any kill: checkpoint == last epoch row, rows contiguous."""
    problems = []
    rows = read(
        db,
        "SELECT r.id, r.status, count(e.epoch), min(e.epoch), max(e.epoch), "
        "(SELECT k.epoch FROM checkpoints k WHERE k.run_id = r.id) "
        "FROM runs r LEFT JOIN epochs e ON e.run_id = r.id GROUP BY r.id",
    )
    for run, status, count, first, last, checkpoint in rows:
        if count and (first != 1 or last != count):
            problems.append(f"{run}: epoch rows {first}..{last} but {count} of them")
        if status == "done":
            if count != epochs or checkpoint is not None:
                problems.append(f"{run}: done with {count} rows, checkpoint {checkpoint}")
        elif (checkpoint or 0) != (last or 0):
            problems.append(f"{run}: checkpoint at epoch {checkpoint} but last epoch row {last}")
    return problems


def results(db: Path) -> tuple[dict, dict]:
    fields = ", ".join(f"e.{f}" for f in EPOCH_FIELDS)
    epochs = {
        (row[0], row[1], row[2]): row[3:]
        for row in read(db, f"SELECT c.structure, r.rep, e.epoch, {fields} FROM epochs e "
                            "JOIN runs r ON r.id = e.run_id JOIN configs c ON c.id = r.config_id")
    }
    tests = {
        (row[0], row[1]): row[2:]
        for row in read(db, f"SELECT c.structure, r.rep, {', '.join('r.' + f for f in TEST_FIELDS)} "
                            "FROM runs r JOIN configs c ON c.id = r.config_id")
    }
    return epochs, tests


def compare(reference: dict, got: dict) -> tuple[int, int, float, list[str]]:
    """(values compared, bitwise equal, max relative difference, mismatches beyond REL_TOL)."""
    compared = equal = 0
    worst = 0.0
    bad = []
    for key, expected in reference.items():
        actual = got.get(key)
        if actual is None:
            bad.append(f"{key}: missing")
            continue
        for name, a, b in zip(EPOCH_FIELDS if len(expected) == len(EPOCH_FIELDS) else TEST_FIELDS,
                              expected, actual):
            compared += 1
            if a == b:
                equal += 1
                continue
            if a is None or b is None:
                bad.append(f"{key} {name}: {a} vs {b}")
                continue
            rel = abs(a - b) / max(abs(a), 1e-12)
            worst = max(worst, rel)
            if not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9):
                bad.append(f"{key} {name}: {a!r} vs {b!r} (rel {rel:.2e})")
    return compared, equal, worst, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills of the whole work process group")
    parser.add_argument("--worker-kills", type=int, default=5, help="kills of one worker process alone")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    parser.add_argument("--no-vectorize", dest="vectorize", action="store_false",
                        help="train runs one at a time (then metrics must be bitwise identical)")
    parser.add_argument("--keep", type=Path, help="keep the databases and logs in this folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pairs-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    reference, chaos = folder / "reference.db", folder / "chaos.db"
    for db in (reference, chaos):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        done = pairs("queue", *GRID, "--db", str(db))
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return 1
    epochs = int(GRID[GRID.index("--epochs") + 1])
    total_rows = epoch_count_expected = 2 * 3 * epochs

    started = time.perf_counter()
    with open(folder / "reference.log", "w") as log:
        ref = start_work(reference, log, args.vectorize)
        ref.wait()
    reference_s = time.perf_counter() - started
    if ref.returncode != 0:
        print(f"the reference run failed (exit {ref.returncode}); see {folder}/reference.log")
        return 1
    print(f"reference: {epoch_count(reference)} epoch rows in {reference_s:.0f} s")

    kills = worker_kills = lives = 0
    problems: list[str] = []
    modes: dict[str, int] = {}
    reserve = 4 * 6  # rows left for the last life, where single workers are killed
    started = time.perf_counter()
    while True:
        lives += 1
        # Lives 1..--kills each end in a kill of the whole process group; the rows they may add
        # are rationed so that the grid cannot finish first (a life that cannot afford an
        # epoch's burst of rows is killed during start-up). The last life kills single workers.
        remaining = total_rows - epoch_count(chaos)
        left = args.kills - kills
        kill_driver = left > 0
        budget, mode, kill_worker = total_rows, "none", False
        if kill_driver:
            spend = max(0, remaining - reserve)
            budget = spend // left
            if budget < 3 and rng.random() > spend / (3 * left):
                mode, budget = "startup", 0
            else:
                mode = rng.choice(["startup", "epoch", "timed"])
            kill_worker = worker_kills < args.worker_kills and budget >= 6 and rng.random() < 0.5
        delay = rng.uniform(0.05, 4.0) if mode == "startup" else rng.uniform(0.0, 3.0)
        log = open(folder / f"life-{lives:03d}.log", "w")
        proc = start_work(chaos, log, args.vectorize)
        t0 = time.monotonic()
        rows0 = epoch_count(chaos)
        first_row_at = last_worker_kill = None
        rows_at_worker_kill = 0
        killed_here = 0
        while proc.poll() is None:
            time.sleep(0.01)
            now = time.monotonic()
            new_rows = epoch_count(chaos) - rows0
            if new_rows and first_row_at is None:
                first_row_at = now
            wants_worker_kill = worker_kills < args.worker_kills and (
                (kill_driver and kill_worker and killed_here == 0 and first_row_at is not None
                 and now - first_row_at >= delay / 2)
                or (not kill_driver and new_rows > rows_at_worker_kill
                    and now - (last_worker_kill or 0.0) >= 3.0))
            if wants_worker_kill:
                workers = worker_pids(proc.pid)
                if workers:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    last_worker_kill, rows_at_worker_kill = now, new_rows
                    worker_kills += 1
                    killed_here += 1
                    continue
            if not kill_driver:
                continue
            grace = last_worker_kill is not None and now - last_worker_kill < 2.0
            if new_rows > budget or (not grace and (
                    (mode == "startup" and now - t0 >= delay)
                    or (mode == "epoch" and new_rows >= 1)
                    or (mode == "timed" and first_row_at is not None and now - first_row_at >= delay))):
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
                modes[mode] = modes.get(mode, 0) + 1
                break
        proc.wait()
        log.close()
        rows1 = epoch_count(chaos)
        how = f"killed ({mode})" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        print(f"life {lives:3d}: {time.monotonic() - t0:5.1f} s, epoch rows {rows0:2d} -> {rows1:2d}, "
              f"{killed_here} worker(s) killed, {how}", flush=True)
        if proc.returncode not in (0, -signal.SIGKILL):
            problems.append(f"life {lives}: pairs work exited {proc.returncode} "
                            f"(see {folder}/life-{lives:03d}.log)")
        text = (folder / f"life-{lives:03d}.log").read_text(errors="replace")
        for marker in ("Traceback", "database is locked"):
            if marker in text:
                problems.append(f"life {lives}: {marker!r} in its output")
        problems += [f"after life {lives}: {p}" for p in check_invariants(chaos, epochs)]
        if proc.returncode == 0:
            counts = dict(read(chaos, "SELECT status, count(*) FROM runs GROUP BY status"))
            if counts.get("done", 0) + counts.get("failed", 0) == 6:
                break
        if lives > 3 * (args.kills + args.worker_kills) + 20:
            problems.append("the grid never completed")
            break
    chaos_s = time.perf_counter() - started

    runs = read(chaos, "SELECT status, count(*) FROM runs GROUP BY status")
    done = dict(runs).get("done", 0)
    failed = read(chaos, "SELECT id, error FROM runs WHERE status = 'failed'")
    rows = read(chaos, "SELECT run_id, epoch FROM epochs")
    duplicated = len(rows) - len(set(rows))
    per_run = read(chaos, "SELECT r.id, count(e.epoch) FROM runs r LEFT JOIN epochs e "
                          "ON e.run_id = r.id GROUP BY r.id")
    lost_rows = sum(max(0, epochs - n) for _, n in per_run)
    extra_rows = sum(max(0, n - epochs) for _, n in per_run)
    lost = (6 - done) + lost_rows
    (ref_epochs, ref_tests), (got_epochs, got_tests) = results(reference), results(chaos)
    n1, eq1, worst1, bad1 = compare(ref_epochs, got_epochs)
    n2, eq2, worst2, bad2 = compare(ref_tests, got_tests)
    compared, equal, worst, bad = n1 + n2, eq1 + eq2, max(worst1, worst2), bad1 + bad2
    identical = not bad
    print(f"{lives} lives of pairs work in {chaos_s:.0f} s; driver kills by moment: "
          + ", ".join(f"{k} {v}" for k, v in sorted(modes.items())))
    print(f"{done}/6 runs done, {len(rows)}/{epoch_count_expected} epoch rows, {len(failed)} failed "
          f"{[f[1] for f in failed] if failed else ''}")
    print(f"{compared} values compared with the undisturbed run: {equal} bitwise equal, "
          f"largest relative difference {worst:.1e} (tolerance {REL_TOL:g})")
    for line in (problems + bad)[:20]:
        print("  problem:", line)
    verdict = "metrics identical" if identical else f"{len(bad)} metrics differ"
    print(f"{kills} kills (+{worker_kills} worker kills), {lost} lost, {duplicated + extra_rows} "
          f"duplicated, {verdict}")
    ok = (kills >= args.kills and worker_kills >= args.worker_kills and lost == 0 and not failed
          and duplicated + extra_rows == 0 and identical and not problems)
    if not args.keep:
        print(f"(databases and logs in {folder})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
