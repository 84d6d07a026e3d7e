import os
import signal
import subprocess
import sys
import time

import pytest

from core.api import open_store, queue, work
from core.execution import Done, Epoch, Started
from core.scheduler import plan_work
from core.store import StoreError
from tests.conftest import tiny


@pytest.mark.slow
def test_work_runs_the_queue_to_the_end(store):
    configs = [tiny(structure=s) for s in ("independent", "shared", "shared-aux")]
    queue(store, configs, 2)
    events = []
    summary = work(store, workers=2, on_event=events.append)
    assert summary.done == 6 and summary.failed == 0
    assert store.status_counts() == {"queued": 0, "running": 0, "done": 6, "failed": 0}
    assert store.db["epochs"].count == 12
    assert store.db["checkpoints"].count == 0
    assert {type(e) for e in events} >= {Started, Epoch, Done}
    run = store.run_rows(status="done")[0]
    assert run["torch_version"] and run["device"] == "cpu" and 0 <= run["test_acc"] <= 1


@pytest.mark.slow
def test_a_diverging_run_fails_and_the_grid_goes_on(store):
    queue(store, [tiny(lr=1e6, optimizer="sgd", epochs=3), tiny()], 1)
    summary = work(store, workers=1)
    assert summary.done == 1 and summary.failed == 1
    (failed,) = store.failures()
    assert "lower --lr" in failed["error"]
    assert store.retry_failed() == 1
    assert store.status_counts()["queued"] == 1


def test_work_plan_never_oversubscribes_the_cores():
    for cores in (1, 2, 8, 16):
        for queued in ([1], [10], [10] * 36, [3, 7], [100]):
            for vectorize in (True, False):
                plan = plan_work(queued, None, cores, vectorize)
                assert plan.workers * plan.threads <= cores
                assert 1 <= plan.group_size <= 16
                if not vectorize:
                    assert plan.group_size == 1


def test_work_plan_splits_one_configuration_across_the_cores():
    assert plan_work([10], None, 2) == plan_work([10], 2, 2)
    plan = plan_work([10], None, 2)
    assert (plan.workers, plan.threads, plan.group_size) == (2, 1, 5)
    grid = plan_work([10] * 36, None, 2)
    assert (grid.workers, grid.threads, grid.group_size) == (2, 1, 10)


def test_work_plan_never_starts_a_process_without_a_run():
    assert plan_work([1], 9_999_999, 2).workers == 1
    assert plan_work([3, 2], 64, 2, vectorize=False).workers == 5


@pytest.mark.parametrize("structure", ["independent", "shared-aux"])
@pytest.mark.slow
def test_vectorised_and_one_at_a_time_work_give_the_same_first_epoch(tmp_path, structure):
    results = {}
    for vectorize in (True, False):
        with open_store(tmp_path / f"{vectorize}.db") as s:
            queue(s, [tiny(structure=structure)], 3)
            work(s, workers=1, vectorize=vectorize)
            results[vectorize] = {
                r["rep"]: r["train_loss"]
                for r in s.db.query(
                    "SELECT r.rep, e.train_loss FROM epochs e JOIN runs r ON r.id = e.run_id WHERE e.epoch = 1"
                )
            }
    assert results[True].keys() == {0, 1, 2}
    for rep, loss in results[False].items():
        assert results[True][rep] == pytest.approx(loss, rel=1e-4)


def _epoch_metrics(path):
    with open_store(path, create=False) as s:
        return {
            (r["rep"], r["epoch"]): (r["train_loss"], r["val_acc"])
            for r in s.db.query(
                "SELECT r.rep, e.epoch, e.train_loss, e.val_acc FROM epochs e JOIN runs r ON r.id = e.run_id"
            )
        }


@pytest.mark.slow
def test_killed_driver_resumes_and_matches_an_uninterrupted_run(tmp_path):
    config_flags = [
        "--structure",
        "shared",
        "--arch",
        "A1",
        "--kernel",
        "3",
        "--epochs",
        "6",
        "--reps",
        "2",
        "--train-pairs",
        "300",
        "--val-pairs",
        "30",
        "--test-pairs",
        "100",
        "--workers",
        "1",
    ]
    reference = tmp_path / "reference.db"
    subprocess.run(
        [sys.executable, "-m", "tui.cli", "run", *config_flags, "--db", str(reference)], check=True, capture_output=True
    )

    crashed = tmp_path / "crashed.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", *config_flags, "--db", str(crashed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        if crashed.exists():
            try:
                with open_store(crashed, create=False) as s:
                    if s.db["epochs"].count >= 2:
                        break
            except StoreError:
                continue  # the driver is still creating the database
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with open_store(crashed, create=False) as s:
        assert s.status_counts()["done"] < 2
    subprocess.run(
        [sys.executable, "-m", "tui.cli", "run", *config_flags, "--db", str(crashed)], check=True, capture_output=True
    )
    with open_store(crashed, create=False) as s:
        assert s.status_counts()["done"] == 2
        assert s.db["epochs"].count == 12
    expected, got = _epoch_metrics(reference), _epoch_metrics(crashed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key][0] == pytest.approx(expected[key][0], rel=1e-5)
        assert got[key][1] == expected[key][1]
