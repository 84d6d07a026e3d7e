"""Waiting out a locked database: the one retry loop of the store.

``BEGIN IMMEDIATE`` and ``COMMIT`` are retried a few times (``BEGIN_ATTEMPTS``); a whole store
write (one short transaction, rolled back when it met the lock) is run again from the start for
up to ``WRITE_RETRY_S`` seconds (``retrying``). Both wait with jittered exponential backoff.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from core.store.errors import DatabaseUnusable, _explain

#: How many times ``BEGIN IMMEDIATE`` / ``COMMIT`` are tried while SQLite reports a lock.
BEGIN_ATTEMPTS = 8
#: How long a store write keeps retrying a locked database before it gives up.
WRITE_RETRY_S = 300.0

T = TypeVar("T")
P = ParamSpec("P")


class _Connected(Protocol):
    """What ``retrying`` needs of a store (``core.store.opening.Connection``)."""

    db: Any
    path: Any


S = TypeVar("S", bound=_Connected)


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def retry_busy(
    action: Callable[[], T],
    *,
    attempts: int | None = None,
    seconds: float | None = None,
    may_retry: Callable[[], bool] | None = None,
) -> T:
    """``action()``, run again with jittered exponential backoff while SQLite reports a lock.

    It gives up (the lock error propagates) after ``attempts`` tries or ``seconds`` seconds, or at
    once when ``may_retry()`` is false; any other error propagates at once.
    """
    deadline = time.monotonic() + seconds if seconds is not None else None
    delay = 0.05
    tries = 0
    while True:
        tries += 1
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or (may_retry is not None and not may_retry()):
                raise
            if attempts is not None and tries >= attempts:
                raise
            if deadline is not None and time.monotonic() > deadline:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


def _retry_locked(action: Callable[[], T]) -> T:
    """``action()`` (a ``BEGIN IMMEDIATE`` or ``COMMIT``), tried ``BEGIN_ATTEMPTS`` times."""
    return retry_busy(action, attempts=BEGIN_ATTEMPTS)


def retrying(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Run a store write (one short transaction) again, from the start, when it meets a lock.

    The transaction was rolled back, so running it again is safe. Inside a caller's transaction
    the lock is the caller's to handle. Only when the database stays locked for
    ``WRITE_RETRY_S`` does the caller see a (one-line) StoreError.
    """

    @functools.wraps(method)
    def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        def outside() -> bool:
            return not self.db.conn.in_transaction

        try:
            return retry_busy(lambda: method(self, *args, **kwargs), seconds=WRITE_RETRY_S, may_retry=outside)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) and outside():
                raise DatabaseUnusable(_explain(self.path, exc)) from None
            raise

    return wrapper
