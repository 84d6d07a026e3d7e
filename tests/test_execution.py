"""The written interface of execution (core/execution.py): events, protocol, registry.

The toy executor below follows docs/architecture.md's "How to add an executor": a class with the
protocol's methods and one ``register`` line; the driver then trains a grid with it.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from core import execution
from core.api import queue, work
from core.config import ConfigError
from core.execution import (
    Done,
    Epoch,
    Executor,
    ExecutorSpec,
    Failed,
    Followed,
    Following,
    Host,
    Interrupted,
    Lost,
    Restarted,
    Started,
    check_executor,
    register,
)
from core.executors import LocalExecutor, execute_task
from tests.conftest import tiny


class InlineExecutor:
    """Trains each task at once, in this process, when it is submitted."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.events, self.stop = workers, [], False

    def free_slots(self) -> int:
        return 1

    def submit(self, task) -> None:
        execute_task(task, self.events.append, lambda: self.stop)

    def poll(self, timeout: float):
        events, self.events = self.events, []
        return events

    def lost_runs(self) -> list[str]:
        return []

    def lost_reason(self, run_id: str) -> str | None:
        return None

    def request_stop(self) -> None:
        self.stop = True

    def shutdown(self, *, kill: bool = False) -> None:
        self.stop = True


@pytest.fixture
def inline():
    register(ExecutorSpec("inline", InlineExecutor, "in this process"))
    yield
    del execution.EXECUTORS["inline"]


def test_a_registered_executor_trains_a_grid(store, inline):
    queue(store, [tiny(), tiny(structure="independent")], 2)
    events = []
    summary = work(store, executor="inline", on_event=events.append)
    assert (summary.done, summary.failed) == (4, 0)
    assert store.status_counts() == {"queued": 0, "running": 0, "done": 4, "failed": 0}
    assert sum(isinstance(e, Started) for e in events) == 4
    assert sum(isinstance(e, Done) for e in events) == 4
    epochs = [e for e in events if isinstance(e, Epoch)]
    assert len(epochs) == 8 and all(e.checkpoint is None for e in epochs)  # persisted, not kept


def test_the_registry_checks_names_options_and_dependencies(store, inline, monkeypatch):
    queue(store, [tiny()], 1)
    with pytest.raises(ConfigError, match="unknown executor 'dask': choose one of local, ray, inline"):
        work(store, executor="dask")
    with pytest.raises(ConfigError, match="^--address is for --executor ray$"):
        work(store, executor="inline", address="auto")
    monkeypatch.setitem(
        execution.EXECUTORS,
        "inline",
        ExecutorSpec(
            "inline",
            InlineExecutor,
            "in this process",
            requires="no_such_module_here",
            install="it: pip install no-such-module-here",
        ),
    )
    with pytest.raises(ConfigError, match="^--executor inline needs it: pip install no-such-module-here$"):
        work(store, executor="inline")
    assert store.status_counts()["queued"] == 1  # nothing was claimed
    assert check_executor("local").load() is LocalExecutor


def test_the_executors_implement_the_protocol():
    assert isinstance(InlineExecutor(1, 1), Executor)
    pool = LocalExecutor.__new__(LocalExecutor)  # the methods only: no worker processes
    assert isinstance(pool, Executor)


def test_every_event_survives_pickling():
    events = [
        Epoch("r", {"epoch": 1}, b"state"),
        Done("r", {"test_acc": 0.5}),
        Failed("r", "why"),
        Interrupted("r"),
        Restarted("r", "unreadable", 2),
        Host("r", "node", 7),
        Started("r", tiny(), 0),
        Lost("r", "hung"),
        Following(2, ("a", "b")),
        Followed("r", "epoch", 3),
    ]
    for event in events:
        assert pickle.loads(pickle.dumps(event)) == event


@pytest.mark.slow
def test_the_cli_choices_come_from_the_registry():
    code = (
        "import core.execution as e; e.register(e.ExecutorSpec('toy', 'x:Y', 'a toy one')); "
        "from typer.testing import CliRunner; from tui.cli import app; "
        "print(CliRunner().invoke(app, ['work', '--help']).output)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    ).stdout
    assert "local|ray|toy" in out and "toy (a toy one)" in out


@pytest.mark.slow
def test_the_interface_imports_no_executor():
    code = "import sys, core.execution; print(' '.join(sys.modules))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert not loaded & {"core.executors", "core.ray_executor", "ray", "torch"}


def test_a_task_on_auto_trains_on_the_device_found_where_it_runs():
    """``auto`` reaches the worker unresolved (the driver need not import torch for it); the
    run records the device it trained on, and plain strings (unpickling torch's version type
    would import torch in the driver)."""
    from core.executors import Task
    from core.train import resolve_device

    events: list = []
    execute_task(Task(tiny(), (("run-a", 0, None),), "auto", None), events.append, lambda: False)
    done = [event for event in events if isinstance(event, Done)]
    assert [event.run_id for event in done] == ["run-a"]
    assert done[0].results["device"] == resolve_device("auto")
    assert type(done[0].results["torch_version"]) is str
    assert type(done[0].results["device"]) is str
