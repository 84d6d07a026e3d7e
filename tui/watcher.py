"""The one long-lived poller: notices new rows written by any process and tells the app.

It holds its own connection and reads ``PRAGMA data_version`` (through ``Store.data_version``)
every ``interval`` seconds: the number changes whenever another connection commits, so the
poll costs one tiny query and no table reads. It also checks that the path still names the
file it opened (device + inode): a file deleted or replaced posts ``DbGone``. Changes are
coalesced: while the app has not yet handled the last ``DataChanged`` message, further changes
only mark the watcher dirty and lead to one more message once the app acknowledges.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from textual.message import Message

POLL_INTERVAL_S = 0.3
REOPEN_INTERVAL_S = 1.0


class DataChanged(Message):
    """The database changed (or became available); readers should reload what they show."""

    def __init__(self, version: int) -> None:
        super().__init__()
        self.version = version


class DbGone(Message):
    """The file the watcher had open was deleted or replaced (``core.store.DatabaseGone``)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class DbWatcher:
    """Polls one database file for commits by any connection; posts coalesced messages.

    ``post`` is called from the watcher's thread with a ``DataChanged`` (``App.post_message``
    is thread-safe). Call ``ack()`` once the message has been handled, ``stop()`` to end
    ``run()``.
    """

    def __init__(self, path: Path, post: Callable[[Message], object], interval: float = POLL_INTERVAL_S) -> None:
        self.path = Path(path)
        self.post = post
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending = False
        self._dirty = False
        self._store = None
        self._version: int | None = None
        self.posted = 0

    # -- control (any thread) ----------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def ack(self) -> None:
        """The last message was handled: the next change may post again."""
        with self._lock:
            self._pending = False
        self._flush()

    def poke(self) -> None:
        """Force a message at the next poll (e.g. after the app opened or created the file)."""
        with self._lock:
            self._dirty = True

    # -- the loop (the watcher's thread) -----------------------------------------------------
    def run(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Poll until ``stop()`` (or until ``cancelled()`` turns true)."""
        try:
            while not self._stop.is_set() and not cancelled():
                wait = self.interval if self._poll() else REOPEN_INTERVAL_S
                self._stop.wait(wait)
        finally:
            self._close()

    def _poll(self) -> bool:
        """One poll; False when the database cannot be opened (yet)."""
        if self._store is None and not self._open():
            return False
        from core.store import DatabaseGone

        try:
            version = self._store.data_version()
        except DatabaseGone as exc:  # deleted or replaced: let go of it, say so, wait for a file
            self._close()
            self._version = None
            self.post(DbGone(str(exc)))
            return False
        except sqlite3.Error:
            self._close()
            return False
        if version != self._version:
            self._version = version
            with self._lock:
                self._dirty = True
        self._flush()
        return True

    def _open(self) -> bool:
        if not self.path.is_file():
            return False
        from core.api import USER_ERRORS, open_store

        try:
            self._store = open_store(self.path, create=False)
        except USER_ERRORS:
            return False
        except sqlite3.Error:
            return False
        with self._lock:
            self._dirty = True  # it just appeared (or came back): everyone reloads
        return True

    def _flush(self) -> None:
        with self._lock:
            if not self._dirty or self._pending or self._stop.is_set():
                return
            self._dirty = False
            self._pending = True
            self.posted += 1
            version = self._version or 0
        self.post(DataChanged(version))

    def _close(self) -> None:
        self._store = close_quietly(self._store)


def close_quietly(store) -> None:
    """Close a Store (if any) whatever state its connection is in; returns None."""
    if store is not None:
        try:
            store.close()
        except sqlite3.Error:
            pass
