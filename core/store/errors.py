"""The store's errors, and the one-line messages that explain an SQLite failure on a path."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path


class StoreError(RuntimeError):
    """The database cannot be used; the message names the problem and the fix.

    Always one line: control characters (a newline in a --db path) are shown escaped.
    """

    def __init__(self, message: str = ""):
        super().__init__(_one_line(str(message)))


def _one_line(text: str) -> str:
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text)


class DatabaseUnusable(StoreError, sqlite3.DatabaseError):
    """SQLite failed for a reason no retry fixes (corrupt, read-only, disk full, I/O error).

    Both a StoreError (the interfaces show its one-line message) and an ``sqlite3.DatabaseError``
    (code that handles SQLite errors still sees one).
    """


class DatabaseGone(StoreError):
    """The path no longer names the file this process opened (deleted, moved or replaced).

    Raised before any write (and on the console's poll): writing on would go to a file no one
    can see any more, or mix two databases.
    """


class LostClaim(RuntimeError):
    """The run is no longer held by this worker (it was requeued as stale)."""


#: Fragments of SQLite messages that mean the database itself is unusable.
_FATAL = (
    "malformed",
    "not a database",
    "disk i/o error",
    "disk is full",
    "readonly",
    "unable to open",
    "file is not",
    "corrupt",
)


def _fatal(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, StoreError))
        and any(fragment in str(exc).lower() for fragment in _FATAL)
    )


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
            return (
                f"--db {path} is a symbolic link to {os.readlink(path)}, which does not "
                "exist: fix the link or give the database's own path"
            )
        return None  # simply not there (yet)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (
                f"--db {path} is a symbolic link loop (it never reaches a file): fix the "
                "link or give the database's own path"
            )
        if exc.errno == errno.ENOTDIR:
            parent = next((p for p in reversed(path.parents) if p.is_file()), path.parent)
            return f"--db {path} goes through {parent}, which is a file, not a folder: choose a path in a folder"
        if exc.errno == errno.ENAMETOOLONG:
            return f"--db {str(path)[:60]}... has a name too long for this file system: choose a shorter path"
        return f"--db {path} cannot be used ({exc.strerror}): choose another path"


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
            return (
                f"{path} cannot be written: its folder {folder} is read-only and SQLite needs "
                f"to create {path.name}-wal and {path.name}-shm there; choose another --db"
            )
        return f"{path} is read-only: make it writable (chmod u+w) or choose another --db"
    if "disk is full" in lower:
        return f"{path} cannot be written: the disk is full; free some space and run again"
    return f"{path} cannot be used ({text}): check the file or choose another --db"
