"""The Ray executor on a local Ray instance (num_cpus=2), started once for the module.

Skipped without Ray (``pip install -e '.[ray]'``), except the check of the one-line error.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from core.api import open_store, queue, work
from core.config import ConfigError
from core.execution import Done, Epoch, Host, Lost, Started
from tests.conftest import tiny

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is an optional extra: pip install -e '.[ray]'"
)

GRID = [tiny(structure=s) for s in ("independent", "shared", "shared-aux")]  # x 2 reps
# Long enough after its first epoch (about 2 s) that a kill lands before the run ends.
SLOW = [tiny(structure="shared", epochs=8, train_pairs=1000)]  # x 2 reps


@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray")
    context = ray.init(
        address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
    )
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture
def two_cores(monkeypatch):
    """Both executors then train with one torch thread per task: identical numbers."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def _local_reference(path, configs, reps):
    with open_store(path) as s:
        queue(s, configs, reps)
        summary = work(s, workers=2, vectorize=False)
        assert summary.done == len(configs) * reps
    return _results(path)


@pytest.fixture(scope="module")
def slow_reference(ray_address, tmp_path_factory):
    """The SLOW grid trained on Ray without interruption (Ray = local is the first test)."""
    path = tmp_path_factory.mktemp("slow") / "reference.db"
    with open_store(path) as s:
        queue(s, SLOW, 2)
        assert work(s, workers=2, vectorize=False, executor="ray").done == 2
    return _results(path)


def _results(path) -> dict:
    """Every epoch row and every run's test metrics, keyed by (setup, rep[, epoch])."""
    with open_store(path, create=False) as s:
        epochs = {
            (r["config_id"], r["rep"], r["epoch"]): (r["train_loss"], r["val_loss"], r["val_acc"])
            for r in s.db.query("SELECT r.config_id, r.rep, e.* FROM epochs e JOIN runs r ON r.id = e.run_id")
        }
        tests = {
            (r["config_id"], r["rep"]): (r["test_loss"], r["test_acc"])
            for r in s.db.query("SELECT * FROM runs WHERE status = 'done'")
        }
    return {"epochs": epochs, "tests": tests}


def _assert_same(got: dict, expected: dict) -> None:
    for part in ("epochs", "tests"):
        assert got[part].keys() == expected[part].keys()
        for key, values in expected[part].items():
            assert got[part][key] == pytest.approx(values, rel=1e-5), (part, key)


def _assert_complete(path, runs: int, epochs: int) -> None:
    """Every run done once, each epoch recorded exactly once, no checkpoint left."""
    with open_store(path, create=False) as s:
        assert s.status_counts() == {"queued": 0, "running": 0, "done": runs, "failed": 0}
        assert s.db["epochs"].count == runs * epochs
        per_run = s.db.execute(
            "SELECT run_id, group_concat(epoch) FROM (SELECT * FROM epochs ORDER BY epoch) GROUP BY run_id"
        ).fetchall()
        expected = ",".join(str(e) for e in range(1, epochs + 1))
        assert len(per_run) == runs and all(epochs_ == expected for _, epochs_ in per_run)
        assert s.db["checkpoints"].count == 0


@needs_ray
@pytest.mark.slow
def test_a_grid_on_ray_gives_the_numbers_of_the_local_executor(ray_address, tmp_path, two_cores):
    expected = _local_reference(tmp_path / "local.db", GRID, 2)
    events = []
    with open_store(tmp_path / "ray.db") as s:
        queue(s, GRID, 2)
        summary = work(s, workers=2, vectorize=False, executor="ray", on_event=events.append)
        assert (summary.done, summary.failed) == (6, 0), (summary, s.status_counts(), events)
        hosts = {r["host"] for r in s.run_rows(status="done")}
    _assert_complete(tmp_path / "ray.db", 6, 2)
    _assert_same(_results(tmp_path / "ray.db"), expected)
    assert hosts == {socket.gethostname()}
    assert {type(e) for e in events} >= {Started, Host, Epoch, Done}


@needs_ray
@pytest.mark.slow
def test_the_queue_is_worked_to_the_end_when_finished_tasks_resolve_late(ray_address, tmp_path, two_cores, monkeypatch):
    """A task's reference may resolve after its runs reported done: the driver must still claim
    the rest of the queue with that slot instead of ending with runs left queued."""
    import ray

    real_wait = ray.wait

    def late_wait(refs, *, num_returns=1, timeout=None, **kwargs):
        if timeout == 0:
            return [], list(refs)  # nothing has resolved yet, whatever the hub has received
        return real_wait(refs, num_returns=num_returns, timeout=timeout, **kwargs)

    cancelled = []
    monkeypatch.setattr(ray, "wait", late_wait)
    # Cancelling a task as it returns aborts Ray's driver process: a finished grid cancels nothing.
    monkeypatch.setattr(ray, "cancel", lambda ref, **kwargs: cancelled.append(ref))
    with open_store(tmp_path / "late.db") as s:
        queue(s, GRID, 1)
        summary = work(s, workers=2, vectorize=False, executor="ray")
        assert (summary.done, summary.failed) == (3, 0)
    assert cancelled == []
    _assert_complete(tmp_path / "late.db", 3, 2)


@needs_ray
@pytest.mark.slow
def test_a_killed_worker_is_retried_from_its_checkpoint(ray_address, tmp_path, two_cores, slow_reference):
    pids: dict[str, int] = {}
    killed: dict[str, float] = {}
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, Host):
            pids[event.run_id] = event.pid
        elif isinstance(event, Epoch) and not killed:
            killed[event.run_id] = time.time()
            os.kill(pids[event.run_id], signal.SIGKILL)  # the Ray worker process training it

    path = tmp_path / "killed.db"
    with open_store(path) as s:
        queue(s, SLOW, 2)
        summary = work(s, workers=2, vectorize=False, executor="ray", on_event=on_event, max_retries=2)
        assert (summary.done, summary.failed) == (2, 0)
        ((victim, kill_time),) = killed.items()
        assert any(isinstance(e, Lost) and e.run_id == victim for e in events)
        attempts = {r["id"]: r["attempts"] for r in s.run_rows()}
        assert attempts[victim] == 2 and sum(attempts.values()) == 3
        # Its first epoch was not trained again: the retry resumed from the checkpoint.
        first = s.db.execute("SELECT recorded_at FROM epochs WHERE run_id = ? AND epoch = 1", [victim]).fetchone()[0]
        assert first < kill_time
    _assert_complete(path, 2, 8)
    _assert_same(_results(path), slow_reference)


@needs_ray
@pytest.mark.slow
def test_a_killed_driver_resumes_on_restart(ray_address, tmp_path, slow_reference):
    path = tmp_path / "driver.db"
    with open_store(path) as s:
        queue(s, SLOW, 2)
    command = [
        sys.executable,
        "-m",
        "tui.cli",
        "work",
        "--executor",
        "ray",
        "--address",
        ray_address,
        "--workers",
        "2",
        "--no-vectorize",
        "--db",
        str(path),
    ]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240  # Ray and torch start slowly on two busy cores
        while time.time() < deadline and driver.poll() is None:
            time.sleep(0.1)
            with open_store(path, create=False) as s:
                if s.db["epochs"].count >= 1:
                    break
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    with open_store(path, create=False) as s:
        assert s.db["epochs"].count >= 1
        assert s.status_counts()["done"] < 2
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    _assert_complete(path, 2, 8)
    _assert_same(_results(path), slow_reference)


def test_asking_for_ray_without_it_is_one_line_error(store, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    queue(store, [tiny()], 1)
    with pytest.raises(ConfigError, match=r"--executor ray needs Ray: pip install -e '\.\[ray\]'"):
        work(store, executor="ray")
    with pytest.raises(ConfigError, match="unknown executor"):
        work(store, executor="dask")
    assert store.status_counts()["queued"] == 1
