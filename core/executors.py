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
    """Runs of one configuration to train together (vectorised) or one after another."""

    config: dict
    runs: tuple[tuple[str, int, bytes | None], ...]  # (run id, repetition, checkpoint)
    device: str
    data_dir: str | None
    vectorize: bool = True

    @property
    def run_ids(self) -> list[str]:
        return [run_id for run_id, _, _ in self.runs]


def task_for(runs: list[ClaimedRun], device: str, data_dir: str | None, vectorize: bool = True) -> Task:
    return Task(runs[0].config.to_dict(), tuple((r.id, r.rep, r.checkpoint) for r in runs), device,
                data_dir, vectorize)


def execute_task(task: Task, emit, should_stop) -> None:
    """Train a task, reporting each run's events through ``emit``. Used by every executor."""
    from core.config import RunConfig

    config = RunConfig.from_dict(task.config)
    if task.vectorize and len(task.runs) > 1:
        by_epoch: dict[int, list] = {}
        for run in task.runs:
            by_epoch.setdefault(_checkpoint_epoch(run[2]), []).append(run)
        groups = list(by_epoch.values())
    else:
        groups = [[run] for run in task.runs]
    for index, group in enumerate(groups):
        if not _execute_group(config, group, task, emit, should_stop):
            for rest in groups[index + 1 :]:
                for run_id, _, _ in rest:
                    emit(("interrupted", run_id))
            return


def _checkpoint_epoch(state: bytes | None) -> int:
    if not state:
        return 0
    import io

    import torch

    return int(torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)["epoch"])


def _execute_group(config, group: list, task: Task, emit, should_stop) -> bool:
    """Train one group; False when interrupted."""
    import torch

    from core import __version__
    from core.train import RunInterrupted, run_training
    from core.vectorized import run_group

    ids = {rep: run_id for run_id, rep, _ in group}
    finished: set[str] = set()

    def epoch(rep, metrics, state):
        emit(("epoch", ids[rep], metrics.as_row(), state))

    def failed(rep, reason):
        finished.add(ids[rep])
        emit(("failed", ids[rep], reason))

    started = time.perf_counter()
    try:
        if len(group) == 1:
            run_id, rep, state = group[0]
            results = {rep: run_training(
                config, rep, device=task.device, data_dir=task.data_dir, checkpoint=state,
                on_epoch=lambda metrics, st: epoch(rep, metrics, st), should_stop=should_stop,
            )}
        else:
            results = run_group(
                config, [rep for _, rep, _ in group], device=task.device, data_dir=task.data_dir,
                checkpoints=[state for _, _, state in group], on_epoch=epoch, on_failed=failed,
                should_stop=should_stop,
            )
    except RunInterrupted:
        for run_id in ids.values():
            if run_id not in finished:
                emit(("interrupted", run_id))
        return False
    except Exception as exc:  # noqa: BLE001 - a training error fails these runs, not the grid
        for run_id in ids.values():
            if run_id not in finished:
                emit(("failed", run_id, f"{type(exc).__name__}: {exc}"))
        return True
    seconds = (time.perf_counter() - started) / len(group)
    for rep, test in results.items():
        emit(("done", ids[rep], {**test.as_row(), "seconds": seconds, "device": task.device,
                                 "torch_version": torch.__version__, "code_version": __version__}))
    return True


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
        self.run_ids: set[str] = set()


class LocalExecutor:
    """N long-lived worker processes (spawn), one task each at a time."""

    def __init__(self, workers: int, threads: int):
        self.ctx = mp.get_context("spawn")
        self.results = self.ctx.Queue()
        self.stop_event = self.ctx.Event()
        self.threads = threads
        self.slots = [self._new_slot() for _ in range(workers)]

    def _new_slot(self) -> _Slot:
        return _Slot(self.ctx, self.results, self.stop_event, self.threads)

    def free_slots(self) -> int:
        return sum(not slot.run_ids for slot in self.slots)

    def submit(self, task: Task) -> None:
        slot = next(slot for slot in self.slots if not slot.run_ids)
        slot.run_ids = set(task.run_ids)
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
                    slot.run_ids.discard(event[1])
        return events

    def lost_runs(self) -> list[str]:
        """Runs whose worker process died; the slot gets a fresh process."""
        lost = []
        for index, slot in enumerate(self.slots):
            if not slot.process.is_alive():
                lost.extend(sorted(slot.run_ids))
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


EXECUTORS = ("local", "ray")


def make_executor(kind: str, plan, address: str | None = None):
    """The executor of a work plan: ``local`` processes or ``ray`` tasks."""
    if kind == "ray":
        from core.ray_executor import RayExecutor

        return RayExecutor(plan.workers, plan.threads, address)
    return LocalExecutor(plan.workers, plan.threads)
