"""Opening a database: its path, the connection, the checks on open, the write transaction and
the file's identity (``DatabaseGone`` when the path names another file than the one opened)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from core.store import schema, validate
from core.store._sqlite_utils import sqlite_utils
from core.store.busy import _retry_locked
from core.store.errors import (
    DatabaseGone,
    DatabaseUnusable,
    StoreError,
    _explain,
    _fatal,
    _path_problem,
)

BUSY_TIMEOUT_MS = 30_000
DEFAULT_DB = "runs.db"


def resolve_db_path(path: str | os.PathLike | None = None) -> Path:
    """``--db`` if given, else ``$PAIRS_DB``, else ``./runs.db``."""
    return Path(path or os.environ.get("PAIRS_DB") or DEFAULT_DB)


class _Database(sqlite_utils.Database):
    """sqlite-utils' Database whose SQLite failures on a broken file are one-line StoreErrors."""

    path: Path

    def execute(self, sql, parameters=None):
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            if _fatal(exc):
                raise DatabaseUnusable(_explain(self.path, exc)) from None
            raise

    def query(self, sql, params=None):
        try:
            rows = super().query(sql, params)
        except sqlite3.DatabaseError as exc:
            if _fatal(exc):
                raise DatabaseUnusable(_explain(self.path, exc)) from None
            raise
        return self._guarded(rows)

    def _guarded(self, rows):
        try:
            yield from rows
        except sqlite3.DatabaseError as exc:
            if _fatal(exc):
                raise DatabaseUnusable(_explain(self.path, exc)) from None
            raise


class Connection:
    """A validated, migrated connection to one pairs database (the base of ``Store``)."""

    db: _Database
    _identity: tuple[int, int] | None

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True):
        self.path = resolve_db_path(path)
        _check_file(self.path, create=create)
        conn = None
        try:
            if not create and _read_only_copy(self.path):
                # A database in a read-only folder (a shipped result, a read-only mount) that no
                # one has open: SQLite cannot create its -wal/-shm there, so read it as immutable.
                conn = sqlite3.connect(
                    f"file:{urllib.parse.quote(str(self.path.resolve()))}?immutable=1",
                    uri=True,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            self.db = _Database(conn)
            self.db.path = self.path
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._identity = _file_identity(self.path)
            self._prepare(create)
        except BaseException as exc:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, StoreError):
                raise StoreError(_explain(self.path, exc)) from None
            raise

    def _prepare(self, create: bool) -> None:
        validate.check_integrity(self.db, self.path)
        version = self.schema_version()
        if version is None:
            if not create:
                if self.db.table_names():  # queuing would refuse it too: advise what works
                    raise StoreError(
                        f"{self.path} is an SQLite file of another program, not a pairs "
                        "database (no meta table): choose another --db (a new path starts a "
                        "new database)"
                    )
                raise StoreError(
                    f"{self.path} is not a pairs database (no meta table): "
                    "pass the --db of one made by pairs, or queue runs to start one"
                )
            if self.db.table_names():
                raise StoreError(f"{self.path} is an SQLite file of another program: choose a new path with --db")
            self.db.enable_wal()
            with self.transaction():
                # Another process may have created it since the check above (under no lock).
                if self.schema_version() is None:
                    schema.create_schema(self.db)
            return
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this pairs "
                f"understands ({schema.SCHEMA_VERSION}): upgrade pairs (pip install -U pairs)"
            )
        validate.check_tables(self.db, self.path)
        if version < schema.SCHEMA_VERSION:
            self._migrate(version)
        validate.check_rows(self.db, self.path)
        if create and self.db.journal_mode != "wal":
            self.db.enable_wal()
        self._opened_existing()

    def _opened_existing(self) -> None:
        """Called once an existing database is validated (the run lifecycle requeues there the
        runs of dead local drivers)."""

    def schema_version(self) -> int | None:
        return schema.schema_version(self.db, self.path)

    def _migrate(self, version: int) -> None:
        """Upgrade an older schema in place, after a backup copy beside the file."""
        schema.check_upgradable(self.path, version)
        backup = self.path.with_name(f"{self.path.name}.v{version}.bak")
        try:
            target = sqlite3.connect(str(backup))
            try:
                self.db.conn.backup(target)
            finally:
                target.close()
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path} needs an upgrade from schema version {version} but its backup "
                f"{backup} cannot be written ({exc}): make its folder writable"
            ) from None
        with self.transaction():
            schema.upgrade(self.db, self.path, version)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Database]:
        """A short write transaction that takes the write lock first (``BEGIN IMMEDIATE``).

        Waiting for the lock (the busy timeout, then retries with backoff) happens before any
        statement, so the body never meets a lock. The store's own writes are additionally
        retried as a whole (see ``busy.retrying``).
        """
        _retry_locked(lambda: self.db.execute("BEGIN IMMEDIATE"))
        try:
            self.check_same_file()
            counted = self._check_write_count()
            changes = self.db.conn.total_changes
            yield self.db
            if counted and self.db.conn.total_changes != changes:  # a no-op changes nothing
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('writes', '1') ON CONFLICT (key) "
                    "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.db.rollback()
            raise
        try:
            _retry_locked(lambda: self.db.execute("COMMIT"))
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.db.rollback()
            raise

    # -- the file's identity -----------------------------------------------------------------
    def check_same_file(self) -> None:
        """Raise DatabaseGone when the path no longer names the file opened (device + inode)."""
        if self._identity is None:
            return
        try:
            now: tuple[int, int] | None = _file_identity(self.path)
        except OSError:
            now = None
        if now == self._identity:
            return
        self._let_go()
        if now is None:
            raise DatabaseGone(
                f"{self.path} was deleted while this process had it open: stopped, nothing more "
                "is written; restore it from a backup or queue the runs again"
            )
        raise DatabaseGone(
            f"{self.path} was replaced by another file while this process had it open: stopped, "
            "nothing is written to either; run the command again to use the new file"
        )

    def _check_write_count(self) -> bool:
        """Check that the file holds what this connection sees (the count of writes, which every
        transaction that changes a row increments); False when there is no count to keep.

        Under the write lock no one else can commit, so a fresh connection must read the count
        of writes this one reads. It reads less when the file was overwritten in place by an
        older copy (``cp backup.db runs.db``: the same inode, the old pages in this connection's
        cache): writing on would mix the two databases, so nothing is written (DatabaseGone).
        """
        if self._identity is None:
            return False
        try:
            mine = self.db.execute("SELECT value FROM meta WHERE key = 'writes'").fetchone()
        except sqlite3.OperationalError:
            return False  # no meta table yet: the schema is being created
        probe = None
        try:
            probe = sqlite3.connect(str(self.path), timeout=1.0)
            theirs = probe.execute("SELECT value FROM meta WHERE key = 'writes'").fetchone()
        except sqlite3.Error:
            theirs = mine  # busy or unreadable: SQLite itself will say so
        finally:
            if probe is not None:
                probe.close()
        if theirs != mine:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.rollback()
            raise DatabaseGone(
                f"{self.path} was overwritten by another copy while this process had it open "
                "(cp onto it?): stopped, nothing more is written; run the command again to use "
                "the file as it is now"
            )
        return True

    def _let_go(self) -> None:
        """After the file was deleted or replaced: end any transaction and empty the write-ahead
        log into the old file, so that the ``-wal`` beside the path (shared by name) is never
        applied to the new file that stands there now or later."""
        with contextlib.suppress(sqlite3.Error):
            if self.db.conn.in_transaction:
                self.db.conn.rollback()
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def data_version(self) -> int:
        """Changes whenever another connection commits (``PRAGMA data_version``).

        Raises DatabaseGone when the file was deleted or replaced meanwhile."""
        self.check_same_file()
        return self.db.execute("PRAGMA data_version").fetchone()[0]


def _file_identity(path: Path) -> tuple[int, int]:
    """(device, inode) of the file a path names now (OSError when it names none)."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _check_file(path: Path, *, create: bool) -> None:
    problem = _path_problem(path)
    if problem:
        raise StoreError(problem)
    if path.is_dir():
        raise StoreError(f"--db {path} is a directory: give a file path such as {path}/runs.db")
    if not path.exists():
        if not create:
            raise StoreError(
                f"no database at {path}: queue runs first (pairs run / pairs queue) or pass --db PATH (or set PAIRS_DB)"
            )
        if not path.parent.exists():
            raise StoreError(f"the folder {path.parent} of --db {path} does not exist: create it first")
        if not os.access(path.parent, os.W_OK):
            raise StoreError(f"cannot create {path}: its folder is not writable; choose another --db")
        return
    # Never open() the file here: closing any descriptor of a database file drops every POSIX
    # lock this process holds on it, including those of an open SQLite connection (the TUI has
    # two), and another process could then checkpoint and delete the WAL under it. SQLite itself
    # tells a file that is not a database (see _explain).
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read {path} (permission denied): check its permissions")
    if create and not os.access(path, os.W_OK):
        raise StoreError(f"{path} is read-only: make it writable (chmod u+w) or choose another --db")


def _read_only_copy(path: Path) -> bool:
    """An existing database in a folder we cannot write, and not open anywhere (no -wal/-shm)."""
    return (
        path.is_file()
        and not os.access(path.parent, os.W_OK)
        and not Path(f"{path}-wal").exists()
        and not Path(f"{path}-shm").exists()
    )


def copy_database(source: Path, target: Path) -> None:
    """Copy a database safely while others may write to it (SQLite's online backup)."""
    with sqlite3.connect(str(source)) as src, sqlite3.connect(str(target)) as dst:
        src.backup(dst)
