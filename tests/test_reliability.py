"""Crash safety, the fast version of bench/chaos.py: kills at the worst moments lose nothing.

- a killed ``pairs work`` (driver and workers, SIGKILL) restarts and completes: no run lost, no
  epoch row doubled, the numbers of an undisturbed run;
- a worker process killed while it trains: its runs are requeued and the grid completes;
- runs held by a dead driver are queued again when the database is next opened, and runs of a
  frozen driver by the heartbeat timeout while another driver keeps working;
- a kill in the middle of the epoch-row-and-checkpoint transaction: the run resumes from the
  previous complete epoch.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core import scheduler
from core.api import open_store, queue, work
from core.execution import Epoch, Event, Lost, Started
from tests.conftest import tiny

ROOT = Path(__file__).resolve().parents[1]
#: Two configurations x 2 repetitions x 4 epochs, as `pairs queue` flags and as RunConfigs.
FLAGS = [
    "--structure",
    "shared,independent",
    "--arch",
    "A1",
    "--kernel",
    "3",
    "--reps",
    "2",
    "--epochs",
    "4",
    "--train-pairs",
    "100",
    "--val-pairs",
    "10",
    "--test-pairs",
    "100",
]
GRID = [tiny(structure=s, epochs=4) for s in ("shared", "independent")]
REPS, EPOCHS = 2, 4
FIELDS = ("train_loss", "train_main_loss", "train_acc", "val_loss", "val_main_loss", "val_acc", "val_digit_acc", "lr")


# -- helpers ----------------------------------------------------------------------------------
def _read(db: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(str(db), timeout=60)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _epoch_count(db: Path) -> int:
    return _read(db, "SELECT count(*) FROM epochs")[0][0]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _workers(pid: int) -> list[int]:
    """The multiprocessing training processes started by ``pid``: its spawned children, or the
    children of its fork server (the local executor's workers are forked from it)."""
    pids = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.append(child)
        elif b"multiprocessing.forkserver" in cmdline:
            pids.extend(_children(child))
    return pids


def _wait_for(condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _invariants(db: Path) -> list[str]:
    """After any kill: an unfinished run's checkpoint is at its last epoch row; rows contiguous."""
    problems = []
    for run, status, count, last, checkpoint in _read(
        db,
        "SELECT r.id, r.status, count(e.epoch), max(e.epoch), "
        "(SELECT k.epoch FROM checkpoints k WHERE k.run_id = r.id) "
        "FROM runs r LEFT JOIN epochs e ON e.run_id = r.id GROUP BY r.id",
    ):
        if count != (last or 0):
            problems.append(f"{run}: {count} rows up to epoch {last}")
        if status != "done" and (checkpoint or 0) != (last or 0):
            problems.append(f"{run}: checkpoint at {checkpoint}, last row {last}")
    return problems


def _results(db: Path) -> dict:
    columns = ", ".join(f"e.{f}" for f in FIELDS)
    rows = _read(db, f"SELECT r.config_id, r.rep, e.epoch, {columns} FROM epochs e JOIN runs r ON r.id = e.run_id")
    tests = _read(db, "SELECT config_id, rep, 'test', test_loss, test_acc FROM runs")
    return {tuple(r[:3]): r[3:] for r in rows + tests}


def _assert_complete(db: Path, runs: int, epochs: int) -> None:
    counts = dict(_read(db, "SELECT status, count(*) FROM runs GROUP BY status"))
    assert counts == {"done": runs}, counts
    per_run = _read(db, "SELECT run_id, count(*), max(epoch) FROM epochs GROUP BY run_id")
    assert len(per_run) == runs and all(n == epochs == last for _, n, last in per_run), per_run
    assert _read(db, "SELECT count(*) FROM checkpoints") == [(0,)]


def _assert_same(got: dict, expected: dict, rel: float = 1e-5) -> None:
    """Equal to an undisturbed run: bitwise when the runs trained alike, else to float32 rounding
    (a resumed vectorised group may be batched with other repetitions than before)."""
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        for a, b in zip(values, got[key]):
            assert (a is None and b is None) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-9), (key, values, got[key])


def _pairs_work(db: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "work", *flags, "--db", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The grid trained undisturbed, as `pairs work --workers 2` trains it."""
    path = tmp_path_factory.mktemp("reference") / "reference.db"
    with open_store(path) as s:
        queue(s, GRID, REPS)
        summary = work(s, workers=2)
    assert (summary.done, summary.failed) == (4, 0)
    return _results(path)


# -- the tests ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_work_restarts_and_completes_with_the_same_numbers(tmp_path, reference):
    db = tmp_path / "chaos.db"
    with open_store(db) as s:
        queue(s, GRID, REPS)
    # Kill 1: right after the first epoch rows are committed (the driver is writing the next
    # epoch row + checkpoint). Kill 2: three epoch rows later. Then run to the end.
    for kill in range(2):
        rows_before = _epoch_count(db)
        proc = _pairs_work(db, "--workers", "2")
        more = 1 + 2 * kill  # the second kill comes a little later in training
        _wait_for(lambda b=rows_before + more, p=proc: _epoch_count(db) >= b or p.poll() is not None, what="epoch rows")
        assert proc.poll() is None, proc.stdout.read()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert not _invariants(db), _invariants(db)
        with open_store(db) as s:  # the dead driver's runs are queued again on open
            assert s.status_counts()["running"] == 0
    final = _pairs_work(db, "--workers", "2")
    output, _ = final.communicate(timeout=300)
    assert final.returncode == 0 and "Traceback" not in output, output
    _assert_complete(db, 4, EPOCHS)
    _assert_same(_results(db), reference)


@pytest.mark.slow
def test_a_killed_worker_is_requeued_and_the_grid_completes(tmp_path, reference):
    db = tmp_path / "worker.db"
    killed: list[int] = []
    events: list[Event] = []

    def on_event(event):
        events.append(event)
        if isinstance(event, Epoch) and not killed:
            victims = _workers(os.getpid())
            assert victims, "no worker process found"
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])

    with open_store(db) as s:
        queue(s, GRID, REPS)
        summary = work(s, workers=2, on_event=on_event)
        assert (summary.done, summary.failed) == (4, 0)
    assert any(isinstance(e, Lost) for e in events)
    _assert_complete(db, 4, EPOCHS)
    _assert_same(_results(db), reference)


@pytest.mark.slow
def test_runs_of_a_dead_driver_are_queued_again_when_the_database_is_opened(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    queue(store, [tiny()], 2)
    (mine,) = store.claim(f"{socket.gethostname()}:{dead.pid}", limit=1)  # a dead driver here
    (theirs,) = store.claim("elsewhere:1", limit=1)  # a driver on another host: left alone
    with open_store(store.path, create=False) as again:
        rows = {r["id"]: (r["status"], r["worker"]) for r in again.run_rows()}
    assert rows[mine.id] == ("queued", None)
    assert rows[theirs.id] == ("running", "elsewhere:1")
    summary = work(store, workers=1)  # "elsewhere" is requeued only after the heartbeat timeout
    assert (summary.done, summary.requeued) == (1, 0)


def _freeze(pid: int, db: Path) -> None:
    """SIGSTOP a process group, at a moment when it does not hold the database's write lock."""
    for _ in range(100):
        os.killpg(pid, signal.SIGSTOP)
        conn = sqlite3.connect(str(db), timeout=0.2)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.killpg(pid, signal.SIGCONT)  # frozen inside a write: let it finish, try again
            time.sleep(0.05)
        finally:
            conn.close()
    raise AssertionError("the driver always held the write lock")


@pytest.mark.slow
def test_a_frozen_driver_is_requeued_by_the_heartbeat_timeout_while_another_works(tmp_path, monkeypatch):
    frozen_config = tiny(structure="shared", epochs=3)
    other = tiny(structure="independent", epochs=4)
    db = tmp_path / "frozen.db"
    with open_store(db) as s:
        queue(s, [frozen_config], 1)
    driver = _pairs_work(db, "--workers", "1", "--no-vectorize")
    try:
        _wait_for(lambda: _epoch_count(db) >= 1 or driver.poll() is not None, what="epoch 1")
        _freeze(driver.pid, db)  # alive (its pid exists, so only its silence gives it away)
        with open_store(db) as s:
            (held,) = s.run_rows(status="running")
            queue(s, [other], 1)
            monkeypatch.setattr(scheduler, "STALE_CHECK_EVERY_S", 0.0)
            seen_queued_while_working = []

            def on_event(event):
                if isinstance(event, Started) and event.run_id != held["id"]:
                    # The frozen driver's last heartbeat, as it will look an hour later.
                    s.db.execute("UPDATE runs SET heartbeat_at = heartbeat_at - 3600 WHERE id = ?", [held["id"]])
                if isinstance(event, Epoch) and event.run_id != held["id"]:
                    seen_queued_while_working.append(s.db["runs"].get(held["id"])["status"])

            summary = scheduler.work(s, workers=1, vectorize=False, on_event=on_event)
            assert summary.requeued == 1 and (summary.done, summary.failed) == (2, 0)
            assert "queued" in seen_queued_while_working  # requeued while the other run trained
            assert s.db["runs"].get(held["id"])["worker"] != held["worker"]
    finally:
        os.killpg(driver.pid, signal.SIGCONT)
    # The frozen driver wakes up: its writes for the run it lost are refused; it exits cleanly.
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0 and "Traceback" not in output, output
    per_run = dict(_read(db, "SELECT run_id, count(*) FROM epochs GROUP BY run_id"))
    assert sorted(per_run.values()) == [3, 4]
    assert dict(_read(db, "SELECT status, count(*) FROM runs GROUP BY status")) == {"done": 2}


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from core.store._sqlite_utils import sqlite_utils
    from core.api import open_store, work

    db, marker = sys.argv[1], Path(sys.argv[2])
    upsert = sqlite_utils.db.Table.upsert

    def slow_upsert(self, record, **kwargs):
        if self.name == "checkpoints" and record["epoch"] == 2:
            marker.write_text("in the transaction")  # the epoch-2 row is written, not committed
            time.sleep(600)
        return upsert(self, record, **kwargs)

    sqlite_utils.db.Table.upsert = slow_upsert
    with open_store(db) as s:
        work(s, workers=1, vectorize=False)
""")


@pytest.mark.slow
def test_a_kill_during_the_checkpoint_write_resumes_from_the_previous_epoch(tmp_path):
    config = tiny(epochs=3)
    reference_db, db = tmp_path / "reference.db", tmp_path / "killed.db"
    for path in (reference_db, db):
        with open_store(path) as s:
            queue(s, [config], 1)
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(marker)], cwd=ROOT, start_new_session=True)
    try:
        _wait_for(lambda: marker.exists() or child.poll() is not None, what="the epoch-2 write")
        assert child.poll() is None
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    # Epoch 2's row was inside the killed transaction: neither it nor its checkpoint exists.
    assert _read(db, "SELECT epoch FROM epochs") == [(1,)]
    assert _read(db, "SELECT epoch FROM checkpoints") == [(1,)]
    with open_store(db) as s:
        (run,) = s.run_rows()
        assert run["status"] == "queued"  # its driver is gone
        (claim,) = s.claim("probe:1")
        assert claim.checkpoint is not None
        s.release_run(claim.id, "probe:1")
        assert work(s, workers=1, vectorize=False).done == 1
    with open_store(reference_db) as s:
        assert work(s, workers=1, vectorize=False).done == 1
    _assert_complete(db, 1, 3)
    assert _results(db) == _results(reference_db)  # one run alone, resumed: bitwise equal


# -- bad data and diverging training --------------------------------------------------------------
def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    import struct

    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _mnist(folder: Path, train_images: bytes, train_labels: bytes, test_images: bytes, test_labels: bytes) -> Path:
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, blob in zip(MNIST_NAMES, (train_images, train_labels, test_images, test_labels)):
        (raw / name).write_bytes(blob)
    return folder


def test_corrupt_mnist_files_are_a_one_line_error(tmp_path, fresh_db):
    from core.data import DataError, load_mnist_pools
    from tests.test_bad_input_props import call

    garbage = _mnist(tmp_path / "garbage", *(b"garbage" * 50,) * 4)
    before = fresh_db.read_bytes()
    code, _, err = call(
        ["run", "--data", "mnist", "--data-dir", str(garbage), "--arch", "A1", "--db", str(fresh_db)], tmp_path
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "are unreadable" in lines[0], err
    assert "--data sample" in lines[0] and fresh_db.read_bytes() == before

    def images(n: int) -> bytes:
        return _idx(2051, (n, 28, 28), bytes(n * 28 * 28))

    def labels(n: int, first: int = 0) -> bytes:
        return _idx(2049, (n,), bytes([first]) + bytes(n - 1))

    cases = {
        "cut short": ((images(60000)[:100_000], labels(60000), images(10000), labels(10000)), "unreadable"),
        "too few": ((images(100), labels(100), images(10), labels(10)), "incomplete"),
        "labels do not match": ((images(60000), labels(59000), images(10000), labels(10000)), "incomplete"),
        "not a digit": ((images(60000), labels(60000, first=200), images(10000), labels(10000)), "digits are 0-9"),
    }
    for name, (blobs, message) in cases.items():
        folder = _mnist(tmp_path / name.replace(" ", "-"), *blobs)
        with pytest.raises(DataError, match=message) as caught:
            load_mnist_pools(str(folder))
        assert "\n" not in str(caught.value) and "--data sample" in str(caught.value)


@pytest.mark.slow
def test_a_diverging_run_fails_with_its_reason_the_grid_goes_on_and_retry_requeues_it(tmp_path, fresh_db):
    from tests.test_bad_input_props import call

    flags = [
        "--arch",
        "A1",
        "--kernel",
        "3",
        "--epochs",
        "2",
        "--reps",
        "1",
        "--train-pairs",
        "100",
        "--val-pairs",
        "10",
        "--test-pairs",
        "100",
        "--db",
        str(fresh_db),
    ]
    assert call(["queue", "--lr", "1e6", *flags], tmp_path)[0] == 0
    assert call(["queue", "--lr", "0.01", *flags], tmp_path)[0] == 0
    code, out, err = call(["work", "--workers", "1", "--db", str(fresh_db)], tmp_path)
    assert code == 1 and "1 run(s) done, 1 failed" in out, (out, err)
    assert "pairs retry" in err and "Traceback" not in err
    code, out, _ = call(["status", "--db", str(fresh_db)], tmp_path)
    assert "failed: 1" in out and "done: 1" in out
    assert "TrainingDiverged" in out and "lower --lr" in out
    code, out, _ = call(["retry", "--db", str(fresh_db)], tmp_path)
    assert code == 0 and "re-queued 1 failed run(s)" in out
    with open_store(fresh_db, create=False) as s:
        assert s.status_counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0}
        (run,) = s.run_rows(status="queued")
        assert run["error"] is None


# -- concurrency -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_three_drivers_and_a_polling_reader_share_one_database(tmp_path):
    """The fast version of bench/concurrency.py: the grid is run to its end."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("concurrency", ROOT / "bench" / "concurrency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    stats = bench.run(tmp_path / "shared.db", seconds=240, configs=3, queue_every=2.0, queue_at_most=1)
    assert stats["problems"] == [], stats["problems"]
    assert all(code == 0 for code in stats["exit_codes"]), stats
    assert stats["reads"] > 0 and not stats["errors"]
    counts = stats["counts"]
    assert counts.get("running", 0) == 0 and counts.get("failed", 0) == 0
    assert 6 <= counts["done"] <= 8 and counts["done"] == stats["done_reported"]
    assert stats["epoch_rows"] == stats["distinct_rows"] == 3 * counts["done"]


@pytest.mark.slow
def test_a_run_whose_worker_keeps_dying_fails_after_max_attempts(tmp_path):
    """Only its losses count: the run fails with the reason, the rest of the grid goes on."""
    db = tmp_path / "poison.db"
    victim = None
    events = []

    def on_event(event):
        nonlocal victim
        events.append(event)
        if isinstance(event, Started) and victim is None:
            victim = event.run_id
        if isinstance(event, Epoch) and event.run_id == victim:
            for pid in _workers(os.getpid()):
                os.kill(pid, signal.SIGKILL)

    with open_store(db) as s:
        queue(s, [tiny(epochs=3), tiny(epochs=3, structure="independent")], 1)
        summary = scheduler.work(s, workers=1, vectorize=False, max_attempts=2, on_event=on_event)
        assert (summary.done, summary.failed) == (1, 1)
        failed = s.db["runs"].get(victim)
        assert failed["status"] == "failed" and failed["error"] == "its worker process died 2 times"
    assert [e for e in events if isinstance(e, Lost)] == [Lost(victim)] * 2
