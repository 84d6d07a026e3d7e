"""Executors train claimed runs and hand back events; the driver alone writes the database.

Events are tuples:
``("epoch", run_id, metrics_row, checkpoint_bytes)``, ``("done", run_id, results_row)``,
``("failed", run_id, error)``, ``("interrupted", run_id)``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass

from core.store import ClaimedRun


@dataclass(frozen=True)
class Task:
    run_id: str
    config: dict
    rep: int
    checkpoint: bytes | None
    device: str
    data_dir: str | None


def task_for(run: ClaimedRun, device: str, data_dir: str | None) -> Task:
    return Task(run.id, run.config.to_dict(), run.rep, run.checkpoint, device, data_dir)


def execute_task(task: Task, emit, should_stop) -> None:
    """Train one task, reporting each event through ``emit``. Used by every executor."""
    import torch

    from core import __version__
    from core.config import RunConfig
    from core.train import RunInterrupted, run_training

    started = time.perf_counter()
    try:
        config = RunConfig.from_dict(task.config)
        test = run_training(
            config, task.rep, device=task.device, data_dir=task.data_dir,
            checkpoint=task.checkpoint,
            on_epoch=lambda metrics, state: emit(("epoch", task.run_id, metrics.as_row(), state)),
            should_stop=should_stop,
        )
    except RunInterrupted:
        emit(("interrupted", task.run_id))
        return
    except Exception as exc:  # noqa: BLE001 - any training error fails this run, not the grid
        emit(("failed", task.run_id, f"{type(exc).__name__}: {exc}"))
        return
    emit(
        (
            "done",
            task.run_id,
            {
                **test.as_row(),
                "seconds": time.perf_counter() - started,
                "device": task.device,
                "torch_version": torch.__version__,
                "code_version": __version__,
            },
        )
    )


def _worker_main(tasks, results, stop_event, threads: int, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import torch

    torch.set_num_threads(threads)

    def orphaned() -> bool:
        return os.getppid() != parent_pid

    def should_stop() -> bool:
        return stop_event.is_set() or orphaned()

    while not orphaned():
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            continue
        if task is None:
            return
        execute_task(task, results.put, should_stop)


class _Slot:
    def __init__(self, ctx, results, stop_event, threads: int):
        self.tasks = ctx.Queue()
        self.process = ctx.Process(
            target=_worker_main,
            args=(self.tasks, results, stop_event, threads, os.getpid()),
            daemon=True,
        )
        self.process.start()
        self.run_id: str | None = None


class LocalExecutor:
    """N long-lived worker processes (spawn), one run each at a time."""

    def __init__(self, workers: int, threads: int):
        self.ctx = mp.get_context("spawn")
        self.results = self.ctx.Queue()
        self.stop_event = self.ctx.Event()
        self.threads = threads
        self.slots = [self._new_slot() for _ in range(workers)]

    def _new_slot(self) -> _Slot:
        return _Slot(self.ctx, self.results, self.stop_event, self.threads)

    def free_slots(self) -> int:
        return sum(slot.run_id is None for slot in self.slots)

    def submit(self, task: Task) -> None:
        slot = next(slot for slot in self.slots if slot.run_id is None)
        slot.run_id = task.run_id
        slot.tasks.put(task)

    def poll(self, timeout: float) -> list[tuple]:
        events = []
        try:
            events.append(self.results.get(timeout=timeout))
            while True:
                events.append(self.results.get_nowait())
        except queue.Empty:
            pass
        for event in events:
            if event[0] in ("done", "failed", "interrupted"):
                for slot in self.slots:
                    if slot.run_id == event[1]:
                        slot.run_id = None
        return events

    def lost_runs(self) -> list[str]:
        """Runs whose worker process died; the slot gets a fresh process."""
        lost = []
        for index, slot in enumerate(self.slots):
            if not slot.process.is_alive():
                if slot.run_id is not None:
                    lost.append(slot.run_id)
                self.slots[index] = self._new_slot()
        return lost

    def request_stop(self) -> None:
        self.stop_event.set()

    def shutdown(self, *, kill: bool = False) -> None:
        for slot in self.slots:
            if kill:
                slot.process.kill()
            else:
                slot.tasks.put(None)
        for slot in self.slots:
            slot.process.join(timeout=10)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
