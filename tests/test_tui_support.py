"""Helpers shared by the TUI tests (no tests here): fixture databases and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from core import api
from core.config import RunConfig
from core.store import Store, run_id

FIXED_TIME = 1_700_000_000.0
#: The tiny protocol of the fixture database (two epochs, three repetitions).
TINY = RunConfig(structure="shared", arch="A1", kernel=3, epochs=2, train_pairs=100, val_pairs=10, test_pairs=100)

SHARED_A1 = TINY
SHARED_A2 = TINY.replace(arch="A2")
INDEPENDENT_A1 = TINY.replace(structure="independent")
AUX_A1 = TINY.replace(structure="shared-aux")

#: Final-epoch (train_loss, val_loss, val_acc) of each done repetition: known means and stds.
FINALS = {
    SHARED_A1: [(0.30, 0.50, 0.80), (0.30, 0.60, 0.82), (0.30, 0.70, 0.84)],
    SHARED_A2: [(0.20, 0.40, 0.90), (0.20, 0.45, 0.92), (0.20, 0.50, 0.94)],
    INDEPENDENT_A1: [(0.40, 0.70, 0.70), (0.40, 0.72, 0.72)],
    AUX_A1: [(0.25, 0.55, 0.85), (0.25, 0.65, 0.87)],
}
TEST_ACC = {
    SHARED_A1: [0.81, 0.83, 0.85],
    SHARED_A2: [0.91, 0.93, 0.95],
    INDEPENDENT_A1: [0.71, 0.73],
    AUX_A1: [0.86, 0.88],
}


def epoch_row(
    run: str, epoch: int, train_loss: float, val_loss: float, val_acc: float, recorded_at: float = FIXED_TIME
) -> dict:
    return {
        "run_id": run,
        "epoch": epoch,
        "train_loss": train_loss,
        "train_main_loss": train_loss,
        "train_acc": 1 - train_loss,
        "val_loss": val_loss,
        "val_main_loss": val_loss,
        "val_acc": val_acc,
        "val_digit_acc": val_acc,
        "lr": 0.01,
        "seconds": 1.0,
        "recorded_at": recorded_at,
    }


def insert_epoch(
    store: Store, config: RunConfig, rep: int, epoch: int, train_loss: float, val_loss: float, val_acc: float
) -> None:
    """What a worker's driver writes after an epoch, written directly (another connection)."""
    with store.transaction() as db:
        db["epochs"].upsert(
            epoch_row(run_id(config, rep), epoch, train_loss, val_loss, val_acc), pk=("run_id", "epoch")
        )


def set_status(store: Store, config: RunConfig, rep: int, status: str, **fields) -> None:
    with store.transaction() as db:
        db["runs"].update(run_id(config, rep), {"status": status, **fields})


def build_fixture_db(path: Path) -> Path:
    """A small database with known final-epoch values and fixed timestamps.

    shared A1/A2 k3: 3 of 3 done; independent A1 k3: 2 done, 1 running (epoch 1);
    shared-aux A1 k3: 2 done, 1 failed. Timestamps are fixed so snapshots are stable.
    """
    with api.open_store(path) as store:
        api.queue(store, [SHARED_A1, SHARED_A2, INDEPENDENT_A1, AUX_A1], 3)
        for config, finals in FINALS.items():
            for rep, (train, val, acc) in enumerate(finals):
                insert_epoch(store, config, rep, 1, train * 2, val * 1.5, acc - 0.2)
                insert_epoch(store, config, rep, 2, train, val, acc)
                set_status(
                    store,
                    config,
                    rep,
                    "done",
                    test_acc=TEST_ACC[config][rep],
                    test_loss=val + 0.01,
                    started_at=FIXED_TIME,
                    finished_at=FIXED_TIME,
                    attempts=1,
                )
        insert_epoch(store, INDEPENDENT_A1, 2, 1, 0.9, 1.0, 0.5)
        set_status(
            store,
            INDEPENDENT_A1,
            2,
            "running",
            worker="host:1",
            host="host",
            heartbeat_at=FIXED_TIME,
            started_at=FIXED_TIME,
            attempts=1,
        )
        set_status(
            store, AUX_A1, 2, "failed", error="Traceback ...\nRuntimeError: boom", finished_at=FIXED_TIME, attempts=1
        )
        with store.transaction() as db:
            db.execute("UPDATE configs SET created_at = ?", [FIXED_TIME])
            db.execute("UPDATE runs SET queued_at = ?", [FIXED_TIME])
    return path


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Let the app run until ``condition()`` holds (no key presses), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        await pilot.pause(0.05)
    await pilot.pause()


def wait_for_sync(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(0.05)


async def settle(pilot, screen_type: type, loads: int = 1, timeout: float = 30.0):
    """Wait until the screen in front is ``screen_type`` and has shown ``loads`` loads."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, screen_type) and app.screen.loads >= loads, timeout)
    await asyncio.sleep(0)
    return app.screen
