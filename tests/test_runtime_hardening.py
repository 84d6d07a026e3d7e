"""Runtime hardening (issues 15 and 16): driver identities, hung workers, unreadable checkpoints,
drivers that follow runs held by another, and Ctrl-C at any moment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.api import open_store, queue
from core.execution import Event, Followed, Following, Restarted
from core.store import _pid_alive, worker_host, worker_id
from tests.conftest import tiny
from tests.test_reliability import _read, _wait_for

ROOT = Path(__file__).resolve().parents[1]


# -- 16.6: a driver's identity is unique ----------------------------------------------------------
def test_the_identity_names_host_pid_and_the_very_process():
    me = worker_id()
    host, pid, tag = me.split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert worker_host(me) == host and worker_id() == me
    assert _pid_alive(me)
    scope, _, start = tag.partition("-")
    if start:  # a /proc of this pid namespace: the same pid with another start time is not us
        assert not _pid_alive(f"{host}:{pid}:{scope}-{int(start) + 1}")
        assert _pid_alive(f"{host}:{pid}:00000000-{start}")  # another namespace: unknowable


@pytest.mark.slow
def test_a_child_process_has_another_identity():
    code = "from core.store import worker_id; print(worker_id())"
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    other = child.stdout.strip()
    assert other != worker_id() and worker_host(other) == socket.gethostname()
    assert not _pid_alive(other)  # exited: its runs are requeued when a database is opened


def test_runs_of_a_driver_with_our_host_and_pid_are_requeued_after_the_heartbeat_timeout(store):
    """A driver that was PID 1 of another container with our host name (or an older pairs whose
    identity was host:pid): same host and pid as ours, yet not us."""
    queue(store, [tiny()], 3)
    host, pid = socket.gethostname(), os.getpid()
    twins = [f"{host}:{pid}", f"{host}:{pid}:0badc0de-12345"]  # old form; other namespace
    claimed = [store.claim(twin, limit=1)[0].id for twin in twins]
    (mine,) = store.claim(worker_id(), limit=1)
    assert store.requeue_stale(60.0) == []  # heartbeats are fresh: maybe alive
    store.db.execute("UPDATE runs SET heartbeat_at = heartbeat_at - 120")
    store.db.conn.commit()
    assert sorted(store.requeue_stale(60.0)) == sorted(claimed)  # never ours, whatever its beat
    statuses = {r["id"]: r["status"] for r in store.run_rows()}
    assert statuses[mine.id] == "running"
    assert all(statuses[run] == "queued" for run in claimed)


def test_a_reused_pid_does_not_keep_a_dead_drivers_runs(store):
    """A dead driver of this namespace whose pid now belongs to another process (here: ours)."""
    me = worker_id()
    host, pid, tag = me.split(":")
    scope, _, start = tag.partition("-")
    if not start:
        pytest.skip("no /proc of this pid namespace: identities are random tokens")
    queue(store, [tiny()], 1)
    (run,) = store.claim(f"{host}:{pid}:{scope}-{int(start) - 1}", limit=1)
    with open_store(store.path, create=False) as again:  # opening requeues a dead driver's runs
        assert {r["id"]: r["status"] for r in again.run_rows()}[run.id] == "queued"


DRIVER = textwrap.dedent("""
    import sys
    from core import scheduler
    from core.api import open_store
    if __name__ == "__main__":
        scheduler.STALE_CHECK_EVERY_S = 0.5
        scheduler.HEARTBEAT_EVERY_S = 0.5
        with open_store(sys.argv[1]) as store:
            summary = scheduler.work(store, workers=1, vectorize=False, stale_after_s=3.0)
        print("done", summary.done, "requeued", summary.requeued)
""")


def _in_pid_namespace(*command: str) -> list[str]:
    return ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child", *command]


def _namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(_in_pid_namespace("true"), capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces_work(), reason="no unprivileged pid namespaces here")
def test_two_drivers_that_are_both_pid_1_of_their_namespace(tmp_path):
    """Both drivers are PID 1 on the same host; the first is killed and the second takes its
    runs over after the heartbeat timeout and completes the grid."""
    db = tmp_path / "twins.db"
    with open_store(db) as s:
        queue(
            s,
            [
                tiny(structure=structure, epochs=120, train_pairs=400, val_pairs=40)
                for structure in ("shared", "independent")
            ],
            1,
        )
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    command = _in_pid_namespace(sys.executable, str(script), str(db))
    first = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        _wait_for(lambda: _read(db, "SELECT count(*) FROM epochs")[0][0] >= 1, what="epoch 1")
        second = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        _wait_for(
            lambda: len(_read(db, "SELECT DISTINCT worker FROM runs WHERE status = 'running'")) == 2,
            what="both drivers hold a run",
        )
        workers = [w for (w,) in _read(db, "SELECT worker FROM runs WHERE worker IS NOT NULL")]
        assert len(set(workers)) == 2 and {w.split(":")[1] for w in workers} == {"1"}, workers
        os.killpg(first.pid, signal.SIGKILL)  # unshare --kill-child takes the driver with it
        first.wait()
        output, _ = second.communicate(timeout=900)  # slow on two busy cores
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert second.returncode == 0, output
    assert "requeued 1" in output, output
    assert _read(db, "SELECT status, count(*) FROM runs GROUP BY status") == [("done", 2)]


# -- 16.7: an unreadable checkpoint ---------------------------------------------------------------
class _Hostile:
    """Unpickling this would run a shell command: torch's weights_only loader refuses it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/pairs-hostile-checkpoint-ran",))


def _bad_checkpoints(config) -> dict[str, bytes]:
    import io
    import pickle

    import torch

    from core.models import build_model
    from core.train import make_optimizer, save_checkpoint

    good = build_model(config)
    other = build_model(config.replace(arch="A2"))  # another model's weights
    buffer = io.BytesIO()
    torch.save({"epoch": "one", "model": good.state_dict(), "optimizer": {}}, buffer)
    return {
        "garbage": os.urandom(300),
        "truncated": save_checkpoint(good, make_optimizer(config, good), 1)[:200],
        "hostile pickle": pickle.dumps(_Hostile()),
        "other model": save_checkpoint(other, make_optimizer(config, other), 1),
        "epoch beyond the run": save_checkpoint(good, make_optimizer(config, good), 99),
        "epoch not a number": buffer.getvalue(),
    }


def _plant_checkpoint(store, run_id: str, state: bytes) -> None:
    """As if epoch 1 had been saved with ``state`` and the driver then died."""
    row = {
        "epoch": 1,
        "train_loss": 9.0,
        "train_main_loss": 9.0,
        "train_acc": 0.0,
        "val_loss": 9.0,
        "val_main_loss": 9.0,
        "val_acc": 0.0,
        "val_digit_acc": None,
        "lr": 0.01,
        "seconds": 0.1,
    }
    with store.transaction() as db:
        db["epochs"].insert({"run_id": run_id, **row, "recorded_at": time.time()})
        db["checkpoints"].insert({"run_id": run_id, "epoch": 1, "state": state, "saved_at": time.time()})


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.slow
def test_an_unreadable_checkpoint_is_said_once_and_the_run_trains_again_from_epoch_0(tmp_path, vectorize):
    from core.scheduler import work

    config = tiny(epochs=2)
    bad = _bad_checkpoints(config)
    reps = len(bad) + 1  # the last repetition has no checkpoint
    reference = tmp_path / "reference.db"
    with open_store(reference) as s:
        queue(s, [config], reps)
        assert work(s, workers=1, vectorize=vectorize).done == reps
    db = tmp_path / "planted.db"
    with open_store(db) as s:
        queue(s, [config], reps)
        victims = {}
        for row, (name, state) in zip(s.run_rows(), bad.items()):
            _plant_checkpoint(s, row["id"], state)
            victims[row["id"]] = name
        events: list[Event] = []
        summary = work(s, workers=1, vectorize=vectorize, on_event=events.append)
    assert (summary.done, summary.failed) == (reps, 0), summary
    said = {e.run_id: e for e in events if isinstance(e, Restarted)}
    assert sorted(said) == sorted(victims) and len(said) == sum(isinstance(e, Restarted) for e in events)
    for run, event in said.items():
        assert "checkpoint is unreadable" in event.reason and "\n" not in event.reason, (victims[run], event)
        assert event.epochs_lost == 1  # the planted epoch row is gone: trained again
    columns = "run_id, epoch, train_loss, train_acc, val_loss, val_acc, lr"
    assert _read(db, f"SELECT {columns} FROM epochs ORDER BY 1, 2") == _read(
        reference, f"SELECT {columns} FROM epochs ORDER BY 1, 2"
    )
    assert not Path("/tmp/pairs-hostile-checkpoint-ran").exists()


@pytest.mark.slow
def test_pairs_work_says_once_that_a_checkpoint_is_unreadable(tmp_path):
    db = tmp_path / "bad.db"
    config = tiny(epochs=2)
    with open_store(db) as s:
        queue(s, [config], 1)
        _plant_checkpoint(s, s.run_rows()[0]["id"], b"\x80\x04not a checkpoint")
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "work", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("checkpoint is unreadable") == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "1 run(s) done, 0 failed" in done.stdout


# -- 16.5: a hung worker --------------------------------------------------------------------------
@pytest.mark.slow
def test_a_stopped_worker_is_killed_and_its_run_resumes_to_the_undisturbed_numbers(tmp_path):
    from core.scheduler import work
    from tests.test_reliability import _results, _workers

    config = tiny(epochs=8, train_pairs=300, val_pairs=30)
    reference = tmp_path / "reference.db"
    with open_store(reference) as s:
        queue(s, [config], 1)
        assert work(s, workers=1, vectorize=False).done == 1
    db = tmp_path / "stopped.db"
    with open_store(db) as s:
        queue(s, [config], 1)
    driver = subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    stopped = []
    try:
        _wait_for(lambda: _read(db, "SELECT count(*) FROM epochs")[0][0] >= 2, what="epoch 2")
        stopped = _workers(driver.pid)
        assert len(stopped) == 1
        os.kill(stopped[0], signal.SIGSTOP)  # alive, heartbeating driver, no progress
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert driver.returncode == 0, output
    assert "made no progress for" in output and "1 run(s) done, 0 failed" in output, output
    assert "Traceback" not in output
    assert _results(db) == _results(reference)


def _gone(pid: int) -> bool:
    """Exited (a zombie no parent has reaped yet counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.mark.slow
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_the_workers_of_a_killed_driver_exit_and_so_do_its_helpers(tmp_path, method):
    """Only the driver is killed: its workers (forked from the fork server, which outlives the
    driver while they live) see it gone and exit; then the server and resource tracker end."""
    from tests.test_reliability import _children, _workers

    db = tmp_path / "orphans.db"
    with open_store(db) as s:
        queue(s, [tiny(epochs=200, train_pairs=300, val_pairs=30)], 2)
    driver = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "work", "--workers", "2", "--db", str(db)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PAIRS_START_METHOD": method},
    )
    try:
        _wait_for(lambda: _read(db, "SELECT count(*) FROM epochs")[0][0] >= 1, what="epoch 1")
        workers = _workers(driver.pid)
        helpers = _children(driver.pid)  # the fork server (if any), the resource tracker
        assert workers and len(workers) <= 2, (workers, helpers)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        _wait_for(
            lambda: all(_gone(pid) for pid in workers + helpers), timeout=60, what="the killed driver's workers to exit"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)


def test_the_stall_limit_grows_with_the_longest_pause_and_is_longer_before_the_first_batch():
    from core.executors import STALL_FACTOR, STARTUP_FACTOR, LocalExecutor

    pool = LocalExecutor.__new__(LocalExecutor)  # the arithmetic only: no worker processes
    pool.stall_timeout_s, pool.longest_gap, pool.longest_start = 60.0, 0.5, 2.0
    assert pool.stall_limit(started=True) == 60.0
    assert pool.stall_limit(started=False) == STARTUP_FACTOR * 60.0
    pool.longest_gap = 30.0  # a configuration whose batches take long: never taken for hung
    assert pool.stall_limit(started=True) == STALL_FACTOR * 30.0


def test_stall_timeout_is_checked():
    from core.api import work
    from core.config import ConfigError

    for bad in (0, -1, 1e9, True, "5"):
        with pytest.raises(ConfigError, match="--stall-timeout"):
            work(None, stall_timeout_s=bad)


# -- 15: a second driver follows the runs another one holds ---------------------------------------
def _follow_in_thread(path, config, **kwargs):
    """``work(follow=True)`` on its own connection in a thread; returns (thread, result dict)."""
    import threading

    from core.scheduler import work

    result: dict = {"events": []}

    def target():
        with open_store(path) as s:
            result["summary"] = work(
                s, workers=1, config_ids=[config.id], follow=True, on_event=result["events"].append, **kwargs
            )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def _epoch_row(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "train_loss": 0.5,
        "train_main_loss": 0.5,
        "train_acc": 0.5,
        "val_loss": 0.5,
        "val_main_loss": 0.5,
        "val_acc": 0.5,
        "val_digit_acc": None,
        "lr": 0.01,
        "seconds": 0.1,
    }


@pytest.mark.parametrize("ending", ["done", "failed"])
def test_runs_held_by_another_driver_are_followed_to_their_end(fresh_db, ending):
    config = tiny()
    other = "elsewhere:7:abc-1"  # a live driver on another machine
    with open_store(fresh_db) as s:
        queue(s, [config], 1)
        (run,) = s.claim(other, limit=1)
        thread, result = _follow_in_thread(fresh_db, config)
        _wait_for(lambda: any(isinstance(e, Following) for e in result["events"]), what="following")
        for epoch in (1, 2):
            s.record_epoch(run.id, other, _epoch_row(epoch), b"state")
            s.heartbeat(other, [run.id])
        assert thread.is_alive()  # not done: it waits for the holder
        if ending == "done":
            s.finish_run(run.id, other, {"test_loss": 0.5, "test_main_loss": 0.5, "test_acc": 0.5})
        else:
            s.fail_run(run.id, other, "TrainingDiverged: training loss became nan")
        thread.join(60)
    assert not thread.is_alive()
    summary, events = result["summary"], result["events"]
    assert [e for e in events if isinstance(e, Followed)] == [
        Followed(run.id, "epoch", 1),
        Followed(run.id, "epoch", 2),
        Followed(run.id, ending, other if ending == "done" else "TrainingDiverged: training loss became nan"),
    ]
    assert summary.done == 0 and not summary.interrupted
    assert (summary.followed, summary.failed) == ((1, 0) if ending == "done" else (0, 1))


@pytest.mark.slow
def test_a_followed_run_whose_driver_died_is_trained_here(fresh_db, monkeypatch):
    from core import scheduler

    monkeypatch.setattr(scheduler, "STALE_CHECK_EVERY_S", 0.2)
    config = tiny()
    with open_store(fresh_db) as s:
        queue(s, [config], 1)
        s.claim("elsewhere:7:abc-1", limit=1)  # and then that machine went away
        thread, result = _follow_in_thread(fresh_db, config, stale_after_s=1.0)
        thread.join(120)
    summary = result["summary"]
    assert (summary.done, summary.followed, summary.requeued) == (1, 0, 1)
    assert _read(fresh_db, "SELECT status, worker FROM runs") == [("done", worker_id())]


def test_a_stop_while_following_leaves_the_runs_to_their_holder(fresh_db):
    from core.scheduler import StopRequest

    config = tiny()
    stop = StopRequest()
    with open_store(fresh_db) as s:
        queue(s, [config], 2)
        s.claim("elsewhere:7:abc-1", limit=2)
        thread, result = _follow_in_thread(fresh_db, config, stop=stop)
        _wait_for(lambda: any(isinstance(e, Following) for e in result["events"]), what="following")
        stop()
        thread.join(60)
    summary = result["summary"]
    assert summary.interrupted and summary.left == 2 and summary.done == 0
    assert _read(fresh_db, "SELECT DISTINCT status, worker FROM runs") == [("running", "elsewhere:7:abc-1")]


def test_pairs_work_does_not_follow(fresh_db):
    from core.scheduler import work

    config = tiny()
    with open_store(fresh_db) as s:
        queue(s, [config], 1)
        s.claim("elsewhere:7:abc-1", limit=1)
        summary = work(s, workers=1)  # the queue is empty for it: it leaves at once
    assert (summary.done, summary.followed, summary.interrupted) == (0, 0, False)


@pytest.mark.slow
def test_a_second_pairs_run_follows_the_first_and_prints_its_numbers(tmp_path):
    db = tmp_path / "two.db"
    flags = [
        "run",
        "--structure",
        "shared",
        "--arch",
        "A1",
        "--kernel",
        "3",
        "--reps",
        "2",
        "--epochs",
        "100",  # long enough to outlast the second pairs run's start-up
        "--train-pairs",
        "300",
        "--val-pairs",
        "30",
        "--test-pairs",
        "100",
        "--workers",
        "2",
        "--db",
        str(db),
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:

        def both_held() -> bool:
            try:
                return _read(db, "SELECT count(*) FROM runs WHERE status = 'running'") == [(2,)]
            except sqlite3.OperationalError:  # not created yet
                return False

        _wait_for(both_held, what="both runs held by the first pairs run")
        second = subprocess.run(
            [sys.executable, "-m", "tui.cli", *flags], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        first_output, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_output
    assert second.returncode == 0, second.stderr
    assert "held by another pairs" in second.stderr and "following them" in second.stderr
    assert "shared A1 k3: 2 run(s) done; validation accuracy" in second.stdout, second.stdout
    assert "- %" not in second.stdout


@pytest.mark.slow
def test_pairs_run_says_when_every_run_failed_and_why(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "run",
            "--structure",
            "shared",
            "--arch",
            "A1",
            "--kernel",
            "3",
            "--reps",
            "2",
            "--epochs",
            "2",
            "--train-pairs",
            "100",
            "--val-pairs",
            "10",
            "--test-pairs",
            "100",
            "--lr",
            "1e6",
            "--workers",
            "1",
            "--db",
            str(tmp_path / "f.db"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "shared A1 k3: all 2 run(s) failed: TrainingDiverged: training loss became" in done.stdout, done.stdout
    assert "validation accuracy" not in done.stdout


# -- 16.12: two SIGINTs in quick succession, at any moment of start-up -------------------------------
RUN = [
    "run",
    "--structure",
    "shared",
    "--arch",
    "A1",
    "--kernel",
    "3",
    "--reps",
    "2",
    "--epochs",
    "20",
    "--train-pairs",
    "300",
    "--val-pairs",
    "30",
    "--test-pairs",
    "100",
    "--workers",
    "2",
]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8, 1.5, 3.0, 5.0])
@pytest.mark.parametrize("to_group", [False, True])
def test_two_sigints_during_start_up_exit_130_and_lose_nothing(tmp_path, delay, to_group):
    db = tmp_path / "int.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *RUN, "--db", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(delay)
    for _ in range(2):  # to the group: what a terminal's Ctrl-C does (workers too)
        if to_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in err + out and "terminate called" not in err, err
    if proc.returncode == 0:  # the signals came after it had trained everything (a fast machine)
        assert {s for (s,) in _read(db, "SELECT status FROM runs")} == {"done"}, err
    else:
        assert proc.returncode == 130, (proc.returncode, err)
        assert "interrupted" in err
    if db.exists() and _read(db, "SELECT count(*) FROM sqlite_master WHERE name = 'runs'")[0][0]:
        statuses = {s for (s,) in _read(db, "SELECT status FROM runs")}
        assert statuses <= {"queued", "done"}, statuses  # nothing left running, nothing failed
        rows = _read(db, "SELECT run_id, count(*), max(epoch) FROM epochs GROUP BY run_id")
        assert all(n == last for _, n, last in rows), rows
        checkpoints = dict(_read(db, "SELECT run_id, epoch FROM checkpoints"))
        assert all(
            checkpoints.get(run) == last
            for run, _, last in rows
            if (run, "queued") in set(_read(db, "SELECT id, status FROM runs"))
        ), rows
    # and the same command then trains everything
    again = subprocess.run(
        [sys.executable, "-m", "tui.cli", *RUN, "--db", str(db)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert "2 run(s) done" in again.stdout


def test_a_second_stop_request_is_hard_and_never_raises():
    from core.scheduler import StopRequest

    stop = StopRequest()
    stop()
    assert stop.is_set() and not stop.hard
    stop()  # a signal handler that raised here could land inside torch's C++ code
    assert stop.hard


@pytest.mark.slow
def test_pairs_work_says_which_runs_another_driver_holds(fresh_db):
    with open_store(fresh_db) as s:
        queue(s, [tiny()], 1)
        s.claim("elsewhere:7:abc-1", limit=1)
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "work", "--db", str(fresh_db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "0 run(s) done, 0 failed" in done.stdout
    assert "1 run(s) are held by another pairs" in done.stdout


@pytest.mark.parametrize("early", [False, True])
def test_a_finished_command_ignores_signals_so_the_interpreters_exit_cannot_die_of_one(monkeypatch, early):
    """CPython's finalisation puts SIG_DFL back in place of a Python signal handler (SIG_IGN
    stays): a second Ctrl-C while a finished ``pairs`` exits would kill it with -2 instead of 130."""
    import tui.cli as cli

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sys, "argv", ["pairs", "--version"])
    if early:  # a Ctrl-C noted while the program started: it exits before the command runs
        monkeypatch.setattr(cli, "_EARLY_SIGNALS", [signal.SIGINT])
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main()
        handlers = {signal.getsignal(sig) for sig in saved}
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert exited.value.code == (130 if early else 0)
    assert handlers == {signal.SIG_IGN}
