"""Imported by the local executor's fork server, last of ``core.executors.PRELOAD``: when the
server ends (its driver and every worker are gone) it exits at once, skipping the interpreter's
teardown of the torch it imported (~1.5 s of CPU, and the driver's output pipe held open that
long: the server shares its stdout and stderr). Imported anywhere else, it does nothing."""

from __future__ import annotations

import atexit
import os
import sys
from types import FrameType


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(0)


def _preloaded_by_fork_server() -> bool:
    """Whether this import runs in ``multiprocessing.forkserver.main``'s preload."""
    from multiprocessing import forkserver

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _preloaded_by_fork_server():
    atexit.register(_exit_now)
