"""The task every executor trains (``Task``, ``execute_task``) and the local executor.

Executors train claimed runs and hand back the events of ``core.execution`` (``Epoch``, ``Done``,
``Failed``, ``Interrupted``, ``Restarted``); the driver alone writes the database.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import select
import signal
import sys
import time
import types
from dataclasses import dataclass, replace
from multiprocessing import connection as mp_connection
from typing import TYPE_CHECKING

from core.config import RunConfig
from core.errors import ConfigError
from core.execution import TERMINAL, Done, Epoch, ExecutorEvent, Failed, Interrupted, Restarted

if TYPE_CHECKING:  # the store (sqlite-utils, ~0.4 s) is the driver's: workers never import it
    from core.store import ClaimedRun


@dataclass(frozen=True)
class Task:
    """Runs of one configuration to train together (vectorised) or one after another.

    Picklable (a spawned worker and a Ray task receive it). A config given as ``RunConfig.to_dict()``
    is turned into its RunConfig here, once."""

    config: RunConfig
    runs: tuple[tuple[str, int, bytes | None], ...]  # (run id, repetition, checkpoint)
    device: str
    data_dir: str | None
    vectorize: bool = True
    #: runs of other configurations of the same family (``core.fused.family_key``), as
    #: (config, runs): trained with these as one fused model (runs at the same epoch)
    fused: tuple[tuple[RunConfig, tuple[tuple[str, int, bytes | None], ...]], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.config, RunConfig):
            object.__setattr__(self, "config", RunConfig.from_dict(self.config))
        if any(not isinstance(config, RunConfig) for config, _ in self.fused):
            object.__setattr__(
                self,
                "fused",
                tuple(
                    (config if isinstance(config, RunConfig) else RunConfig.from_dict(config), runs)
                    for config, runs in self.fused
                ),
            )

    @property
    def run_ids(self) -> list[str]:
        return [run_id for _, runs in self.members for run_id, _, _ in runs]

    @property
    def members(self) -> list[tuple[RunConfig, tuple[tuple[str, int, bytes | None], ...]]]:
        """(config, runs) of every configuration of the task, its own first."""
        return [(self.config, self.runs), *self.fused]


def task_for(runs: list[ClaimedRun], device: str, data_dir: str | None, vectorize: bool = True) -> Task:
    """The task of claimed runs: those of the first run's configuration, and those of the
    others (of its fusion family, claimed together by the scheduler) fused with them."""
    configs: dict[str, list[ClaimedRun]] = {}
    for run in runs:
        configs.setdefault(run.config.id, []).append(run)
    own, *others = configs.values()
    return Task(
        own[0].config,
        tuple((r.id, r.rep, r.checkpoint) for r in own),
        device,
        data_dir,
        vectorize,
        tuple((group[0].config, tuple((r.id, r.rep, r.checkpoint) for r in group)) for group in others),
    )


def execute_task(task: Task, emit, should_stop) -> None:
    """Train a task, reporting each run's events through ``emit``. Used by every executor.

    A task of several configurations (``Task.fused``) trains the runs of each checkpoint epoch
    as one fused model (``core.fused``); a configuration alone at its epoch trains vectorised.
    A task on device ``auto`` trains on what ``core.train.resolve_device`` finds here."""
    from core.config import vectorizable

    if task.device == "auto":
        from core.train import resolve_device

        task = replace(task, device=resolve_device("auto"))

    groups: list[tuple[list[tuple[RunConfig, list]], bool]] = []  # (members, fused)
    fused: dict[int, list[tuple[RunConfig, list]]] = {}
    for config, own in task.members:
        runs = _readable(config, own, emit)
        if task.vectorize and vectorizable(config) and (len(runs) > 1 or task.fused):
            by_epoch: dict[int, list] = {}
            for run in runs:
                by_epoch.setdefault(_checkpoint_epoch(run[2]), []).append(run)
            if task.fused:
                for epoch, group in by_epoch.items():
                    fused.setdefault(epoch, []).append((config, group))
            else:
                groups.extend(([(config, group)], False) for group in by_epoch.values())
        else:
            groups.extend(([(config, [run])], False) for run in runs)
    for members in fused.values():
        if len(members) > 1 and _fusable(members):
            groups.append((members, True))
        else:
            groups.extend(([member], False) for member in members)
    for index, (members, together) in enumerate(groups):
        if together:
            going = _execute_fused(members, task, emit, should_stop)
        else:
            ((config, group),) = members
            going = _execute_group(config, group, task, emit, should_stop)
        if not going:
            for rest, _ in groups[index + 1 :]:
                for _, group in rest:
                    for run_id, _, _ in group:
                        emit(Interrupted(run_id))
            return


def _fusable(members: list) -> bool:
    from core.families import family_key

    keys = {family_key(config) for config, _ in members}
    return None not in keys and len(keys) == 1


def _readable(config, runs, emit) -> list[tuple]:
    """The task's runs, a run whose checkpoint cannot resume it (damaged, hostile, of another
    model) reported once as ``Restarted`` and trained again from epoch 0."""
    from core.train import checkpoint_problem

    checked = []
    for run_id, rep, state in runs:
        problem = checkpoint_problem(config, state) if state else None
        if problem:
            emit(Restarted(run_id, f"its checkpoint is unreadable ({problem}): training it again from epoch 0"))
            state = None
        checked.append((run_id, rep, state))
    return checked


def _checkpoint_epoch(state: bytes | None) -> int:
    if not state:
        return 0
    from core.training_common import decode_checkpoint

    return decode_checkpoint(state).epoch


def _execute_group(config, group: list, task: Task, emit, should_stop) -> bool:
    """Train one group; False when interrupted."""
    from core.train import run_training
    from core.vectorized import run_group

    ids = {rep: run_id for run_id, rep, _ in group}
    finished: set[str] = set()

    def epoch(rep, metrics, state):
        emit(Epoch(ids[rep], metrics.as_row(), state))

    def failed(rep, reason):
        finished.add(ids[rep])
        emit(Failed(ids[rep], reason))

    def train() -> dict:
        if len(group) == 1:
            run_id, rep, state = group[0]
            return {
                rep: run_training(
                    config,
                    rep,
                    device=task.device,
                    data_dir=task.data_dir,
                    checkpoint=state,
                    on_epoch=lambda metrics, st: epoch(rep, metrics, st),
                    should_stop=should_stop,
                )
            }
        return run_group(
            config,
            [rep for _, rep, _ in group],
            device=task.device,
            data_dir=task.data_dir,
            checkpoints=[state for _, _, state in group],
            on_epoch=epoch,
            on_failed=failed,
            should_stop=should_stop,
        )

    return _train_and_report(train, ids, finished, task, emit)


def _execute_fused(members: list, task: Task, emit, should_stop) -> bool:
    """Train the runs of several configurations of one family as one fused model; False when
    interrupted. Events as ``_execute_group``'s, per run."""
    from core.fused import run_fused

    ids = {(index, rep): run_id for index, (_, group) in enumerate(members) for run_id, rep, _ in group}
    finished: set[str] = set()

    def epoch(index, rep, metrics, state):
        emit(Epoch(ids[index, rep], metrics.as_row(), state))

    def failed(index, rep, reason):
        finished.add(ids[index, rep])
        emit(Failed(ids[index, rep], reason))

    def train() -> dict:
        return run_fused(
            [(config, [rep for _, rep, _ in group], [state for _, _, state in group]) for config, group in members],
            device=task.device,
            data_dir=task.data_dir,
            on_epoch=epoch,
            on_failed=failed,
            should_stop=should_stop,
        )

    return _train_and_report(train, ids, finished, task, emit)


def _train_and_report(train, ids: dict, finished: set[str], task: Task, emit) -> bool:
    """``train()`` (its results keyed as ``ids``), then each run's outcome emitted: ``Done``
    with its test row, or ``Interrupted`` / ``Failed`` for the runs not finished yet; False
    when interrupted."""
    import torch

    from core.provenance import code_version
    from core.train import RunInterrupted
    from core.training_common import failure_reason

    started = time.perf_counter()
    try:
        results = train()
    except RunInterrupted:
        for run_id in ids.values():
            if run_id not in finished:
                emit(Interrupted(run_id))
        return False
    except Exception as exc:  # noqa: BLE001 - a training error fails these runs, not the grid
        for run_id in ids.values():
            if run_id not in finished:
                emit(Failed(run_id, failure_reason(exc)))
        return True
    seconds = (time.perf_counter() - started) / len(ids)
    for key, test in results.items():
        emit(
            Done(
                ids[key],
                {
                    **test.as_row(),
                    "seconds": seconds,
                    "device": task.device,
                    "torch_version": str(torch.__version__),  # a plain str: a TorchVersion imports torch
                    "code_version": code_version(),
                },
            )
        )
    return True


#: A busy worker whose progress counter (one tick per batch) has not moved for this many seconds,
#: or for STALL_FACTOR times the longest gap seen between ticks if that is longer, is taken for
#: hung (a deadlock, SIGSTOP, a frozen device): it is killed and its runs resume from their
#: checkpoints. Before a task's first tick (data loading, the worker's start-up) it gets
#: STARTUP_FACTOR times that.
STALL_TIMEOUT_S = 60.0
STALL_FACTOR = 10.0
STARTUP_FACTOR = 5.0


#: The modules a worker needs before its first batch: torch (~1.5-2.5 s to import) and the
#: training paths. Not torch._dynamo (1.2-1.7 s more), which any ``torch.optim.Optimizer``
#: imports when it is made: SGD runs train with ``core.optim.SGD``, which does not (an Adam run
#: imports it in its worker). Under the ``forkserver`` start method the fork server imports them
#: once, while the driver goes on, and every worker is forked from it with them loaded.
PRELOAD = (
    "torch",
    "core.executors",
    "core.train",
    "core.vectorized",
    "core.grouped",
    "core.fused",
    "core.provenance",
    "core.fork_server",
)
#: How worker processes start: ``forkserver`` (the default where the platform has it: forked
#: from a server that has imported PRELOAD) or ``spawn`` (a fresh interpreter each, importing
#: everything itself; the way of versions before issue 19, kept for comparison:
#: ``bench/startup.py``).
START_METHOD_ENV = "PAIRS_START_METHOD"
START_METHODS = ("forkserver", "spawn")


def start_method() -> str:
    """The start method of worker processes: PAIRS_START_METHOD, else forkserver where the
    platform has it, else spawn."""
    chosen = os.environ.get(START_METHOD_ENV)
    if chosen:
        return chosen
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def start_method_problem() -> str | None:
    """The one-line error when PAIRS_START_METHOD names no start method this platform has."""
    chosen = start_method()
    if chosen not in START_METHODS or chosen not in mp.get_all_start_methods():
        usable = [m for m in START_METHODS if m in mp.get_all_start_methods()]
        return (
            f"{START_METHOD_ENV}={chosen!r} is not a start method of worker processes here: "
            f"set it to {' or '.join(usable)}, or unset it"
        )
    return None


def _worker_main(
    tasks, results, stop_flag, threads: int, environ: dict[str, str], progress=None, sample_pools=None
) -> None:
    """A worker process: train the tasks read from ``tasks``, send events on ``results``.

    Each worker has its own two pipes and no lock shared with other processes, so a worker killed
    at any moment (even half-way through sending an event) harms nothing but its own channel.
    ``environ`` is the driver's environment when the worker was started (a worker forked from
    the fork server would otherwise have the server's, of when it started); ``sample_pools`` the
    digits of the embedded sample when the driver has parsed them already.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since birth
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    import torch

    from core.data import adopt_sample_pools

    torch.set_num_threads(threads)
    adopt_sample_pools(sample_pools)
    if progress is not None:
        from core.train import set_progress_hook

        def tick() -> None:
            progress.value += 1

        set_progress_hook(tick)

    # The driver's end of a pipe that closes when the driver exits or dies (this process's parent
    # is the fork server under forkserver, which outlives the driver while workers live).
    parent = mp.parent_process()
    watch = select.poll()
    if parent is not None:
        watch.register(parent.sentinel, select.POLLIN)

    def orphaned() -> bool:
        return parent is None or bool(watch.poll(0))

    def should_stop() -> bool:
        return bool(stop_flag.value) or orphaned()

    while not orphaned():
        try:
            if not tasks.poll(1.0):
                continue
            task = tasks.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if task is None:
            break
        try:
            execute_task(task, results.send, should_stop)
        except (BrokenPipeError, EOFError, OSError):
            return  # the driver is gone
    # Every event has been sent and nothing else is open: skip the interpreter's teardown of torch
    # (~0.6 s that the driver's shutdown would wait for).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def start_workers_early() -> None:
    """Start what local workers are forked from now (the fork server importing PRELOAD), so that
    it loads torch while the driver goes on (checking the device, loading the digits, queueing);
    nothing under spawn. Cheap when it is running already; the server ends with this process.
    Raises ConfigError (one line) on a bad PAIRS_START_METHOD, before anything is queued."""
    problem = start_method_problem()
    if problem:
        raise ConfigError(problem)
    if start_method() == "forkserver":
        os.environ["PYTHONSAFEPATH"] = "1"  # see LocalExecutor
        _start_fork_server(mp.get_context("forkserver"))


def stop_fork_server() -> None:
    """End the fork server ``start_workers_early`` started, unless a local executor of this
    process uses it: for a driver that trains elsewhere after all (``--executor ray``), so that
    it does not hold torch's memory while Ray trains. A later local executor starts a new one."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the module's singleton (the stdlib has no public stop)
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None or _IN_USE:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)  # it may be importing torch: no need to wait for that
    forget = getattr(server, "_stop", None)  # reaps it and forgets it
    if forget is not None:
        with contextlib.suppress(OSError, ChildProcessError):
            forget()


#: Local executors of this process not shut down yet (their workers come from the fork server).
_IN_USE: set[int] = set()


def _start_fork_server(ctx) -> None:
    """Start the fork server (once per driver process) importing PRELOAD, with SIGINT blocked:
    a Ctrl-C of the terminal reaches the whole process group and must not kill it half-way
    through importing torch. Workers forked from it inherit the mask (see ``_Slot``)."""
    from multiprocessing import forkserver

    ctx.set_forkserver_preload(list(PRELOAD))
    with _sigint_blocked():
        forkserver.ensure_running()


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread meanwhile: the processes started inside are born with it
    blocked (a mask survives fork and exec)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    # Starting the resource tracker unblocks SIGINT (whatever the mask was before) once it has
    # started it: start it first, so that nothing started below is born with SIGINT unblocked.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


#: Whether workers skip the driver's main script (``workers_skip_driver_main``).
_SKIP_DRIVER_MAIN: list[bool] = []


def workers_skip_driver_main() -> None:
    """Workers started by this process from now on do not run its main script again.

    By default multiprocessing runs a driver's main script again in every worker, as
    ``__mp_main__``, before the worker's target (what a script's ``if __name__ == "__main__"``
    guard is for; a script that registers its own structure or data source relies on it). The
    ``pairs`` command needs nothing of it there, and its entry point imports the whole CLI
    (typer, rich: ~0.5 s of every worker's start-up): ``tui._early`` calls this."""
    _SKIP_DRIVER_MAIN[:] = [True]


@contextlib.contextmanager
def _driver_main_skipped():
    """Hide the driver's ``__main__`` from multiprocessing while a worker starts, when
    ``workers_skip_driver_main`` asked for it."""
    main = sys.modules.get("__main__")
    if not _SKIP_DRIVER_MAIN or main is None:
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _Slot:
    """One worker process and its private pipes (tasks in, events out)."""

    def __init__(self, ctx, stop_flag, threads: int):
        from core.data import sample_pools_loaded

        task_out, task_in = ctx.Pipe(duplex=False)
        event_out, event_in = ctx.Pipe(duplex=False)
        # Lock-free, like the stop flag: the worker adds one per batch (wrapping is harmless).
        self.progress = ctx.RawValue(ctypes.c_ulonglong, 0)
        self.process = ctx.Process(
            target=_worker_main,
            args=(task_out, event_in, stop_flag, threads, dict(os.environ), self.progress, sample_pools_loaded()),
            daemon=True,
        )
        # Born with SIGINT blocked (a mask survives fork and exec): a Ctrl-C of the terminal
        # reaches the whole process group, and must not raise KeyboardInterrupt in a worker that
        # is still importing torch. The worker ignores SIGINT, then unblocks it.
        with _sigint_blocked(), _driver_main_skipped():
            self.process.start()
        # The worker holds the other ends: closing ours makes a dead worker an end of file.
        task_out.close()
        event_in.close()
        self.tasks, self.events = task_in, event_out
        self.run_ids: set[str] = set()
        self.closed = False  # its event pipe reached end of file (the process exited or died)
        self.seen = 0  # the progress counter when it last moved
        self.moved_at = time.monotonic()  # when it last moved (or the task was handed over)
        self.started = False  # whether it moved since the current task was handed over

    def handed(self) -> None:
        """A task was just sent: its progress is measured from now."""
        self.seen, self.moved_at, self.started = self.progress.value, time.monotonic(), False

    def drain(self) -> list[ExecutorEvent]:
        """Every complete event waiting in the pipe; marks the slot closed at end of file."""
        events = []
        while not self.closed:
            try:
                if not self.events.poll():
                    break
                events.append(self.events.recv())
            except (EOFError, OSError, ValueError, pickle.UnpicklingError):
                # EOF, or the tail of a message cut short by a kill: nothing more will come.
                self.closed = True
        return events

    def close(self) -> None:
        for conn in (self.tasks, self.events):
            with contextlib.suppress(OSError):
                conn.close()


class LocalExecutor:
    """N long-lived worker processes (forked from a fork server, or spawned), one task each at a
    time."""

    def __init__(self, workers: int, threads: int, stall_timeout_s: float = STALL_TIMEOUT_S):
        # A spawned worker, the fork server and the resource tracker start as ``python -c ...``,
        # and ``-c`` puts the current folder first on sys.path: a ./multiprocessing/ or ./core/
        # there would run. Safe-path mode (Python >= 3.11) leaves it out, in every child of this
        # process.
        os.environ["PYTHONSAFEPATH"] = "1"
        problem = start_method_problem()
        if problem:
            raise ConfigError(problem)
        self.ctx = mp.get_context(start_method())
        if self.ctx.get_start_method() == "forkserver":
            _start_fork_server(self.ctx)
            _IN_USE.add(id(self))
        # A lock-free shared flag: a worker killed while reading it cannot leave a lock held.
        self.stop_flag = self.ctx.RawValue(ctypes.c_bool, False)
        self.threads = threads
        self.stall_timeout_s = stall_timeout_s
        self.longest_gap = 0.0  # between two progress ticks of a task, over every worker
        self.longest_start = 0.0  # from a task's hand-over to its first tick
        self.reasons: dict[str, str] = {}  # run id -> why its worker was killed
        self.checked_at = time.monotonic()  # the last look for stalled workers
        self.slots = [self._new_slot() for _ in range(workers)]

    def _new_slot(self) -> _Slot:
        return _Slot(self.ctx, self.stop_flag, self.threads)

    def free_slots(self) -> int:
        return sum(not slot.run_ids and slot.process.is_alive() for slot in self.slots)

    def submit(self, task: Task) -> None:
        slot = next(slot for slot in self.slots if not slot.run_ids and slot.process.is_alive())
        slot.run_ids = set(task.run_ids)
        slot.handed()
        try:
            slot.tasks.send(task)
        except OSError:
            pass  # the worker died meanwhile: lost_runs reports the task's runs

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        open_slots = [slot for slot in self.slots if not slot.closed]
        ready = mp_connection.wait([slot.events for slot in open_slots], timeout) if open_slots else []
        if not open_slots:
            time.sleep(timeout)
        events = []
        for slot in open_slots:
            if slot.events in ready or not slot.process.is_alive():
                drained = slot.drain()
                if drained:  # a worker blocked on a full pipe ticks nothing: an event is progress
                    slot.moved_at = time.monotonic()
                for event in drained:
                    events.append(event)
                    if isinstance(event, TERMINAL):
                        slot.run_ids.discard(event.run_id)
                if slot.closed and slot.process.is_alive():
                    slot.process.kill()  # its channel is unusable: lost_runs replaces it
        self._kill_stalled()
        return events

    def stall_limit(self, started: bool) -> float:
        """Seconds without progress after which a busy worker is taken for hung."""
        if started:
            return max(self.stall_timeout_s, STALL_FACTOR * self.longest_gap)
        return max(STARTUP_FACTOR * self.stall_timeout_s, STALL_FACTOR * self.longest_start)

    def _kill_stalled(self) -> None:
        """Kill a busy worker whose progress counter has not moved for too long (it may be
        stopped, deadlocked or stuck on a device): lost_runs then requeues its runs."""
        now = time.monotonic()
        away, self.checked_at = now - self.checked_at, now
        for slot in self.slots:
            if not slot.run_ids or slot.closed:
                continue
            if away > self.stall_timeout_s / 2:
                # This driver was busy elsewhere (a long write, a locked database): its workers
                # may have waited for it to read their pipes. Measure again from now.
                slot.seen, slot.moved_at = slot.progress.value, now
                continue
            value = slot.progress.value
            if value != slot.seen:
                gap = now - slot.moved_at
                if slot.started:
                    self.longest_gap = max(self.longest_gap, gap)
                else:
                    self.longest_start = max(self.longest_start, gap)
                slot.seen, slot.moved_at, slot.started = value, now, True
                continue
            silent = now - slot.moved_at
            if silent > self.stall_limit(slot.started) and slot.process.is_alive():
                for run in slot.run_ids:
                    self.reasons[run] = f"it made no progress for {silent:.0f} s (hung or stopped) and was killed"
                slot.process.kill()  # works on a stopped process too; EOF follows

    def lost_reason(self, run_id: str) -> str | None:
        """Why the worker of a run returned by ``lost_runs`` was lost, when the driver knows."""
        return self.reasons.pop(run_id, None)

    def lost_runs(self) -> list[str]:
        """Runs whose worker process died, once its last events were read; the slot gets a fresh
        process."""
        lost = []
        for index, slot in enumerate(self.slots):
            if slot.process.is_alive() or not slot.closed:
                continue  # alive, or its last events are still to be read (and persisted) by poll
            lost.extend(sorted(slot.run_ids))
            slot.process.join(timeout=1)
            slot.close()
            self.slots[index] = self._new_slot()
        return lost

    def request_stop(self) -> None:
        self.stop_flag.value = True

    def shutdown(self, *, kill: bool = False) -> None:
        for slot in self.slots:
            if kill:
                slot.process.kill()
            else:
                with contextlib.suppress(OSError):
                    slot.tasks.send(None)
        for slot in self.slots:
            slot.process.join(timeout=10)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            slot.close()
        _IN_USE.discard(id(self))
