"""The SQLite store (through sqlite-utils): configurations, runs, epoch metrics, checkpoints.

One file is the only channel between processes. WAL mode, a busy timeout and short
``BEGIN IMMEDIATE`` transactions let several drivers and readers share it; epoch rows are keyed
by (run_id, epoch) and written with upserts, so a replay never doubles a row. Times are seconds
since the Unix epoch (UTC).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import random
import secrets
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core._sqlite_utils import sqlite_utils
from core.config import ConfigError, RunConfig, run_seed, training_cost

SCHEMA_VERSION = 2
#: Databases up to this size are checked (PRAGMA quick_check) when opened: ~5 ms per MB.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
BUSY_TIMEOUT_MS = 30_000
DEFAULT_DB = "runs.db"
STATUSES = ("queued", "running", "done", "failed")

CONFIG_COLUMNS = {
    "id": str, "structure": str, "arch": str, "kernel": int, "epochs": int, "lr": float,
    "lr_step": int, "lr_gamma": float, "optimizer": str, "batch_size": int, "aux_weight": float,
    "data": str, "train_pairs": int, "val_pairs": int, "test_pairs": int, "seed": int,
    "precision": str, "options": str, "created_at": float,
}
RUN_COLUMNS = {
    "id": str, "config_id": str, "rep": int, "seed": int, "status": str, "attempts": int,
    "worker": str, "host": str, "heartbeat_at": float, "queued_at": float, "started_at": float,
    "finished_at": float, "error": str, "test_loss": float, "test_main_loss": float,
    "test_acc": float, "test_digit_acc": float, "seconds": float, "device": str,
    "torch_version": str, "code_version": str,
    # the final epoch's metrics, copied when the run is done (fast tables on huge grids)
    "final_train_loss": float, "final_val_loss": float, "final_val_acc": float,
}
EPOCH_COLUMNS = {
    "run_id": str, "epoch": int, "train_loss": float, "train_main_loss": float,
    "train_acc": float, "val_loss": float, "val_main_loss": float, "val_acc": float,
    "val_digit_acc": float, "lr": float, "seconds": float, "recorded_at": float,
}


class StoreError(RuntimeError):
    """The database cannot be used; the message names the problem and the fix.

    Always one line: control characters (a newline in a --db path) are shown escaped.
    """

    def __init__(self, message: str = ""):
        super().__init__(_one_line(str(message)))


def _one_line(text: str) -> str:
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


class DatabaseUnusable(StoreError, sqlite3.DatabaseError):
    """SQLite failed for a reason no retry fixes (corrupt, read-only, disk full, I/O error).

    Both a StoreError (the interfaces show its one-line message) and an ``sqlite3.DatabaseError``
    (code that handles SQLite errors still sees one).
    """


#: Fragments of SQLite messages that mean the database itself is unusable.
_FATAL = ("malformed", "not a database", "disk i/o error", "disk is full", "readonly",
          "unable to open", "file is not", "corrupt")


def _fatal(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, StoreError))
        and any(fragment in str(exc).lower() for fragment in _FATAL)
    )


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


class DatabaseGone(StoreError):
    """The path no longer names the file this process opened (deleted, moved or replaced).

    Raised before any write (and on the console's poll): writing on would go to a file no one
    can see any more, or mix two databases.
    """


class LostClaim(RuntimeError):
    """The run is no longer held by this worker (it was requeued as stale)."""


def resolve_db_path(path: str | os.PathLike | None = None) -> Path:
    """``--db`` if given, else ``$PAIRS_DB``, else ``./runs.db``."""
    return Path(path or os.environ.get("PAIRS_DB") or DEFAULT_DB)


def worker_id() -> str:
    """This process's identity as the holder of runs: ``host:pid:tag``, unique across machines,
    containers and time.

    The tag is ``SCOPE-START``: SCOPE a hash of the boot id and the pid namespace, START the
    process's start time (clock ticks since boot), so two drivers that are both PID 1 of their
    container, or a process that reuses a dead driver's pid, never share an identity. Without
    /proc the tag is a random token.
    """
    pid = os.getpid()
    if pid not in _IDENTITY:
        start = _start_time(pid) if _proc_is_ours() else None
        tag = f"{_scope()}-{start}" if start else f"r{secrets.token_hex(8)}"
        _IDENTITY[pid] = f"{socket.gethostname()}:{pid}:{tag}"
    return _IDENTITY[pid]


_IDENTITY: dict[int, str] = {}


@functools.lru_cache(maxsize=1)
def _scope() -> str:
    """A hash of the boot id and this process's pid namespace: pids mean the same within one."""
    parts = []
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(source) if source.endswith("/pid") else Path(source).read_text())
        except OSError:
            parts.append("?")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def _proc_is_ours() -> bool:
    """Whether /proc shows this process's pid namespace (not so in a container given the host's
    /proc): only then do the pids of /proc mean what ``os.getpid()`` means."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return fields[19] if len(fields) > 19 else None


def worker_host(worker: str | None) -> str:
    """The host part of a holder identity (``host:pid`` or ``host:pid:tag``)."""
    return (worker or "").split(":", 1)[0]


@dataclass(frozen=True)
class ClaimedRun:
    id: str
    config: RunConfig
    rep: int
    checkpoint: bytes | None
    attempts: int


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _retry_locked(action, attempts: int = 8):
    """``action()``, retried with jittered exponential backoff while SQLite reports a lock."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == attempts - 1:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)
    return None


#: How long a store write keeps retrying a locked database before it gives up.
WRITE_RETRY_S = 300.0


def _retrying(method):
    """Run a store write (one short transaction) again, from the start, when it meets a lock.

    The transaction was rolled back, so running it again is safe. Only when the database stays
    locked for ``WRITE_RETRY_S`` does the caller see a (one-line) StoreError.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        deadline = time.monotonic() + WRITE_RETRY_S
        delay = 0.05
        while True:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or self.db.conn.in_transaction:
                    raise  # not a lock, or inside a caller's transaction: theirs to handle
                if time.monotonic() > deadline:
                    raise DatabaseUnusable(_explain(self.path, exc)) from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)

    return wrapper


class Store:
    """A validated, migrated connection to one pairs database."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True):
        self.path = resolve_db_path(path)
        _check_file(self.path, create=create)
        conn = None
        try:
            if not create and _read_only_copy(self.path):
                # A database in a read-only folder (a shipped result, a read-only mount) that no
                # one has open: SQLite cannot create its -wal/-shm there, so read it as immutable.
                conn = sqlite3.connect(
                    f"file:{urllib.parse.quote(str(self.path.resolve()))}?immutable=1", uri=True,
                    timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
                )
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

    # -- opening -----------------------------------------------------------------------------
    def _prepare(self, create: bool) -> None:
        self._check_integrity()
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
                raise StoreError(
                    f"{self.path} is an SQLite file of another program: "
                    "choose a new path with --db"
                )
            self.db.enable_wal()
            with self.transaction():
                # Another process may have created it since the check above (under no lock).
                if self.schema_version() is None:
                    self._create_schema()
            return
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this pairs "
                f"understands ({SCHEMA_VERSION}): upgrade pairs (pip install -U pairs)"
            )
        self._check_tables()
        if version < SCHEMA_VERSION:
            self._migrate(version)
        self._check_rows()
        if create and self.db.journal_mode != "wal":
            self.db.enable_wal()
        self._requeue_dead_local()

    def _check_tables(self) -> None:
        """Refuse a pairs database whose tables were dropped (before anything writes it)."""
        present = set(self.db.table_names())
        for name in REQUIRED_TABLES:
            if name not in present:
                raise StoreError(
                    f"{self.path} has no {name} table (dropped or never made): restore a backup, "
                    "or start a new --db and queue the runs again"
                )

    def _check_rows(self) -> None:
        """Refuse rows edited by hand into values pairs cannot read (before anything writes).

        Each table is scanned once for a value of the wrong type (text in a number column, a
        NULL where one is required, a status pairs does not know); each configuration is read
        as a ``RunConfig`` (its ``options`` JSON included). The message names the table, the
        row and the column. Files above ``QUICK_CHECK_MAX_BYTES`` are not scanned.
        """
        try:
            if self.path.stat().st_size > QUICK_CHECK_MAX_BYTES:
                return
        except OSError:
            return
        for table, key, columns in _ROW_RULES:
            present = {c.name for c in self.db[table].columns}
            checks = [(name, rule) for name, rule in columns.items() if name in present]
            if not checks:
                continue
            cases = " ".join(f"WHEN NOT ({rule.format(c=_quote(name))}) THEN ?"
                             for name, rule in checks)
            conditions = " OR ".join(f"NOT ({rule.format(c=_quote(name))})" for name, rule in checks)
            row = self.db.execute(
                f"SELECT {key}, CASE {cases} END FROM {table} WHERE {conditions} LIMIT 1",
                [name for name, _ in checks],
            ).fetchone()
            if row is not None:
                ident, column = row
                value = self.db.execute(
                    f"SELECT {_quote(column)} FROM {table} WHERE {key} = ?", [ident]
                ).fetchone()
                raise StoreError(
                    f"{self.path}: table {table}, row {ident!r}, column {column} holds "
                    f"{_shown(value[0] if value else None)}, which pairs cannot read "
                    f"({_RULE_WORDS.get(column, 'wrong type')}): fix that row "
                    f"(sqlite3 {self.path}) or restore a backup"
                )
        for row in self.db.query("SELECT * FROM configs"):
            problem = _config_problem(row)
            if problem:
                column, why = problem
                raise StoreError(
                    f"{self.path}: table configs, row {row.get('id')!r}, column {column} is "
                    f"unreadable ({why}): fix that row (sqlite3 {self.path}) or restore a backup"
                )

    def _requeue_dead_local(self) -> None:
        """Queue again the runs still marked running by a process of this host that is gone.

        A driver killed with SIGKILL (or a machine that rebooted) leaves its runs ``running``;
        whoever opens the database next, ``pairs work``, ``pairs status`` or the console, sees
        them queued again (they resume from their last checkpoint). A read-only database is
        left as it is.
        """
        host = socket.gethostname()
        try:
            rows = self.db.execute("SELECT worker FROM runs WHERE status = 'running'").fetchall()
            if any(worker_host(worker) == host and not _pid_alive(worker)
                   for (worker,) in rows):
                self.requeue_stale(float("inf"), host=host)
        except (sqlite3.OperationalError, StoreError):
            pass  # read-only or busy: `pairs work` requeues them when it starts

    def _check_integrity(self) -> None:
        """Refuse a damaged file before anything reads or writes it (``PRAGMA quick_check``).

        A few milliseconds per MB: done for files up to ``QUICK_CHECK_MAX_BYTES``; a larger file
        is checked page by page as it is read (SQLite then reports "malformed").
        """
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size > QUICK_CHECK_MAX_BYTES:
            return
        (result,) = self.db.execute("PRAGMA quick_check(1)").fetchone()
        if result != "ok":
            first = str(result).strip().splitlines()[-1]
            raise DatabaseUnusable(
                f"{self.path} is corrupted (quick_check: {first}): restore a backup, or recover "
                f"what is readable with: sqlite3 {self.path} .recover | sqlite3 recovered.db"
            )

    def schema_version(self) -> int | None:
        if "meta" not in self.db.table_names():
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            return None
        try:
            return int(row[0])
        except ValueError:
            raise StoreError(
                f"{self.path} has an unreadable schema_version {row[0]!r}: restore a backup"
            ) from None

    def _create_schema(self) -> None:
        db = self.db
        db["meta"].create({"key": str, "value": str}, pk="key")
        db["configs"].create(CONFIG_COLUMNS, pk="id", not_null={"structure", "arch", "kernel"})
        db["runs"].create(
            RUN_COLUMNS, pk="id", foreign_keys=[("config_id", "configs", "id")],
            not_null={"config_id", "rep", "status"}, defaults={"attempts": 0},
        )
        db["runs"].create_index(["config_id", "rep"], unique=True)
        db["runs"].create_index(["status"])
        db["runs"].create_index(["config_id", "status"])
        db["epochs"].create(
            EPOCH_COLUMNS, pk=("run_id", "epoch"), foreign_keys=[("run_id", "runs", "id")]
        )
        db["checkpoints"].create(
            {"run_id": str, "epoch": int, "state": bytes, "saved_at": float},
            pk="run_id", foreign_keys=[("run_id", "runs", "id")],
        )
        from core import __version__

        db["meta"].insert_all(
            [
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                {"key": "created_by", "value": f"pairs {__version__}"},
                {"key": "created_at", "value": str(time.time())},
            ]
        )

    def _migrate(self, version: int) -> None:
        """Upgrade an older schema in place, after a backup copy beside the file."""
        missing = [step for step in range(version, SCHEMA_VERSION) if step not in MIGRATIONS]
        if missing:
            raise StoreError(
                f"{self.path} has schema version {version}, older than any this pairs can "
                f"upgrade (from {min(MIGRATIONS)}): open it with an older pairs, or start a new --db"
            )
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
            current = self.schema_version()
            if current is not None and current >= SCHEMA_VERSION:
                return  # another process upgraded it meanwhile
            for step in range(current if current is not None else version, SCHEMA_VERSION):
                MIGRATIONS[step](self.db)
            self.db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)]
            )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A short write transaction that takes the write lock first (``BEGIN IMMEDIATE``).

        Waiting for the lock (the busy timeout, then retries with backoff) happens before any
        statement, so the body never meets a lock. The store's own writes are additionally
        retried as a whole (see ``_retrying``).
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

    def check_same_file(self) -> None:
        """Raise DatabaseGone when the path no longer names the file opened (device + inode)."""
        if self._identity is None:
            return
        try:
            now = _file_identity(self.path)
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

    # -- queueing ----------------------------------------------------------------------------
    @_retrying
    def queue(self, configs: Iterable[RunConfig], reps: int) -> int:
        """Add (configuration, repetition) runs; what is already there is left alone.

        Returns how many runs were added.
        """
        if not isinstance(reps, int) or reps < 1:
            raise ConfigError(f"reps must be an integer >= 1, got {reps!r}")
        now = time.time()
        configs = list(configs)
        with self.transaction() as db:
            before = db.execute("SELECT count(*) FROM runs").fetchone()[0]
            db["configs"].insert_all(
                [_config_row(c, now) for c in configs], ignore=True
            )
            db["runs"].insert_all(
                [
                    {
                        "id": run_id(c, rep), "config_id": c.id, "rep": rep,
                        "seed": run_seed(c, rep), "status": "queued", "attempts": 0,
                        "queued_at": now,
                    }
                    for c in configs
                    for rep in range(reps)
                ],
                ignore=True,
            )
            after = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        return after - before

    def count_new(self, configs: Iterable[RunConfig], reps: int) -> int:
        """How many runs ``queue(configs, reps)`` would add (for previews)."""
        ids = [run_id(c, rep) for c in configs for rep in range(reps)]
        existing = 0
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            existing += self.db.execute(
                f"SELECT count(*) FROM runs WHERE id IN ({marks})", chunk
            ).fetchone()[0]
        return len(ids) - existing

    @_retrying
    def retry_failed(self) -> int:
        """Queue every failed run again; returns how many."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'queued', error = NULL, worker = NULL, "
                "queued_at = ? WHERE status = 'failed'",
                [time.time()],
            )
            return cursor.rowcount

    # -- claiming and reporting (one driver is the writer of its runs) -----------------------
    @_retrying
    def claim(self, worker: str, limit: int = 1, config_ids: list[str] | None = None) -> list[ClaimedRun]:
        """Atomically mark up to ``limit`` queued runs of ONE configuration as running for ``worker``.

        The configuration: among those with the lowest queued repetition, the costliest to train
        (``config.training_cost``), so a grid's last runs are its cheapest and no process idles
        through a long tail; then queue order. Its queued runs are taken lowest repetition first.
        """
        now = time.time()
        host = worker_host(worker)
        where, params = "r.status = 'queued'", []
        if config_ids:
            where += f" AND r.config_id IN ({','.join('?' * len(config_ids))})"
            params.extend(config_ids)
        with self.transaction() as db:
            candidates = db.execute(
                f"SELECT r.config_id, min(r.rep), c.created_at, c.arch, c.kernel, c.epochs, c.train_pairs, "
                f"c.val_pairs FROM runs r JOIN configs c ON c.id = r.config_id WHERE {where} "
                f"GROUP BY r.config_id",
                params,
            ).fetchall()
            if not candidates:
                return []
            first = min(candidates, key=lambda c: (c[1], -_cost_or_zero(c[3:]), c[2], c[0]))
            config = RunConfig.from_dict(db["configs"].get(first[0]))
            rows = list(
                db.query(
                    "SELECT r.id, r.rep, r.attempts, k.state FROM runs r "
                    "LEFT JOIN checkpoints k ON k.run_id = r.id "
                    "WHERE r.status = 'queued' AND r.config_id = ? ORDER BY r.rep LIMIT ?",
                    [first[0], limit],
                )
            )
            for row in rows:
                db.execute(
                    "UPDATE runs SET status = 'running', worker = ?, host = ?, heartbeat_at = ?, "
                    "started_at = coalesce(started_at, ?), attempts = attempts + 1, error = NULL "
                    "WHERE id = ?",
                    [worker, host, now, now, row["id"]],
                )
        return [
            ClaimedRun(id=row["id"], config=config, rep=row["rep"], checkpoint=row["state"],
                       attempts=row["attempts"] + 1)
            for row in rows
        ]

    @_retrying
    def heartbeat(self, worker: str, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self.transaction() as db:
            db.execute(
                f"UPDATE runs SET heartbeat_at = ? WHERE worker = ? AND status = 'running' "
                f"AND id IN ({marks})",
                [time.time(), worker, *ids],
            )

    @_retrying
    def record_epoch(self, run_id_: str, worker: str, metrics: dict, checkpoint: bytes) -> None:
        """Persist one epoch row and the run's checkpoint in one transaction."""
        now = time.time()
        with self.transaction() as db:
            self._own(db, run_id_, worker, now)
            db["epochs"].upsert({"run_id": run_id_, **metrics, "recorded_at": now},
                                pk=("run_id", "epoch"))
            db["checkpoints"].upsert(
                {"run_id": run_id_, "epoch": metrics["epoch"], "state": checkpoint,
                 "saved_at": now},
                pk="run_id",
            )

    @_retrying
    def finish_run(self, run_id_: str, worker: str, results: dict) -> None:
        """Mark done with its test metrics and run information; drop the checkpoint."""
        now = time.time()
        with self.transaction() as db:
            self._own(db, run_id_, worker, now)
            db["runs"].update(run_id_, {**results, "status": "done", "finished_at": now,
                                        "error": None})
            db.execute(
                "UPDATE runs SET (final_train_loss, final_val_loss, final_val_acc) = "
                "(SELECT e.train_loss, e.val_loss, e.val_acc FROM epochs e JOIN configs c "
                " ON c.id = runs.config_id WHERE e.run_id = runs.id AND e.epoch = c.epochs) "
                "WHERE id = ?",
                [run_id_],
            )
            db.execute("DELETE FROM checkpoints WHERE run_id = ?", [run_id_])

    @_retrying
    def fail_run(self, run_id_: str, worker: str, error: str) -> None:
        now = time.time()
        with self.transaction() as db:
            self._own(db, run_id_, worker, now)
            db["runs"].update(run_id_, {"status": "failed", "error": error, "finished_at": now})

    @_retrying
    def restart_run(self, run_id_: str, worker: str) -> int:
        """Drop the epoch rows and checkpoint of a run this worker holds (its checkpoint was
        unreadable and it trains again from epoch 0); returns how many epoch rows went."""
        with self.transaction() as db:
            self._own(db, run_id_, worker, time.time())
            gone = db.execute("DELETE FROM epochs WHERE run_id = ?", [run_id_]).rowcount
            db.execute("DELETE FROM checkpoints WHERE run_id = ?", [run_id_])
        return gone

    @_retrying
    def release_run(self, run_id_: str, worker: str) -> None:
        """Put a run this worker holds back in the queue (interrupted; resumes from checkpoint)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'queued', worker = NULL WHERE id = ? AND worker = ? "
                "AND status = 'running'",
                [run_id_, worker],
            )

    def _own(self, db: sqlite_utils.Database, run_id_: str, worker: str, now: float) -> None:
        cursor = db.execute(
            "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND worker = ? AND status = 'running'",
            [now, run_id_, worker],
        )
        if cursor.rowcount != 1:
            raise LostClaim(f"run {run_id_} is no longer held by {worker}")

    @_retrying
    def requeue_stale(self, timeout_s: float, *, host: str | None = None) -> list[str]:
        """Queue again the running runs whose worker is gone.

        Gone means: no heartbeat for ``timeout_s`` seconds, or a worker on this host whose
        process no longer exists. Never the runs of the calling process itself (it is alive,
        whatever its heartbeat says). Returns the ids requeued.
        """
        host = host or socket.gethostname()
        me = worker_id()
        now = time.time()
        with self.transaction() as db:
            stale = []
            for row in db.query(
                "SELECT id, worker, host, heartbeat_at FROM runs WHERE status = 'running'"
            ):
                if row["worker"] == me:
                    continue
                old = (row["heartbeat_at"] or 0) < now - timeout_s
                dead = worker_host(row["worker"]) == host and not _pid_alive(row["worker"])
                if old or dead:
                    stale.append(row["id"])
            for chunk in _chunks(stale, 500):
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"UPDATE runs SET status = 'queued', worker = NULL WHERE id IN ({marks})",
                    chunk,
                )
        return stale

    def set_host(self, run_id_: str, worker: str, host: str) -> None:
        """Record the machine that trains a run (a Ray node), while this worker holds it."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET host = ? WHERE id = ? AND worker = ? AND status = 'running'",
                       [host, run_id_, worker])

    # -- queries -----------------------------------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.db.execute("SELECT status, count(*) FROM runs GROUP BY status"):
            counts[status] = n
        return counts

    def running(self) -> list[dict]:
        """Running runs with their configuration and last recorded epoch."""
        return list(
            self.db.query(
                "SELECT r.id, r.rep, r.worker, r.host, r.heartbeat_at, r.started_at, c.structure, "
                "c.arch, c.kernel, c.epochs, (SELECT max(epoch) FROM epochs e "
                "WHERE e.run_id = r.id) AS epoch FROM runs r JOIN configs c ON c.id = r.config_id "
                "WHERE r.status = 'running' ORDER BY r.started_at"
            )
        )

    def failures(self) -> list[dict]:
        return list(
            self.db.query(
                "SELECT r.id, r.rep, r.error, r.attempts, c.structure, c.arch, c.kernel "
                "FROM runs r JOIN configs c ON c.id = r.config_id WHERE r.status = 'failed' "
                "ORDER BY r.finished_at"
            )
        )

    def config_progress(self) -> list[dict]:
        """One row per configuration: its fields and how many runs are in each status."""
        return list(
            self.db.query(
                "SELECT c.*, count(r.id) AS total, "
                "sum(r.status = 'done') AS done, sum(r.status = 'running') AS running, "
                "sum(r.status = 'queued') AS queued, sum(r.status = 'failed') AS failed, "
                "(SELECT max(e.epoch) FROM epochs e JOIN runs rr ON rr.id = e.run_id "
                " WHERE rr.config_id = c.id AND rr.status = 'running') AS current_epoch, "
                "(SELECT group_concat(DISTINCT rh.host) FROM runs rh "
                " WHERE rh.config_id = c.id AND rh.status = 'running') AS hosts "
                "FROM configs c LEFT JOIN runs r ON r.config_id = c.id "
                "GROUP BY c.id ORDER BY c.created_at, c.structure, c.arch, c.kernel"
            )
        )

    def config(self, config_id: str) -> RunConfig:
        return RunConfig.from_dict(self.db["configs"].get(config_id))

    def epoch_rows(self, config_id: str) -> list[dict]:
        """Every epoch row of a configuration's runs, with the repetition."""
        return list(
            self.db.query(
                "SELECT r.rep, r.status, e.* FROM epochs e JOIN runs r ON r.id = e.run_id "
                "WHERE r.config_id = ? ORDER BY r.rep, e.epoch",
                [config_id],
            )
        )

    def run_rows(self, config_id: str | None = None, status: str | None = None) -> list[dict]:
        where, params = [], []
        if config_id:
            where.append("config_id = ?")
            params.append(config_id)
        if status:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return list(self.db.query(f"SELECT * FROM runs {clause} ORDER BY config_id, rep", params))

    def final_epoch_rows(self) -> list[dict]:
        """For each done run: its configuration, the final epoch's metrics and its test metrics."""
        return list(
            self.db.query(
                "SELECT c.id AS config_id, c.structure, c.arch, c.kernel, r.rep, "
                "e.train_loss, e.val_loss, e.val_acc, r.test_loss, r.test_acc "
                "FROM runs r JOIN configs c ON c.id = r.config_id "
                "JOIN epochs e ON e.run_id = r.id AND e.epoch = c.epochs "
                "WHERE r.status = 'done'"
            )
        )


def _config_row(config: RunConfig, now: float) -> dict:
    """A ``configs`` row: the paper's fields as columns, later ones as ``options`` JSON."""
    extensions = config.extension_values()
    row = {k: v for k, v in config.to_dict().items() if k not in extensions}
    return {"id": config.id, **row, "options": json.dumps(extensions, sort_keys=True), "created_at": now}


def run_id(config: RunConfig, rep: int) -> str:
    return f"{config.id}-r{rep:03d}"


def _add_precision(db: sqlite_utils.Database) -> None:
    """Version 0 -> 1: the databases of the first, unreleased pairs had no ``configs.precision``
    (every run was fp32) and no index on ``runs (config_id, status)``."""
    if "precision" not in {c.name for c in db["configs"].columns}:
        db.execute("ALTER TABLE configs ADD COLUMN precision TEXT")
    db.execute("UPDATE configs SET precision = 'fp32' WHERE precision IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS idx_runs_config_id_status ON runs (config_id, status)")


def _add_final_metrics(db: sqlite_utils.Database) -> None:
    """Version 1 -> 2: the final epoch's metrics on the run row (fast tables on huge grids), and
    ``configs.options`` (JSON of the hyperparameters added after the paper's)."""
    if "options" not in {c.name for c in db["configs"].columns}:
        db.execute("ALTER TABLE configs ADD COLUMN options TEXT")
    columns = {c.name for c in db["runs"].columns}
    for name in ("final_train_loss", "final_val_loss", "final_val_acc"):
        if name not in columns:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} REAL")
    if "code_version" not in columns:  # which code trained a run (NULL: unknown)
        db.execute("ALTER TABLE runs ADD COLUMN code_version TEXT")
    db.execute(
        "UPDATE runs SET (final_train_loss, final_val_loss, final_val_acc) = "
        "(SELECT e.train_loss, e.val_loss, e.val_acc FROM epochs e JOIN configs c "
        " ON c.id = runs.config_id WHERE e.run_id = runs.id AND e.epoch = c.epochs) "
        "WHERE status = 'done'"
    )


#: Upgrades from version N to N + 1, each a callable(db) run inside the upgrade's transaction.
MIGRATIONS: dict = {0: _add_precision, 1: _add_final_metrics}


#: Tables every pairs database has.
REQUIRED_TABLES = ("meta", "configs", "runs", "epochs", "checkpoints")

_REAL = "typeof({c}) IN ('real', 'integer', 'null')"
_TEXT = "typeof({c}) IN ('text', 'null')"
_INT_NOT_NULL = "typeof({c}) = 'integer'"
_TEXT_NOT_NULL = "typeof({c}) = 'text'"
_TYPE_RULES = {float: _REAL, str: _TEXT, int: "typeof({c}) IN ('integer', 'null')"}


def _rules(columns: dict, **special: str) -> dict:
    return {**{name: _TYPE_RULES[kind] for name, kind in columns.items()}, **special}


#: (table, key expression, {column: SQL condition a valid value meets}).
_ROW_RULES = (
    ("runs", "id", _rules(
        RUN_COLUMNS, id=_TEXT_NOT_NULL, config_id=_TEXT_NOT_NULL, rep=_INT_NOT_NULL,
        attempts=_INT_NOT_NULL,
        status="{c} IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
    )),
    ("epochs", "run_id || ' epoch ' || epoch", _rules(
        EPOCH_COLUMNS, run_id=_TEXT_NOT_NULL, epoch=_INT_NOT_NULL,
    )),
    ("checkpoints", "run_id", {"run_id": _TEXT_NOT_NULL, "epoch": _INT_NOT_NULL,
                               "state": "typeof({c}) IN ('blob', 'null')",
                               "saved_at": _REAL}),
    ("configs", "id", {"id": _TEXT_NOT_NULL, "created_at": _REAL,
                       "options": "{c} IS NULL OR (json_valid({c}) AND json_type({c}) = 'object')"}),
)
_RULE_WORDS = {"status": f"one of {', '.join(STATUSES)}", "attempts": "an integer, never NULL",
               "rep": "an integer", "epoch": "an integer", "options": "a JSON object",
               "state": "checkpoint bytes"}
for _name, _kind in {**RUN_COLUMNS, **EPOCH_COLUMNS}.items():
    _RULE_WORDS.setdefault(_name, {float: "a number or NULL", str: "text or NULL",
                                   int: "an integer or NULL"}[_kind])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _config_problem(row: dict) -> tuple[str, str] | None:
    """(column, why) when a configs row is not a valid RunConfig; None when it is."""
    try:
        options = json.loads(row["options"]) if row.get("options") else {}
    except (TypeError, ValueError) as exc:
        return "options", f"not JSON: {exc}"
    if not isinstance(options, dict):
        return "options", f"a JSON object is needed, not {_shown(options)}"
    try:
        RunConfig.from_dict(row)
    except ConfigError as exc:
        text = str(exc)
        column = next((name for name in (*CONFIG_COLUMNS, *options)
                       if text.startswith((name, name.replace("_", "-"),
                                           f"unknown {name} "))), "?")
        if column in options:
            column = f"options.{column}"
        return column, text
    except (TypeError, ValueError) as exc:
        return "?", str(exc)
    return None


def _file_identity(path: Path) -> tuple[int, int]:
    """(device, inode) of the file a path names now (OSError when it names none)."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _path_problem(path: Path) -> str | None:
    """What is wrong with the path itself (not the file's contents), in words; None if nothing.

    A symlink loop, a dangling link, a file where a folder should be, a name too long: each is
    named as it is, not as a permission problem.
    """
    try:
        os.stat(path)
        return None
    except FileNotFoundError:
        if os.path.islink(path):
            return (f"--db {path} is a symbolic link to {os.readlink(path)}, which does not "
                    "exist: fix the link or give the database's own path")
        return None  # simply not there (yet)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (f"--db {path} is a symbolic link loop (it never reaches a file): fix the "
                    "link or give the database's own path")
        if exc.errno == errno.ENOTDIR:
            parent = next((p for p in reversed(path.parents) if p.is_file()), path.parent)
            return (f"--db {path} goes through {parent}, which is a file, not a folder: "
                    "choose a path in a folder")
        if exc.errno == errno.ENAMETOOLONG:
            return (f"--db {str(path)[:60]}... has a name too long for this file system: "
                    "choose a shorter path")
        return f"--db {path} cannot be used ({exc.strerror}): choose another path"


def _check_file(path: Path, *, create: bool) -> None:
    problem = _path_problem(path)
    if problem:
        raise StoreError(problem)
    if path.is_dir():
        raise StoreError(f"--db {path} is a directory: give a file path such as {path}/runs.db")
    if not path.exists():
        if not create:
            raise StoreError(
                f"no database at {path}: queue runs first (pairs run / pairs queue) "
                "or pass --db PATH (or set PAIRS_DB)"
            )
        if not path.parent.exists():
            raise StoreError(
                f"the folder {path.parent} of --db {path} does not exist: create it first"
            )
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


def _explain(path: Path, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    lower = text.lower()
    if "locked" in lower or "busy" in lower:
        return f"{path} is locked by another program: wait for it to finish or close it"
    if "file is not a database" in lower:
        return f"{path} is not an SQLite database: pass a pairs database with --db"
    if "malformed" in lower or "not a database" in lower or "corrupt" in lower:
        return f"{path} is corrupted ({text}): restore a backup or start a new --db"
    if "readonly" in lower or "unable to open" in lower:
        problem = _path_problem(path)
        if problem:
            return problem
        folder = path.parent
        if path.exists() and not os.access(folder, os.W_OK):
            return (f"{path} cannot be written: its folder {folder} is read-only and SQLite needs "
                    f"to create {path.name}-wal and {path.name}-shm there; choose another --db")
        return f"{path} is read-only: make it writable (chmod u+w) or choose another --db"
    if "disk is full" in lower:
        return f"{path} cannot be written: the disk is full; free some space and run again"
    return f"{path} cannot be used ({text}): check the file or choose another --db"



def _pid_alive(worker: str | None) -> bool:
    """Whether the holder ``worker`` of this host may still be running (True when unknowable).

    A ``host:pid:tag`` identity of this boot and pid namespace is alive only while its pid is
    the very process that made it (same start time): a reused pid does not fool it. One from
    another pid namespace (a container with the same host name) cannot be checked from here and
    is left to the heartbeat timeout. The ``host:pid`` form of older pairs: the pid exists.
    """
    if not worker or ":" not in worker:
        return True
    _, _, rest = worker.partition(":")
    pid_text, _, tag = rest.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if tag:
        scope, _, start = tag.partition("-")
        if not start or scope != _scope() or not _proc_is_ours():
            return True
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def copy_database(source: Path, target: Path) -> None:
    """Copy a database safely while others may write to it (SQLite's online backup)."""
    with sqlite3.connect(str(source)) as src, sqlite3.connect(str(target)) as dst:
        src.backup(dst)


def _cost_or_zero(columns: tuple) -> int:
    """``training_cost`` of a configs row; 0 for a row edited into nonsense by hand (claiming it
    then names the problem, through ``RunConfig.from_dict``)."""
    try:
        return training_cost(*columns)
    except (TypeError, ValueError):
        return 0
