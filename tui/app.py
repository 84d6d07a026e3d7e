"""``pairs-tui``: the Textual console over the pairs database.

Queue configurations, start and stop local workers (``pairs work`` in a subprocess), watch the
curves live and read the paper's tables. The UI process never trains and never imports torch:
database reads run in worker threads, one long-lived watcher notices new rows.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import get_current_worker

from core import __version__, api
from core.config import MAX_WORKERS
from core.store import DatabaseGone, StoreError, resolve_db_path
from tui.literal import clean, clean_block
from tui.screens.base import PairsScreen
from tui.screens.experiments import ExperimentsScreen
from tui.screens.queue import QueueScreen
from tui.watcher import POLL_INTERVAL_S, DataChanged, DbGone, DbWatcher, close_quietly
from tui.widgets.pool import EXIT_MEANINGS, WorkerPool, default_workers

T = TypeVar("T")

MISSING = (
    "No database at {path} yet: queue runs on the Queue screen (2) to create it, "
    "or restart with --db PATH (or set PAIRS_DB)."
)


GONE = (
    "{path} was deleted while the console had it open: nothing more is written or queued; "
    "restore it (the console reads it again), or restart pairs-tui to start a new one there."
)


class Database:
    """The app's own connection, opened lazily (in a worker thread) and used under one lock.

    The watcher has a separate connection: ``PRAGMA data_version`` only moves for commits of
    *other* connections, so it sees this one's writes too.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._store = None
        self._lock = threading.Lock()
        #: The file it had open was deleted or replaced (see ``core.store.DatabaseGone``).
        self.gone = False

    def exists(self) -> bool:
        return self.path.exists()

    def read(self, fn: Callable[[Any], T]) -> T:
        """``fn(store)`` on an existing database; StoreError says why it cannot be used."""
        return self._use(fn, create=False)

    def write(self, fn: Callable[[Any], T]) -> T:
        """``fn(store)``, creating the database if it does not exist yet."""
        return self._use(fn, create=True)

    def _use(self, fn: Callable[[Any], T], *, create: bool) -> T:
        with self._lock:
            if self._store is not None:
                try:
                    self._store.check_same_file()
                except DatabaseGone:
                    self._close()
                    self.gone = True
            if self._store is None:
                if self.gone and not self.path.exists():
                    # Never create a new file in its place behind the user's back.
                    raise StoreError(GONE.format(path=self.path))
                if not create and not self.path.exists():
                    raise StoreError(MISSING.format(path=self.path))
                self._store = api.open_store(self.path, create=create)
                self.gone = False
            try:
                return fn(self._store)
            except DatabaseGone:  # found by a write (e.g. overwritten in place): read anew next
                self._close()
                self.gone = True
                raise
            except sqlite3.Error as exc:
                self._close()
                raise StoreError(f"{self.path} cannot be read ({exc}): check the file or choose another --db") from None

    def _close(self) -> None:
        self._store = close_quietly(self._store)

    def let_go(self) -> None:
        """The file was deleted or replaced (the watcher saw it): close, and refuse to create a
        new one in its place until a file is there again."""
        with self._lock:
            self._close()
            self.gone = True

    def close(self) -> None:
        with self._lock:
            self._close()


def _plots_screen() -> Screen:
    from tui.screens.plots import PlotsScreen  # textual-plotext loads on first visit

    return PlotsScreen()


def _compare_screen() -> Screen:
    from tui.screens.compare import CompareScreen

    return CompareScreen()


def _tables_screen() -> Screen:
    from tui.screens.tables import TablesScreen

    return TablesScreen()


class PairsApp(App[None]):
    """The pairs console. Build it with ``make_app``."""

    CSS_PATH = "app.tcss"
    TITLE = "pairs"
    MODES = {
        "experiments": ExperimentsScreen,
        "queue": QueueScreen,
        "plots": _plots_screen,
        "tables": _tables_screen,
        "compare": _compare_screen,
    }
    DEFAULT_MODE = "experiments"
    BINDINGS = [
        Binding("1", "switch_mode('experiments')", "Runs"),
        Binding("2", "switch_mode('queue')", "Queue"),
        Binding("3", "switch_mode('plots')", "Plots"),
        Binding("4", "switch_mode('tables')", "Tables"),
        Binding("5", "switch_mode('compare')", "Compare", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("d", "toggle_dark", "Theme", show=False),
        Binding("q", "quit", "Quit"),
    ]

    #: The configuration the Plots screen shows (the Experiments cursor sets it).
    selected_config: reactive[str | None] = reactive(None)
    #: Why the database cannot be used right now (shown in a banner), or None.
    db_error: reactive[str | None] = reactive(None)

    def __init__(self, db_path: Path, *, workers: int | None = None, poll_interval: float = POLL_INTERVAL_S) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.db = Database(self.db_path)
        self.pool = WorkerPool(self.db_path)
        self.default_workers = workers or default_workers()
        self.watcher = DbWatcher(self.db_path, self.post_message, poll_interval)
        self._data_screens: list[PairsScreen] = []
        #: Configurations marked on the Experiments screen (Space), in marking order: Compare's.
        self.marked_configs: list[str] = []
        self.sub_title = clean(self.db_path)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.run_worker(self._watch, thread=True, group="watcher", name="db-watcher", exit_on_error=False)
        self.set_interval(0.5, self.check_pool)

    def _watch(self) -> None:
        worker = get_current_worker()
        self.watcher.run(cancelled=lambda: worker.is_cancelled)

    def on_unmount(self) -> None:
        self.watcher.stop()
        self.db.close()

    def register_screen_for_data(self, screen: PairsScreen) -> None:
        self._data_screens.append(screen)

    def on_data_changed(self, message: DataChanged) -> None:
        """Reload the screen in front; the others reload when they come back."""
        self.watcher.ack()
        for screen in self._data_screens:
            if screen is self.screen:
                screen.reload()
            else:
                screen.stale = True

    def on_db_gone(self, message: DbGone) -> None:
        """The file was deleted or replaced under the console: let go of it and say so."""
        self.db.let_go()
        if self.db.path.exists():  # replaced: read the new file
            self.notify(message.error, title="Database", severity="warning", markup=False)
        else:
            self.db_error = GONE.format(path=self.db_path)
        for screen in self._data_screens:
            screen.stale = True

    def data_written(self) -> None:
        """This process wrote: the watcher's next poll posts a change even if it missed it."""
        self.watcher.poke()

    # -- workers -----------------------------------------------------------------------------
    def start_workers(self, workers: int) -> None:
        if self.pool.running:
            self.notify(f"workers are already running (pid {self.pool.pid})", severity="warning")
            return
        if not self.db.exists():
            self.notify("nothing to train: queue runs first (2)", severity="warning")
            return
        if self.db_error:  # the workers would only exit on it: say it here
            self.notify(clean_block(f"cannot start workers: {self.db_error}"), severity="error", markup=False)
            return
        try:
            process = self.pool.start(workers)
        except (OSError, RuntimeError, ValueError) as exc:
            self.notify(clean(f"cannot start workers: {exc}"), severity="error", markup=False)
            return
        self.notify(
            clean(f"started {workers} worker(s): pairs work, pid {process.pid}; log in {self.pool.log_path.name}"),
            title="Workers",
            markup=False,
        )
        self.refresh_pool()

    def stop_workers(self) -> None:
        if self.pool.stop():
            self.notify("stopping after the current epoch; unfinished runs go back to the queue", title="Workers")
        else:
            self.notify("no workers started here are running", severity="warning")
        self.refresh_pool()

    def check_pool(self) -> None:
        code = self.pool.poll()
        if code is not None:
            meaning = EXIT_MEANINGS.get(code, f"exited with status {code}")
            detail = self.pool.last_log_line() if code not in (0, 130) else ""
            self.notify(
                clean(f"workers {meaning}" + (f": {detail}" if detail else "")),
                title="Workers",
                severity="information" if code in (0, 130) else "error",
                timeout=10,
                markup=False,
            )
            self.refresh_pool()

    def refresh_pool(self) -> None:
        for screen in self._data_screens:
            if isinstance(screen, ExperimentsScreen):
                screen.show_pool()

    def retry_failed(self) -> None:
        self.run_worker(self._retry_failed, thread=True, group="retry", exit_on_error=False)

    def _retry_failed(self) -> None:
        try:
            n = self.db.write(lambda s: s.retry_failed())
        except StoreError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.call_from_thread(self.notify, f"queued {n} failed run(s) again")

    # -- actions -----------------------------------------------------------------------------
    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    async def action_quit(self) -> None:
        if not self.pool.running:
            self.exit()
            return
        from tui.screens.dialogs import QuitScreen

        self.push_screen(QuitScreen(f"{self.pool.workers} started here, pid {self.pool.pid}"), self._quit_with)

    def _quit_with(self, choice: str | None) -> None:
        if choice == "stop":
            self.pool.stop()
        elif choice == "keep":
            self.pool.detach()
        else:
            return
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, title in (
            ("experiments", "Experiments"),
            ("queue", "Queue"),
            ("plots", "Plots"),
            ("tables", "Tables"),
            ("compare", "Compare"),
        ):
            yield SystemCommand(
                f"Go to {title}", f"Switch to the {title} screen", lambda mode=mode: self.switch_mode(mode)
            )
        yield SystemCommand("Help", "Screens and keys", self.action_help)
        yield SystemCommand("Dark / light", "Toggle the dark and light themes", self.action_toggle_dark)
        yield SystemCommand(
            "Start workers",
            "pairs work in a subprocess, as many as chosen",
            lambda: self.start_workers(self.default_workers),
        )
        yield SystemCommand("Stop workers", "After the current epoch; runs go back to the queue", self.stop_workers)
        yield SystemCommand("Retry failed runs", "Queue every failed run again", self.retry_failed)
        yield SystemCommand("Paper grid", "Queue form with the paper's 3 x 6 x 2 grid", self._paper_preset)
        if screen.id == "tables":
            for fmt in ("markdown", "latex", "csv"):
                yield SystemCommand(
                    f"Export {fmt}", f"Write the table on screen as {fmt}", lambda fmt=fmt: screen.action_export(fmt)
                )

    async def _paper_preset(self) -> None:
        await self.switch_mode("queue")
        self.screen.action_paper_preset()


def make_app(
    db_path: str | Path | None = None, *, workers: int | None = None, poll_interval: float = POLL_INTERVAL_S
) -> PairsApp:
    """The app for ``--db`` (``$PAIRS_DB``, then ``./runs.db``); used by ``main`` and tests."""
    return PairsApp(resolve_db_path(db_path), workers=workers, poll_interval=poll_interval)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="pairs-tui",
        description="Terminal console of the pairs study: queue configurations, start workers, "
        "watch live curves, browse the mean ± std tables.",
    )
    parser.add_argument("--db", metavar="PATH", help="SQLite database (default: $PAIRS_DB, else ./runs.db)")
    parser.add_argument(
        "--workers", type=int, metavar="N", help="worker processes the Start button proposes (default: CPU cores)"
    )
    parser.add_argument("--version", action="version", version=f"pairs-tui {__version__}")
    args = parser.parse_args(argv)
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be from 1 to {MAX_WORKERS}")
    make_app(args.db, workers=args.workers).run()


if __name__ == "__main__":
    main()
