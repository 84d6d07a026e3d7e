"""The driver loop: claim queued runs, hand them to an executor, persist what comes back."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.config import RunConfig
from core.executors import EXECUTORS, make_executor, task_for
from core.store import LostClaim, Store, StoreError, worker_id

HEARTBEAT_EVERY_S = 5.0
STALE_AFTER_S = 60.0
STALE_CHECK_EVERY_S = 15.0
MAX_ATTEMPTS = 5


@dataclass
class WorkSummary:
    done: int = 0
    failed: int = 0
    interrupted: bool = False
    requeued: int = 0
    errors: list[str] = field(default_factory=list)


MAX_GROUP = 16


@dataclass(frozen=True)
class WorkPlan:
    workers: int  # worker processes
    threads: int  # torch threads in each
    group_size: int  # runs of one configuration trained together (1 = one at a time)


def plan_work(queued_by_config: list[int], workers: int | None = None, cores: int | None = None,
              vectorize: bool = True) -> WorkPlan:
    """Size the work to the machine: never more processes x threads than cores (unless asked).

    One process per core, each a single torch thread: at these model sizes a process per core
    beats intra-op threads. When there are fewer configurations than processes, a
    configuration's repetitions are split so that every process gets a group.
    """
    cores = cores or os.cpu_count() or 1
    total = sum(queued_by_config)
    n = min(workers or cores, max(total, 1))  # never a process without a run to train
    if not vectorize:
        return WorkPlan(max(1, n), max(1, cores // max(1, n)), 1)
    groups = max(1, len(queued_by_config))
    largest = max(queued_by_config, default=1)
    per_config = max(1, n // groups) if groups < n else 1
    group_size = max(1, min(MAX_GROUP, -(-largest // per_config)))
    return WorkPlan(max(1, n), max(1, cores // max(1, n)), group_size)


class StopRequest:
    """Set by a signal handler or another thread: finish the current epochs, then stop."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.hard = False

    def __call__(self, *_: object) -> None:
        if self.event.is_set():
            self.hard = True
            raise KeyboardInterrupt
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


def work(
    store: Store,
    *,
    workers: int | None = None,
    device: str = "cpu",
    data_dir: str | None = None,
    config_ids: list[str] | None = None,
    on_event: Callable[[tuple], None] | None = None,
    stop: StopRequest | None = None,
    stale_after_s: float = STALE_AFTER_S,
    vectorize: bool = True,
    executor: str = "local",
    address: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> WorkSummary:
    """Run queued runs (optionally only of ``config_ids``) until none is left or ``stop`` is set.

    ``executor`` is ``local`` (worker processes here) or ``ray`` (tasks on the Ray cluster at
    ``address``); either way this driver alone writes the database. Installs SIGINT/SIGTERM
    handlers when called from the main thread: the first signal stops
    after the current epochs (their runs go back to the queue and resume from the checkpoint).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    me = worker_id()
    stop = stop or StopRequest()
    summary = WorkSummary()
    summary.requeued = len(store.requeue_stale(stale_after_s))
    queued = _queued_by_config(store, config_ids)
    if not queued:
        return summary
    plan = plan_work(queued, workers, vectorize=vectorize)
    previous = _install_signals(stop)
    pool = make_executor(executor, plan, address)
    held: dict[str, str] = {}  # run id -> label
    deaths: dict[str, int] = {}  # run id -> times its worker was lost under this driver
    last_beat = last_stale = time.monotonic()
    try:
        while True:
            if stop.is_set():
                pool.request_stop()
            else:
                _fill(store, pool, me, held, config_ids, plan, device, data_dir, on_event)
            if not held:
                break
            for event in pool.poll(timeout=0.5):
                _persist(store, me, event, held, summary, on_event)
            for lost in pool.lost_runs():
                held.pop(lost, None)
                deaths[lost] = deaths.get(lost, 0) + 1
                _lost_worker(store, me, lost, deaths[lost], summary, on_event, max_attempts,
                             getattr(pool, "lost_reason", lambda _run: None)(lost))
            now = time.monotonic()
            if now - last_beat > HEARTBEAT_EVERY_S:
                store.heartbeat(me, held)
                last_beat = now
            if now - last_stale > STALE_CHECK_EVERY_S:
                summary.requeued += len(store.requeue_stale(stale_after_s))
                last_stale = now
    except KeyboardInterrupt:
        pool.shutdown(kill=True)
        for run in list(held):
            store.release_run(run, me)
        summary.interrupted = True
        return summary
    except StoreError:  # the database is gone or unusable: nothing more can be written
        pool.shutdown(kill=True)
        raise
    finally:
        _restore_signals(previous)
    pool.shutdown()
    store.check_same_file()  # never report runs done into a file deleted meanwhile
    summary.interrupted = stop.is_set()
    return summary


def _queued_by_config(store: Store, config_ids: list[str] | None) -> list[int]:
    """Queued runs per configuration (of ``config_ids``, if given)."""
    wanted = set(config_ids) if config_ids else None
    return [
        row["queued"] for row in store.config_progress()
        if row["queued"] and (wanted is None or row["id"] in wanted)
    ]


def _fill(store, executor, me, held, config_ids, plan, device, data_dir, on_event) -> None:
    while executor.free_slots():
        claimed = store.claim(me, plan.group_size, config_ids)
        if not claimed:
            return
        for run in claimed:
            held[run.id] = run.config.label
            if on_event:
                on_event(("started", run.id, run.config, run.rep))
        executor.submit(task_for(claimed, device, data_dir, vectorize=plan.group_size > 1))


def _persist(store: Store, me: str, event: tuple, held: dict, summary: WorkSummary, on_event):
    kind, run = event[0], event[1]
    try:
        if kind == "epoch":
            store.record_epoch(run, me, event[2], event[3])
        elif kind == "done":
            store.finish_run(run, me, event[2])
            summary.done += 1
        elif kind == "failed":
            store.fail_run(run, me, event[2])
            summary.failed += 1
            summary.errors.append(f"{run}: {event[2]}")
        elif kind == "interrupted":
            store.release_run(run, me)
        elif kind == "host":  # where a remote executor trains it
            store.set_host(run, me, event[2])
    except LostClaim:
        pass  # requeued as stale meanwhile: its new holder writes it
    if kind in ("done", "failed", "interrupted"):
        held.pop(run, None)
    if on_event:
        on_event(event[:3] if kind == "epoch" else event)


def _lost_worker(store: Store, me: str, run: str, deaths: int, summary: WorkSummary, on_event,
                 max_attempts: int, lost_reason: str | None = None) -> None:
    """Queue a run whose worker was lost again, or fail it after ``max_attempts`` losses.

    Only losses count (``deaths``, under this driver), not the run's claims: a run interrupted
    or requeued after its driver was killed has not been the cause, and must not fail for it.
    """
    try:
        if deaths >= max_attempts:
            reason = f"its worker process died {deaths} times"
            store.fail_run(run, me, f"{reason}: {lost_reason}" if lost_reason else reason)
            summary.failed += 1
        else:
            store.release_run(run, me)
    except LostClaim:
        pass
    if on_event:
        on_event(("lost", run))


def _install_signals(stop: StopRequest):
    if threading.current_thread() is not threading.main_thread():
        return None
    return {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous) -> None:
    if previous:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def queue_configs(store: Store, configs: list[RunConfig], reps: int) -> int:
    """Queue ``reps`` repetitions of each configuration; returns the runs added."""
    return store.queue(configs, reps)
