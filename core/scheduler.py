"""The driver loop: claim queued runs, hand them to an executor, persist what comes back."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from core.config import RunConfig
from core.execution import (
    TERMINAL,
    Done,
    Epoch,
    Event,
    Executor,
    ExecutorEvent,
    Failed,
    Followed,
    Following,
    Host,
    Interrupted,
    Lost,
    Restarted,
    Started,
    check_executor,
    make_executor,
)
from core.executors import STALL_TIMEOUT_S, task_for
from core.families import family_key, fusion_enabled
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
    #: runs trained again from epoch 0 because their checkpoint was unreadable (with why)
    restarted: list[str] = field(default_factory=list)
    #: runs another driver held that were followed to their end (``work(follow=True)``)
    followed: int = 0
    #: runs another driver still held when this one stopped (left to it)
    left: int = 0


MAX_GROUP = 16


@dataclass(frozen=True)
class WorkPlan:
    workers: int  # worker processes
    threads: int  # torch threads in each
    group_size: int  # runs of one configuration trained together (1 = one at a time)
    #: whether a fusion family's configurations are claimed together (``core.families``)
    fuse: bool = False


def plan_work(
    queued_by_config: list[int], workers: int | None = None, cores: int | None = None, vectorize: bool = True
) -> WorkPlan:
    """Size the work to the machine: never more processes x threads than cores (unless asked).

    One process per core, each a single torch thread: at these model sizes a process per core
    beats intra-op threads. When there are fewer configurations than processes, a
    configuration's repetitions are split so that every process gets a group. With fusion,
    ``queued_by_config`` counts a family as one configuration (its most queued member's runs).
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
    """Set by a signal handler or another thread: finish the current epochs, then stop.

    A second signal makes it ``hard``: the driver then kills its workers at its next look (at
    most half a second) and queues their runs again. The handler itself never raises, so a
    signal that lands inside a library call (torch's C++ code, SQLite) cannot abort the process.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.hard = False

    def __call__(self, *_: object) -> None:
        if self.event.is_set():
            self.hard = True
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
    on_event: Callable[[Event], None] | None = None,
    stop: StopRequest | None = None,
    stale_after_s: float = STALE_AFTER_S,
    vectorize: bool = True,
    executor: str = "local",
    address: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    stall_timeout_s: float = STALL_TIMEOUT_S,
    follow: bool = False,
    fuse: bool | None = None,
) -> WorkSummary:
    """Run queued runs (optionally only of ``config_ids``) until none is left or ``stop`` is set.

    ``executor`` names an executor of ``core.execution.EXECUTORS``: ``local`` (worker processes
    here) or ``ray`` (tasks on the Ray cluster at ``address``); either way this driver alone
    writes the database, and ``on_event`` gets the events of ``core.execution``. A local worker that makes no
    progress for ``stall_timeout_s`` (or far longer than its batches take) is killed and its
    runs resume from their checkpoints. Installs SIGINT/SIGTERM handlers when called from the
    main thread: the first signal stops after the current epochs (their runs go back to the
    queue and resume from the checkpoint), a second one at once.

    With ``follow`` (and ``config_ids``), runs of those configurations that another driver holds
    are followed to their end: their new epochs and their end are reported as ``Followed``
    events (after one ``Following``), and any of them that
    comes back to the queue (its driver stopped or died) is trained here. The summary counts them
    (``followed``; failures in ``failed``); on a stop they are left to their holder (``left``).

    With ``fuse`` (None: on unless ``PAIRS_FUSE=0``; never without ``vectorize``), the queued
    runs of one fusion family (``core.families.family_key``: e.g. the structures and learning
    rates of one architecture and kernel) are claimed together and trained as one fused model
    (``core.fused``), each run still resumed from its own checkpoint.
    """
    check_executor(executor, address=address)
    fuse = vectorize and (fusion_enabled() if fuse is None else fuse)
    me = worker_id()
    stop = stop or StopRequest()
    previous = _install_signals(stop)
    summary = WorkSummary()
    pool: Executor | None = None
    tracker = None
    held: dict[str, str] = {}  # run id -> label
    try:
        summary.requeued = len(store.requeue_stale(stale_after_s))
        tracker = _Follower(store, config_ids, me) if follow and config_ids else None
        queued = _queued_by_config(store, config_ids, fuse)
        if not queued and not (tracker and tracker.pending):
            return summary
        if tracker is not None and tracker.elsewhere and on_event:
            on_event(Following(len(tracker.elsewhere), tuple(sorted(tracker.holders))))
        deaths: dict[str, int] = {}  # run id -> times its worker was lost under this driver
        last_beat = last_stale = time.monotonic()
        plan = None
        while True:
            if stop.hard:
                raise KeyboardInterrupt
            if stop.is_set():
                if pool is not None:
                    pool.request_stop()
            else:
                if pool is None and not queued and tracker is not None and tracker.queued:
                    queued = _queued_by_config(store, config_ids, fuse)  # came back to the queue
                if pool is None and queued:
                    plan = replace(plan_work(queued, workers, vectorize=vectorize), fuse=fuse)
                    pool = make_executor(
                        executor, plan.workers, plan.threads, address=address, stall_timeout_s=stall_timeout_s
                    )
                if pool is not None:
                    _fill(store, pool, me, held, config_ids, plan, device, data_dir, on_event)
            queued = []
            if tracker is not None:
                tracker.look(held, summary, on_event)
            if not held and (tracker is None or not tracker.pending or stop.is_set()):
                break
            events = list(pool.poll(timeout=0.5)) if pool is not None else _sleep(0.5)
            for event in events:
                _persist(store, me, event, held, summary, on_event)
                if tracker is not None:
                    tracker.saw(event)
            for lost in pool.lost_runs() if pool is not None else []:
                held.pop(lost, None)
                deaths[lost] = deaths.get(lost, 0) + 1
                _lost_worker(
                    store,
                    me,
                    lost,
                    deaths[lost],
                    summary,
                    on_event,
                    max_attempts,
                    pool.lost_reason(lost) if pool is not None else None,
                )
            now = time.monotonic()
            if now - last_beat > HEARTBEAT_EVERY_S:
                store.heartbeat(me, held)
                last_beat = now
            if now - last_stale > STALE_CHECK_EVERY_S:
                summary.requeued += len(store.requeue_stale(stale_after_s))
                last_stale = now
        if tracker is not None:
            summary.left = tracker.held_elsewhere()
    except KeyboardInterrupt:
        if pool is not None:
            pool.shutdown(kill=True)
        for run in list(held):
            store.release_run(run, me)
        summary.interrupted = True
        if tracker is not None:
            summary.left = tracker.held_elsewhere()
        return summary
    except StoreError:  # the database is gone or unusable: nothing more can be written
        if pool is not None:
            pool.shutdown(kill=True)
        raise
    finally:
        _restore_signals(previous)
    if pool is not None:
        pool.shutdown()
    store.check_same_file()  # never report runs done into a file deleted meanwhile
    summary.interrupted = stop.is_set()
    return summary


def _sleep(seconds: float) -> list[ExecutorEvent]:
    time.sleep(seconds)
    return []


class _Follower:
    """The runs of some configurations that were not finished when a driver started: which of
    them another driver holds, how far they are, and when they end."""

    EVERY_S = 1.0

    def __init__(self, store: Store, config_ids: list[str], me: str):
        self.store, self.config_ids, self.me = store, list(config_ids), me
        rows = self._rows()
        self.pending = {row["id"] for row in rows if row["status"] in ("queued", "running")}
        self.elsewhere = {row["id"] for row in rows if row["status"] == "running" and row["worker"] != me}
        self.holders = {row["worker"] or "?" for row in rows if row["id"] in self.elsewhere}
        self.epoch = {row["id"]: row["epoch"] or 0 for row in rows}  # epochs accounted for
        self.queued = False  # whether the last look saw one of them back in the queue
        self.looked = 0.0

    def _rows(self) -> list[dict]:
        return self.store.run_progress(self.config_ids)

    def held_elsewhere(self) -> int:
        """How many of the runs are held by another driver now."""
        return sum(row["status"] == "running" and row["worker"] != self.me for row in self._rows())

    def saw(self, event: ExecutorEvent) -> None:
        """An event of a run this driver trains (already persisted)."""
        if isinstance(event, Epoch):
            self.epoch[event.run_id] = max(self.epoch.get(event.run_id, 0), event.metrics["epoch"])
        elif isinstance(event, Restarted):
            self.epoch[event.run_id] = 0
        elif isinstance(event, (Done, Failed)):
            self.pending.discard(event.run_id)

    def look(self, held: dict, summary: WorkSummary, on_event) -> None:
        """Report what the runs held elsewhere did since the last look (once a second)."""
        now = time.monotonic()
        if now - self.looked < self.EVERY_S or not (self.pending - set(held)):
            return
        self.looked = now
        self.queued = False
        for row in self._rows():
            run = row["id"]
            if run not in self.pending or run in held:
                continue
            if row["worker"] == self.me and row["status"] in ("done", "failed"):
                self.pending.discard(run)  # ended here (e.g. failed after its worker died)
                continue
            self.queued = self.queued or row["status"] == "queued"
            reached = row["epoch"] or 0
            for epoch in range(self.epoch.get(run, 0) + 1, reached + 1):
                if on_event:
                    on_event(Followed(run, "epoch", epoch))
            self.epoch[run] = reached
            if row["status"] == "done":
                self.pending.discard(run)
                summary.followed += 1
                if on_event:
                    on_event(Followed(run, "done", row["worker"]))
            elif row["status"] == "failed":
                self.pending.discard(run)
                summary.failed += 1
                summary.errors.append(f"{run}: {row['error']}")
                if on_event:
                    on_event(Followed(run, "failed", row["error"]))


def _queued_by_config(store: Store, config_ids: list[str] | None, fuse: bool = False) -> list[int]:
    """Queued runs per configuration (of ``config_ids``, if given); with ``fuse``, per fusion
    family (the most of its configurations'), a configuration that fuses with none on its own."""
    rows = _queued_rows(store, config_ids)
    if not fuse:
        return [row["queued"] for row in rows]
    units: dict[object, int] = {}
    for row in rows:
        key = _family(row) or row["id"]
        units[key] = max(units.get(key, 0), row["queued"])
    return list(units.values())


def _queued_rows(store: Store, config_ids: list[str] | None) -> list[dict]:
    wanted = set(config_ids) if config_ids else None
    return [row for row in store.config_progress() if row["queued"] and (wanted is None or row["id"] in wanted)]


def _family(row: dict) -> tuple | None:
    """The fusion family of a ``config_progress`` row's configuration (None: fuses with none)."""
    try:
        return family_key(RunConfig.from_dict(row))
    except Exception:  # noqa: BLE001 - a row pairs cannot read trains on its own (claim reports it)
        return None


def _fill(store, executor, me, held, config_ids, plan, device, data_dir, on_event) -> None:
    while executor.free_slots():
        claimed = store.claim(me, plan.group_size, config_ids)
        if not claimed:
            return
        if plan.fuse:
            claimed += _claim_family(store, me, claimed[0].config, plan.group_size, config_ids)
        for run in claimed:
            held[run.id] = run.config.label
            if on_event:
                on_event(Started(run.id, run.config, run.rep))
        fused = len({run.config.id for run in claimed}) > 1
        executor.submit(task_for(claimed, device, data_dir, vectorize=plan.group_size > 1 or fused))


def _claim_family(store: Store, me: str, config: RunConfig, limit: int, config_ids) -> list:
    """Up to ``limit`` queued runs of each other configuration of ``config``'s fusion family."""
    key = family_key(config)
    if key is None:
        return []
    claimed: list = []
    for row in _queued_rows(store, config_ids):
        if row["id"] != config.id and _family(row) == key:
            claimed += store.claim(me, limit, [row["id"]])
    return claimed


def _persist(store: Store, me: str, event: ExecutorEvent, held: dict, summary: WorkSummary, on_event) -> None:
    run = event.run_id
    reported: Event = event
    try:
        match event:
            case Epoch(metrics=metrics, checkpoint=bytes() as checkpoint):  # an executor's: with it
                store.record_epoch(run, me, metrics, checkpoint)
                reported = replace(event, checkpoint=None)  # persisted: not kept by listeners
            case Done(results=results):
                store.finish_run(run, me, results)
                summary.done += 1
            case Failed(error=error):
                store.fail_run(run, me, error)
                summary.failed += 1
                summary.errors.append(f"{run}: {error}")
            case Interrupted():
                store.release_run(run, me)
            case Host(host=host):  # where a remote executor trains it
                store.set_host(run, me, host)
            case Restarted(reason=reason):  # its checkpoint was unreadable: epoch 0 again
                reported = replace(event, epochs_lost=store.restart_run(run, me))
                summary.restarted.append(f"{run}: {reason}")
            case _:
                raise TypeError(f"an executor sent {event!r}, not an event of core.execution")
    except LostClaim:
        pass  # requeued as stale meanwhile: its new holder writes it
    if isinstance(event, TERMINAL):
        held.pop(run, None)
    if on_event:
        on_event(reported)


def _lost_worker(
    store: Store,
    me: str,
    run: str,
    deaths: int,
    summary: WorkSummary,
    on_event,
    max_attempts: int,
    lost_reason: str | None = None,
) -> None:
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
        on_event(Lost(run, lost_reason))  # a reason, e.g. a hung worker, killed


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
