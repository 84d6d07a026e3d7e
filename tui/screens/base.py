"""What every main screen shares: a database read in a worker thread, reloaded on change."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.screen import Screen
from textual.worker import get_current_worker

from core.store import StoreError


class PairsScreen(Screen):
    """A main screen: ``query_db`` runs in a worker thread, ``show_data`` on the UI thread.

    The app calls ``reload()`` on the screen in front when the database changes and marks the
    others ``stale``; a stale screen reloads when it comes back to the front.
    """

    stale = True
    #: How many loads were shown (tests wait on it).
    loads = 0

    def query_db(self) -> Any:  # pragma: no cover - every screen overrides it
        """Read what the screen shows (runs in a worker thread)."""
        return None

    def show_data(self, data: Any) -> None:  # pragma: no cover - every screen overrides it
        """Show what ``query_db`` read (runs on the UI thread)."""

    def on_mount(self) -> None:
        self.app.register_screen_for_data(self)

    def on_screen_resume(self) -> None:
        if self.stale:
            self.reload()

    def reload(self) -> None:
        self.stale = False
        self._load()

    @work(thread=True, exclusive=True, group="db-read", exit_on_error=False)
    def _load(self) -> None:
        worker = get_current_worker()
        try:
            data, error = self.query_db(), None
        except StoreError as exc:
            data, error = None, str(exc)
        if worker.is_cancelled:
            return
        try:
            self.app.call_from_thread(self._apply, data, error)
        except RuntimeError:  # the app is shutting down
            pass

    def _apply(self, data: Any, error: str | None) -> None:
        self.app.db_error = error
        if error is None:
            self.show_data(data)
        self.loads += 1
