"""The Ray executor: each task trains on a Ray cluster and streams its events back to the driver.

The driver (``core.scheduler.work``) stays the only writer of the database: a remote task hands
every event (each epoch with its checkpoint, then done / failed / interrupted) to a small actor on
the driver's node, the *hub*, and the driver drains the hub in ``poll``. The hub also carries the
stop flag that the remote tasks check between epochs.

Besides the events of ``core.executors.execute_task``, a task emits ``Host(run_id, hostname, pid)``
when it starts on a node (the Ray worker process's pid), and its ``Done`` results carry ``host``.

A task lost with its worker process or its node (or failing outside the training loop) is found
when its object reference resolves with an error, or resolves while some of its runs never sent a
terminal event: ``lost_runs`` returns those runs, and the driver queues them again (they resume
from their last persisted checkpoint) or fails them after its maximum number of attempts.

This is the only module that imports Ray, an optional extra (``pip install -e '.[ray]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import replace

from core.config import ConfigError
from core.execution import EXECUTORS, TERMINAL, Done, ExecutorEvent, Host
from core.executors import Task, execute_task, stop_fork_server

try:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigError(f"--executor ray needs {EXECUTORS['ray'].install}") from exc

CAPACITY_REFRESH_S = 10.0


@ray.remote(num_cpus=0, max_restarts=0)
class _Hub:
    """Buffers the events of every task of one driver; holds its stop flag (an async actor)."""

    def __init__(self) -> None:
        self.events: list[tuple[int, ExecutorEvent]] = []
        self.stop = False
        self.ready: asyncio.Event | None = None

    def _ready(self) -> asyncio.Event:
        if self.ready is None:
            self.ready = asyncio.Event()
        return self.ready

    async def put(self, token: int, event: ExecutorEvent) -> None:
        self.events.append((token, event))
        self._ready().set()

    async def take(self, timeout: float) -> list[tuple[int, ExecutorEvent]]:
        """Every buffered event; waits up to ``timeout`` seconds for one when there is none."""
        ready = self._ready()
        if not self.events and timeout > 0:
            try:
                await asyncio.wait_for(ready.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        events, self.events = self.events, []
        ready.clear()
        return events

    async def set_stop(self) -> None:
        self.stop = True

    async def stopped(self) -> bool:
        return self.stop


def _train(task: Task, hub, token: int, threads: int) -> None:
    """The body of a remote task: train ``task`` and send each event to the hub as it happens."""
    import torch

    torch.set_num_threads(threads)
    host = socket.gethostname()
    if task.device.startswith("cuda"):
        task = replace(task, device="cuda")  # Ray makes the assigned GPU the only visible one

    def emit(event: ExecutorEvent) -> None:
        if isinstance(event, Done):
            event = replace(event, results={**event.results, "host": host})
        ray.get(hub.put.remote(token, event))  # wait: an event is delivered before the next one

    def should_stop() -> bool:
        try:
            return bool(ray.get(hub.stopped.remote()))
        except ray.exceptions.RayError:
            return True  # the driver is gone

    for run_id in task.run_ids:
        emit(Host(run_id, host, os.getpid()))
    execute_task(task, emit, should_stop)


_train_remote = ray.remote(max_retries=0)(_train)


class _Submitted:
    def __init__(self, token: int, task: Task):
        self.token = token
        self.task = task
        self.open: set[str] = set(task.run_ids)  # runs without a terminal event yet


class RayExecutor:
    """Runs tasks on the Ray cluster at ``address`` (``auto`` or HOST:PORT), else on a local instance."""

    def __init__(self, workers: int, threads: int, address: str | None = None):
        stop_fork_server()  # started while the driver checked the device: no local workers here
        self.threads = max(1, threads)
        self.started = False  # whether this executor called ray.init (then it calls ray.shutdown)
        self.local = False  # whether that started a local instance
        self.empty_dir: str | None = None
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
                try:
                    with self._from_an_empty_folder():
                        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
                except (ConnectionError, ValueError, RuntimeError) as exc:
                    hint = "start one with: ray start --head"
                    if address != "auto" and not os.environ.get("RAY_AUTH_MODE"):
                        hint += (
                            "; if it uses token authentication, set RAY_AUTH_MODE=token "
                            "or use --address auto on the head node"
                        )
                    raise ConfigError(
                        f"cannot connect to the Ray cluster at {address!r}: {_first_line(exc)} ({hint})"
                    ) from None
            else:
                with self._from_an_empty_folder(), _loopback_only():
                    ray.init(
                        address="local",
                        num_cpus=max(1, workers) * self.threads,
                        include_dashboard=False,
                        _node_ip_address=LOOPBACK,
                        logging_level=logging.ERROR,
                        log_to_driver=False,
                    )
                self.local = True
            self.started = True
        if not self.local:
            # The plan's threads come from the driver's cores: on a cluster a task takes one CPU
            # (a process per core is what trains these small models fastest), so no task can
            # ask for more CPUs than a node has.
            self.threads = 1
        self.workers = max(1, workers)
        self.gpu_tasks = False
        node = ray.get_runtime_context().get_node_id()
        # ray.remote's stubs type the decorated class as itself, not as the ActorClass it returns
        self.hub = _Hub.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        ).remote()
        self.submitted: dict[ray.ObjectRef, _Submitted] = {}
        self.tokens = itertools.count(1)
        self.dead_tokens: set[int] = set()
        self.lost: list[str] = []
        self.reasons: dict[str, str] = {}
        self._capacity = (0, -CAPACITY_REFRESH_S)  # (tasks at once, when computed)
        self.stopping = False

    # -- the executor interface ----------------------------------------------------------------
    def free_slots(self) -> int:
        # A task whose runs all reported a terminal event is finished for the driver, though its
        # reference may resolve a little later: counting it busy could leave the driver with
        # nothing held and no slot to claim the rest of the queue with.
        busy = sum(1 for submitted in self.submitted.values() if submitted.open)
        return max(0, self.capacity() - busy)

    def capacity(self) -> int:
        """Tasks at once: the workers asked for on a local instance, else the cluster's CPUs;
        at most the GPUs once CUDA tasks are submitted. Counted again every few seconds."""
        if self.local and not self.gpu_tasks:
            return self.workers
        value, when = self._capacity
        now = time.monotonic()
        if now - when >= CAPACITY_REFRESH_S:
            resources = ray.cluster_resources()
            value = self.workers if self.local else int(resources.get("CPU", 0) // self.threads)
            if self.gpu_tasks:
                value = min(value, int(resources.get("GPU", 0)))
            value = max(1, value)
            self._capacity = (value, now)
        return value

    def submit(self, task: Task) -> None:
        gpus = 1 if task.device.startswith("cuda") else 0
        if gpus and not self.gpu_tasks:
            self.gpu_tasks = True
            self._capacity = (0, -CAPACITY_REFRESH_S)  # count GPUs from now on
        token = next(self.tokens)
        ref = _train_remote.options(num_cpus=self.threads, num_gpus=gpus).remote(task, self.hub, token, self.threads)
        self.submitted[ref] = _Submitted(token, task)

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        # Finished tasks first: their events are all in the hub already (emit waits for delivery),
        # so the take below sees every event they sent before they are judged.
        finished: list[ray.ObjectRef] = []
        if self.submitted:
            finished, _ = ray.wait(list(self.submitted), num_returns=len(self.submitted), timeout=0)
        taken: list[tuple[int, ExecutorEvent]] = ray.get(self.hub.take.remote(0 if finished else timeout))
        by_token = {s.token: s for s in self.submitted.values()}
        events = []
        for token, event in taken:
            if token in self.dead_tokens:
                continue  # a late event of a task already declared lost
            owner = by_token.get(token)
            if owner is not None and isinstance(event, TERMINAL):
                owner.open.discard(event.run_id)
            events.append(event)
        for ref in finished:
            self._settle(ref)
        return events

    def lost_runs(self) -> list[str]:
        lost, self.lost = self.lost, []
        return lost

    def lost_reason(self, run_id: str) -> str | None:
        """Why a run returned by ``lost_runs`` was lost (the Ray error), when known."""
        return self.reasons.get(run_id)

    def request_stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.hub.set_stop.remote()

    def shutdown(self, *, kill: bool = False) -> None:
        """Let the tasks return, then drop the hub (a task still running stops at its next epoch:
        its stop check fails). Only a hard stop cancels tasks, and only on a cluster this executor
        did not connect to (``ray.shutdown`` ends the tasks of its own job): Ray's driver aborts
        ("Tried to complete task that was not pending") when a cancel races the task's return."""
        refs = list(self.submitted)
        pending: list[ray.ObjectRef] = []
        if refs:
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=0 if kill else 30)
        if kill and not self.started:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished or already gone
                    pass
        self.submitted.clear()
        try:
            ray.kill(self.hub)
        except Exception:  # noqa: BLE001
            pass
        if self.started:
            ray.shutdown()
        if self.empty_dir:
            shutil.rmtree(self.empty_dir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _from_an_empty_folder(self):
        """``ray.init`` from an empty private folder: Ray puts the driver's current folder on
        every task's ``sys.path`` (and a local instance's processes start there), so a ./core/ or
        ./multiprocessing/ where ``pairs work`` was started would run in the tasks."""
        self.empty_dir = tempfile.mkdtemp(prefix="pairs-ray-")
        here = os.getcwd()
        os.chdir(self.empty_dir)
        try:
            yield
        finally:
            os.chdir(here)

    def _settle(self, ref) -> None:
        """A task's reference resolved: its runs without a terminal event are lost."""
        submitted = self.submitted.pop(ref)
        reason = "its Ray task ended without reporting"
        try:
            ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - worker or node died, or the task raised
            reason = _describe(exc)
        if submitted.open:
            self.dead_tokens.add(submitted.token)
            for run_id in sorted(submitted.open):
                self.reasons[run_id] = reason
                self.lost.append(run_id)


LOOPBACK = "127.0.0.1"
#: Ray's switch for "this node is part of a cluster": off, a node's IP is the loopback address and
#: every process of the instance (GCS, raylet, object manager, workers, runtime-env agent) listens
#: on it only. Read once at import, so ``_loopback_only`` also sets the loaded constant.
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only():
    """Start a local Ray instance that listens on 127.0.0.1 only: Ray has no authentication by
    default, and anyone who reaches its ports can run code. The processes started inside keep
    the setting (they inherit the environment); it is undone for this process afterwards."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_CLUSTER_SWITCH, None)
        else:
            os.environ[_CLUSTER_SWITCH] = saved_env


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once on a HOST:PORT that nothing listens on (Ray would retry it for ever)."""
    if address == "auto":
        try:  # $RAY_ADDRESS, else the cluster `ray start` last started here (maybe long gone)
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except ConnectionError as exc:
            raise ConfigError(
                f"no Ray cluster found for --address auto ({_first_line(exc)}): "
                f"start one with ray start --head, or give --address HOST:PORT"
            ) from None
        except Exception:  # noqa: BLE001 - a Ray without this helper: let ray.init decide
            return
        if not found:
            return
        address = found
    if "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r} ({exc}): start one with ray start --head, or check --address"
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}"[:300]
