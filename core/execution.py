"""The written interface of execution: the ``Executor`` protocol, the events, the registry.

The driver (``core.scheduler.work``) claims runs, hands them to an executor as tasks
(``core.executors.Task``), and persists the events the executor hands back; it alone writes the
database. An executor trains each task somewhere (worker processes, a Ray cluster) with
``core.executors.execute_task``, which reports every run's progress as the events below.

This module imports no executor (and no torch): the events travel between processes (spawn
pipes, Ray), so each is a frozen dataclass defined here, picklable anywhere ``core`` imports.

Adding an executor: a class with the methods of ``Executor`` whose constructor takes
``(workers, threads, **options)``, and one ``ExecutorSpec`` line in ``EXECUTORS`` (or a call to
``register``). The CLI's ``--executor`` choices and every check come from the registry.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from core.config import ConfigError

# -- the events an executor hands back (one run each) ---------------------------------------------


@dataclass(frozen=True)
class Epoch:
    """A run finished an epoch: its metrics row and the checkpoint to resume from.

    The driver persists both in one transaction, then reports the event without the checkpoint."""

    run_id: str
    metrics: dict[str, Any]
    checkpoint: bytes | None = None


@dataclass(frozen=True)
class Done:
    """A run finished: its test metrics and provenance (seconds, device, versions, host)."""

    run_id: str
    results: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """A run failed (it diverged, or its training raised): it is not tried again."""

    run_id: str
    error: str


@dataclass(frozen=True)
class Interrupted:
    """A run stopped on request after its last saved epoch: it goes back to the queue."""

    run_id: str


@dataclass(frozen=True)
class Restarted:
    """A run's checkpoint cannot resume it (damaged, of another model): it trains from epoch 0.

    ``epochs_lost`` is filled in by the driver: the epoch rows it deleted (to train again)."""

    run_id: str
    reason: str
    epochs_lost: int = 0


@dataclass(frozen=True)
class Host:
    """Where a remote executor trains a run (the hostname and the worker process's pid)."""

    run_id: str
    host: str
    pid: int


#: What an executor's ``poll`` returns.
ExecutorEvent = Epoch | Done | Failed | Interrupted | Restarted | Host
#: The events after which a run is no longer the executor's.
TERMINAL: tuple[type, ...] = (Done, Failed, Interrupted)


# -- the events only the driver reports (to ``work``'s ``on_event``) ---------------------------


@dataclass(frozen=True)
class Started:
    """The driver claimed a run and handed it to its executor."""

    run_id: str
    config: Any  # core.config.RunConfig
    rep: int


@dataclass(frozen=True)
class Lost:
    """A run's worker (process, Ray task or node) was lost: the run is queued again, or failed
    after the maximum number of attempts. ``reason`` says why, when the executor knows."""

    run_id: str
    reason: str | None = None


@dataclass(frozen=True)
class Following:
    """Runs asked for that other drivers hold (``work(follow=True)``): they are followed."""

    count: int
    holders: tuple[str, ...]


@dataclass(frozen=True)
class Followed:
    """What a run another driver holds did: a new ``epoch`` (detail: its number), ``done``
    (detail: the driver that trained it) or ``failed`` (detail: the error)."""

    run_id: str
    what: Literal["epoch", "done", "failed"]
    detail: Any


#: What ``work``'s ``on_event`` receives: the executor's events (an ``Epoch`` without its
#: checkpoint) and the driver's own.
Event = ExecutorEvent | Started | Lost | Following | Followed


# -- the protocol ---------------------------------------------------------------------------------


@runtime_checkable
class Executor(Protocol):
    """What the driver calls, in this order: ``free_slots``/``submit`` while it has room,
    ``poll`` for events, ``lost_runs`` (then ``lost_reason``) for runs whose worker was lost;
    ``request_stop`` on a first stop signal, ``shutdown`` at the end (``kill`` on a hard stop)."""

    def free_slots(self) -> int:
        """How many more tasks ``submit`` takes now."""
        ...

    def submit(self, task: Any) -> None:
        """Start training ``task`` (a ``core.executors.Task``) with ``execute_task``."""
        ...

    def poll(self, timeout: float) -> Sequence[ExecutorEvent]:
        """The events that came, waiting up to ``timeout`` seconds for one. Every run of a task
        ends with one terminal event (``TERMINAL``), unless its worker is lost."""
        ...

    def lost_runs(self) -> list[str]:
        """Runs whose worker was lost since the last call, once their last events were polled."""
        ...

    def lost_reason(self, run_id: str) -> str | None:
        """Why a run returned by ``lost_runs`` was lost, when known."""
        ...

    def request_stop(self) -> None:
        """Ask every task to stop after its current epoch (then it reports ``Interrupted``)."""
        ...

    def shutdown(self, *, kill: bool = False) -> None:
        """Release the workers (``kill``: at once, without waiting for their tasks)."""
        ...


# -- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor by name: how to make it (imported only then) and what it needs."""

    name: str
    #: ``"module:attribute"`` (imported when an executor is made) or a callable, called as
    #: ``factory(workers, threads, **options)`` and returning an ``Executor``
    factory: str | Callable[..., Executor]
    #: what it is, for ``--executor``'s help
    help: str
    #: the keyword options its factory takes, of those ``work`` has: ``address``, ``stall_timeout_s``
    options: frozenset[str] = field(default_factory=frozenset)
    #: a module that must be importable (an optional extra), and what to install for it
    requires: str | None = None
    install: str = ""

    def missing(self) -> str | None:
        """The one-line error when its optional dependency is not installed, else None."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"--executor {self.name} needs {self.install}"
        return None

    def load(self) -> Callable[..., Executor]:
        if callable(self.factory):
            return self.factory
        module, _, attribute = self.factory.partition(":")
        return getattr(importlib.import_module(module), attribute)


EXECUTORS: dict[str, ExecutorSpec] = {}


def register(spec: ExecutorSpec) -> ExecutorSpec:
    """Add (or replace) an executor; the CLI's choices are read when ``tui.cli`` is imported."""
    EXECUTORS[spec.name] = spec
    return spec


register(ExecutorSpec("local", "core.executors:LocalExecutor", "worker processes here", frozenset({"stall_timeout_s"})))
register(
    ExecutorSpec(
        "ray",
        "core.ray_executor:RayExecutor",
        "tasks on a Ray cluster; needs the ray extra",
        frozenset({"address"}),
        requires="ray",
        install="Ray: pip install -e '.[ray]'",
    )
)


def executor_names() -> list[str]:
    return list(EXECUTORS)


def check_executor(name: str, **options: object) -> ExecutorSpec:
    """The executor called ``name``, checked: it exists, it takes the options given (not None),
    its optional dependency is installed. Raises ConfigError (one line) otherwise."""
    spec = EXECUTORS.get(name)
    if spec is None:
        raise ConfigError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    for option, value in options.items():
        if value is not None and option not in spec.options:
            takers = [s.name for s in EXECUTORS.values() if option in s.options]
            flag = "--" + option.removesuffix("_s").replace("_", "-")
            raise ConfigError(
                f"{flag} is for --executor {' or '.join(takers)}"
                if takers
                else f"{flag} is not an option of any executor"
            )
    problem = spec.missing()
    if problem:
        raise ConfigError(problem)
    return spec


def make_executor(name: str, workers: int, threads: int, **options: object) -> Executor:
    """A new executor called ``name`` with ``workers`` tasks at once of ``threads`` torch threads
    each; of ``options``, those it takes (``ExecutorSpec.options``) are passed on."""
    spec = check_executor(name)
    taken = {key: value for key, value in options.items() if key in spec.options and value is not None}
    return spec.load()(workers, threads, **taken)
