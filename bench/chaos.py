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
                          [--options] [--scenarios]

``--options`` kills and resumes a grid of one setup per option beyond the paper (batch norm,
dropout, avg pooling, a hidden layer, momentum, weight decay, re-pairing, shifts, rotations,
swap) instead of the paper's. ``--scenarios`` then also: SIGSTOPs a worker (the driver must kill
it and resume its run), runs two drivers that are both PID 1 of their pid namespace and kills
one (the other takes its runs over after the heartbeat timeout), and replaces checkpoints with
garbage, a cut-short file and a hostile pickle (said once each, trained again from epoch 0).

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
GRID = [
    "--structure",
    "shared,independent",
    "--arch",
    "A1",
    "--kernel",
    "3",
    "--reps",
    "3",
    "--epochs",
    "8",
    "--train-pairs",
    "200",
    "--val-pairs",
    "20",
    "--test-pairs",
    "100",
]
#: --options: one configuration per option beyond the paper (RunConfig.EXTENSION_FIELDS), 2 reps.
OPTION_FLAGS = [
    ["--batch-norm", "on"],
    ["--dropout", "0.3"],
    ["--pooling", "avg"],
    ["--hidden", "8"],
    ["--momentum", "0.9"],
    ["--weight-decay", "0.01"],
    ["--repair", "on"],
    ["--shift", "1"],
    ["--rotate", "10"],
    ["--swap", "on"],
]
OPTIONS_GRID = [
    "--structure",
    "shared",
    "--arch",
    "A1",
    "--kernel",
    "3",
    "--reps",
    "2",
    "--epochs",
    "6",
    "--train-pairs",
    "200",
    "--val-pairs",
    "20",
    "--test-pairs",
    "100",
]
EPOCH_FIELDS = (
    "train_loss",
    "train_main_loss",
    "train_acc",
    "val_loss",
    "val_main_loss",
    "val_acc",
    "val_digit_acc",
    "lr",
)
TEST_FIELDS = ("test_loss", "test_main_loss", "test_acc", "test_digit_acc")
REL_TOL = 1e-5


def pairs(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=ROOT, text=True, capture_output=True, **kwargs)


def start_work(db: Path, log, vectorize: bool) -> subprocess.Popen:
    flags = [] if vectorize else ["--no-vectorize"]
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "work", "--workers", "2", *flags, "--db", str(db)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        start_new_session=True,
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
        for row in read(
            db,
            f"SELECT c.id, r.rep, e.epoch, {fields} FROM epochs e "
            "JOIN runs r ON r.id = e.run_id JOIN configs c ON c.id = r.config_id",
        )
    }
    tests = {
        (row[0], row[1]): row[2:]
        for row in read(
            db,
            f"SELECT c.id, r.rep, {', '.join('r.' + f for f in TEST_FIELDS)} "
            "FROM runs r JOIN configs c ON c.id = r.config_id",
        )
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
        for name, a, b in zip(EPOCH_FIELDS if len(expected) == len(EPOCH_FIELDS) else TEST_FIELDS, expected, actual):
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
    parser.add_argument(
        "--no-vectorize",
        dest="vectorize",
        action="store_false",
        help="train runs one at a time (then metrics must be bitwise identical)",
    )
    parser.add_argument("--keep", type=Path, help="keep the databases and logs in this folder")
    parser.add_argument(
        "--options",
        action="store_true",
        help="kill and resume a grid of one setup per option beyond the paper "
        "(dropout, batch norm, augmentations, ...) instead of the paper's",
    )
    parser.add_argument(
        "--scenarios",
        action="store_true",
        help="then: a SIGSTOPped worker, two drivers that are both PID 1, unreadable checkpoints",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pairs-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    reference, chaos = folder / "reference.db", folder / "chaos.db"
    grids = [[*OPTIONS_GRID, *flags] for flags in OPTION_FLAGS] if args.options else [GRID]
    for db in (reference, chaos):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        for grid in grids:
            done = pairs("queue", *grid, "--db", str(db))
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                return 1
    epochs = int(grids[0][grids[0].index("--epochs") + 1])
    n_runs = read(chaos, "SELECT count(*) FROM runs")[0][0]
    total_rows = epoch_count_expected = n_runs * epochs

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
                (
                    kill_driver
                    and kill_worker
                    and killed_here == 0
                    and first_row_at is not None
                    and now - first_row_at >= delay / 2
                )
                or (not kill_driver and new_rows > rows_at_worker_kill and now - (last_worker_kill or 0.0) >= 3.0)
            )
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
            if new_rows > budget or (
                not grace
                and (
                    (mode == "startup" and now - t0 >= delay)
                    or (mode == "epoch" and new_rows >= 1)
                    or (mode == "timed" and first_row_at is not None and now - first_row_at >= delay)
                )
            ):
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
                modes[mode] = modes.get(mode, 0) + 1
                break
        proc.wait()
        log.close()
        rows1 = epoch_count(chaos)
        how = f"killed ({mode})" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        print(
            f"life {lives:3d}: {time.monotonic() - t0:5.1f} s, epoch rows {rows0:2d} -> {rows1:2d}, "
            f"{killed_here} worker(s) killed, {how}",
            flush=True,
        )
        if proc.returncode not in (0, -signal.SIGKILL):
            problems.append(f"life {lives}: pairs work exited {proc.returncode} (see {folder}/life-{lives:03d}.log)")
        text = (folder / f"life-{lives:03d}.log").read_text(errors="replace")
        for marker in ("Traceback", "database is locked"):
            if marker in text:
                problems.append(f"life {lives}: {marker!r} in its output")
        problems += [f"after life {lives}: {p}" for p in check_invariants(chaos, epochs)]
        if proc.returncode == 0:
            counts = dict(read(chaos, "SELECT status, count(*) FROM runs GROUP BY status"))
            if counts.get("done", 0) + counts.get("failed", 0) == n_runs:
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
    per_run = read(chaos, "SELECT r.id, count(e.epoch) FROM runs r LEFT JOIN epochs e ON e.run_id = r.id GROUP BY r.id")
    lost_rows = sum(max(0, epochs - n) for _, n in per_run)
    extra_rows = sum(max(0, n - epochs) for _, n in per_run)
    lost = (n_runs - done) + lost_rows
    (ref_epochs, ref_tests), (got_epochs, got_tests) = results(reference), results(chaos)
    n1, eq1, worst1, bad1 = compare(ref_epochs, got_epochs)
    n2, eq2, worst2, bad2 = compare(ref_tests, got_tests)
    compared, equal, worst, bad = n1 + n2, eq1 + eq2, max(worst1, worst2), bad1 + bad2
    identical = not bad
    print(
        f"{lives} lives of pairs work in {chaos_s:.0f} s; driver kills by moment: "
        + ", ".join(f"{k} {v}" for k, v in sorted(modes.items()))
    )
    print(
        f"{done}/{n_runs} runs done, {len(rows)}/{epoch_count_expected} epoch rows, {len(failed)} failed "
        f"{[f[1] for f in failed] if failed else ''}"
    )
    print(
        f"{compared} values compared with the undisturbed run: {equal} bitwise equal, "
        f"largest relative difference {worst:.1e} (tolerance {REL_TOL:g})"
    )
    for line in (problems + bad)[:20]:
        print("  problem:", line)
    verdict = "metrics identical" if identical else f"{len(bad)} metrics differ"
    print(f"{kills} kills (+{worker_kills} worker kills), {lost} lost, {duplicated + extra_rows} duplicated, {verdict}")
    ok = (
        kills >= args.kills
        and worker_kills >= args.worker_kills
        and lost == 0
        and not failed
        and duplicated + extra_rows == 0
        and identical
        and not problems
    )
    if args.scenarios:
        for scenario in (stopped_worker, pid1_twins, unreadable_checkpoints):
            passed, line = scenario(folder)
            print(f"{scenario.__name__.replace('_', ' ')}: {line}", flush=True)
            ok = ok and passed
    if not args.keep:
        print(f"(databases and logs in {folder})")
    return 0 if ok else 1


# -- scenarios (--scenarios) ----------------------------------------------------------------------
SMALL = [
    "--structure",
    "shared",
    "--arch",
    "A1",
    "--kernel",
    "3",
    "--train-pairs",
    "300",
    "--val-pairs",
    "30",
    "--test-pairs",
    "100",
]


def _fresh(folder: Path, name: str, *queue_flags: str) -> Path:
    db = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    done = pairs("queue", *queue_flags, "--db", str(db))
    if done.returncode:
        raise SystemExit(done.stderr)
    return db


def _reference(folder: Path, name: str, *queue_flags: str) -> dict:
    db = _fresh(folder, f"{name}-reference", *queue_flags)
    done = pairs("work", "--no-vectorize", "--db", str(db))
    if done.returncode:
        raise SystemExit(done.stderr)
    return results(db)


def _wait(condition, timeout: float = 300.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _same(reference: tuple[dict, dict], got: tuple[dict, dict]) -> bool:
    return not compare(reference[0], got[0])[3] and not compare(reference[1], got[1])[3]


def stopped_worker(folder: Path) -> tuple[bool, str]:
    """SIGSTOP the only worker mid-run: the driver must kill it and resume the run."""
    flags = [*SMALL, "--reps", "1", "--epochs", "10"]
    reference = _reference(folder, "stopped", *flags)
    db = _fresh(folder, "stopped", *flags)
    with open(folder / "stopped.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tui.cli",
                "work",
                "--workers",
                "1",
                "--no-vectorize",
                "--stall-timeout",
                "5",
                "--db",
                str(db),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        _wait(lambda: epoch_count(db) >= 2)
        victims = worker_pids(proc.pid)
        os.kill(victims[0], signal.SIGSTOP)
        stopped_at = time.monotonic()
        _wait(lambda: not alive(victims[0]) or _zombie(victims[0]))
        detected = time.monotonic() - stopped_at
        proc.wait(timeout=300)
    text = (folder / "stopped.log").read_text(errors="replace")
    same = _same(reference, results(db))
    passed = proc.returncode == 0 and same and "Traceback" not in text
    return passed, (
        f"killed {detected:.1f} s after SIGSTOP (--stall-timeout 5), exit "
        f"{proc.returncode}, metrics {'identical' if same else 'DIFFER'}"
    )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


TWIN = """
import sys
from core import scheduler
from core.api import open_store
if __name__ == "__main__":
    scheduler.STALE_CHECK_EVERY_S = 0.5
    scheduler.HEARTBEAT_EVERY_S = 0.5
    with open_store(sys.argv[1]) as store:
        summary = scheduler.work(store, workers=1, vectorize=False, stale_after_s=3.0)
    print("done", summary.done, "requeued", summary.requeued)
"""


def pid1_twins(folder: Path) -> tuple[bool, str]:
    """Two drivers that are both PID 1 of their own pid namespace on one host; one is killed."""
    namespace = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if subprocess.run([*namespace, "true"], capture_output=True).returncode != 0:
        return True, "skipped (no unprivileged pid namespaces here)"
    db = _fresh(folder, "twins", *SMALL, "--structure", "shared,independent", "--reps", "1", "--epochs", "40")
    script = folder / "twin.py"
    script.write_text(TWIN)
    command = [*namespace, sys.executable, str(script), str(db)]
    first = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    _wait(lambda: epoch_count(db) >= 1)
    second = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    _wait(lambda: len(read(db, "SELECT DISTINCT worker FROM runs WHERE status = 'running'")) == 2)
    holders = sorted(w for (w,) in read(db, "SELECT worker FROM runs WHERE status = 'running'"))
    victim_runs = [r for (r,) in read(db, "SELECT id FROM runs WHERE worker = ?", (holders[0],))]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    _wait(lambda: read(db, "SELECT worker FROM runs WHERE id = ?", (victim_runs[0],))[0][0] not in (holders[0],))
    requeued = time.monotonic() - killed_at
    output, _ = second.communicate(timeout=300)
    done = dict(read(db, "SELECT status, count(*) FROM runs GROUP BY status")).get("done", 0)
    distinct = len(set(holders)) == 2 and all(h.split(":")[1] == "1" for h in holders)
    passed = distinct and second.returncode == 0 and done == 2
    return passed, (
        f"identities {' and '.join(holders)}; the killed one's run requeued "
        f"{requeued:.1f} s later (heartbeat timeout 3 s), {done}/2 done"
    )


def unreadable_checkpoints(folder: Path) -> tuple[bool, str]:
    """Checkpoints replaced by garbage, a cut-short file, a hostile pickle, another epoch."""
    import pickle

    flags = [*SMALL, "--reps", "4", "--epochs", "6"]
    reference = _reference(folder, "checkpoints", *flags)
    db = _fresh(folder, "checkpoints", *flags)
    with open(folder / "checkpoints-1.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "work", "--workers", "4", "--no-vectorize", "--db", str(db)],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        _wait(lambda: read(db, "SELECT count(*) FROM checkpoints")[0][0] >= 1 or proc.poll() is not None)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    good = read(db, "SELECT state FROM checkpoints LIMIT 1")
    if not good:
        return False, "no checkpoint was written before the kill"
    hostile = pickle.dumps(_Hostile())
    bad = [os.urandom(500), good[0][0][:300], hostile, b"PK\x03\x04" + os.urandom(64)]
    conn = sqlite3.connect(str(db), timeout=60)
    with conn:  # every unfinished run gets an unreadable checkpoint (as if saved at epoch 1)
        runs = [r for (r,) in conn.execute("SELECT id FROM runs WHERE status != 'done' ORDER BY id")]
        for run, state in zip(runs, bad * len(runs)):
            if not conn.execute("SELECT 1 FROM checkpoints WHERE run_id = ?", (run,)).fetchone():
                conn.execute(
                    "INSERT INTO epochs (run_id, epoch, train_loss, recorded_at) VALUES (?, 1, 9.0, 0)", (run,)
                )
                conn.execute(
                    "INSERT INTO checkpoints (run_id, epoch, state, saved_at) VALUES (?, 1, ?, 0)", (run, state)
                )
            else:
                conn.execute("UPDATE checkpoints SET state = ? WHERE run_id = ?", (state, run))
    conn.close()
    corrupted = len(runs)
    done = pairs("work", "--no-vectorize", "--db", str(db))
    said = done.stderr.count("checkpoint is unreadable")
    same = _same(reference, results(db))
    passed = (
        done.returncode == 0
        and said == corrupted
        and "Traceback" not in done.stderr
        and same
        and not Path("/tmp/pairs-chaos-hostile").exists()
    )
    return passed, (
        f"{corrupted} checkpoints made unreadable: said {said} time(s), trained again "
        f"from epoch 0, exit {done.returncode}, metrics "
        f"{'identical' if same else 'DIFFER'}"
    )


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pairs-chaos-hostile",))


if __name__ == "__main__":
    sys.exit(main())
