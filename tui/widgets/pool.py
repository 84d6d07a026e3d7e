"""Local workers: ``pairs work`` in a subprocess started and stopped from the app.

Training never happens in the UI process. The subprocess runs in its own session, so it
outlives the app when the user chooses to keep it running, and a stop is SIGINT: the driver
finishes the current epochs, puts unfinished runs back in the queue and exits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Input, Label, Static

from core.config import MAX_WORKERS

#: What an exit status of ``pairs work`` means.
EXIT_MEANINGS = {
    0: "finished: nothing left in the queue",
    1: "finished; some runs failed (see the failures below)",
    2: "refused to start",
    130: "stopped: unfinished runs are back in the queue",
}


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def work_command(db_path: Path, workers: int) -> list[str]:
    """``python -P -m tui.cli work`` with this interpreter (the ``pairs`` script as a fallback).

    ``-P`` (safe path): ``-m`` would otherwise put the current folder first on ``sys.path``, and a
    ``./tui/cli.py`` or ``./core/`` there would run instead of the installed project."""
    args = ["work", "--workers", str(workers), "--db", str(Path(db_path).absolute())]
    if sys.executable:
        return [sys.executable, "-P", "-m", "tui.cli", *args]
    script = shutil.which("pairs")
    if script is None:
        raise RuntimeError("cannot find the Python interpreter or the pairs command")
    return [script, *args]


def safe_env() -> dict[str, str]:
    """This environment with PYTHONSAFEPATH=1: no Python child of the subprocess (the spawned
    workers) puts the current folder on ``sys.path`` either."""
    return {**os.environ, "PYTHONSAFEPATH": "1"}


class WorkerPool:
    """One ``pairs work`` subprocess at a time."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.process: subprocess.Popen | None = None
        self.workers = 0
        self.started_at: float | None = None
        self.stopping = False
        self.log_path = self.db_path.with_name(f"{self.db_path.name}.work.log")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, workers: int) -> subprocess.Popen:
        if self.running:
            raise RuntimeError(f"workers are already running (pid {self.pid})")
        if workers < 1:
            raise ValueError("the number of workers must be at least 1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.ctime()}: {workers} worker(s)\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                work_command(self.db_path, workers),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=os.getcwd(),
                env=safe_env(),
            )
        self.workers = workers
        self.started_at = time.time()
        self.stopping = False
        return self.process

    def stop(self) -> bool:
        """SIGINT: finish the current epoch, requeue unfinished runs, exit. False if none ran."""
        if not self.running:
            return False
        self.process.send_signal(signal.SIGINT)
        self.stopping = True
        return True

    def poll(self) -> int | None:
        """The exit status once the subprocess has ended (then forgets it), else None."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is not None:
            self.process = None
            self.stopping = False
        return code

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def detach(self) -> None:
        """Leave the subprocess running after the app exits."""
        self.process = None


class PoolPanel(Horizontal):
    """Start/stop controls and the state of the worker pool."""

    class StartRequested(Message):
        def __init__(self, workers: int) -> None:
            super().__init__()
            self.workers = workers

    class StopRequested(Message):
        pass

    def __init__(self, workers: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.initial_workers = workers

    def compose(self) -> ComposeResult:
        yield Label("Workers", classes="pool-title")
        yield Input(
            str(self.initial_workers),
            type="integer",
            id="pool-n",
            compact=True,
            tooltip="How many worker processes to start",
        )
        yield Button("Start", id="pool-start", variant="success", compact=True)
        yield Button("Stop", id="pool-stop", variant="error", compact=True, disabled=True)
        yield Static("", id="pool-state")

    @property
    def requested_workers(self) -> int | None:
        text = self.query_one("#pool-n", Input).value.strip()
        try:
            n = int(text)
        except ValueError:
            return None
        return n if 1 <= n <= MAX_WORKERS else None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "pool-start":
            n = self.requested_workers
            if n is None:
                self.query_one("#pool-n", Input).add_class("-invalid")
                self.app.notify(f"workers: enter a whole number from 1 to {MAX_WORKERS}", severity="error")
                return
            self.query_one("#pool-n", Input).remove_class("-invalid")
            self.post_message(self.StartRequested(n))
        elif event.button.id == "pool-stop":
            self.post_message(self.StopRequested())

    def show(self, pool: WorkerPool, running_runs: int, queued_runs: int) -> None:
        """Update the buttons and the state line."""
        self.query_one("#pool-start", Button).disabled = pool.running
        self.query_one("#pool-stop", Button).disabled = not pool.running or pool.stopping
        if pool.running and pool.stopping:
            state = f"stopping after the current epoch (pid {pool.pid})"
        elif pool.running:
            state = f"{pool.workers} running here (pid {pool.pid})"
        else:
            state = "none here"
        self.query_one("#pool-state", Static).update(f"{state} · {running_runs} run(s) training, {queued_runs} queued")
