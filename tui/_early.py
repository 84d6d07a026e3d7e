"""Signals that arrive while ``pairs`` starts: noted, never raised (stdlib only, imported first).

Python turns SIGINT into KeyboardInterrupt wherever the program happens to be; raised inside an
import or a C++ library call (torch's), it aborts the interpreter (``terminate called ...``,
exit -6) or leaves it with -2 and no message. ``tui/__init__.py`` installs ``defer_signals``
before anything else of ``pairs`` is imported, when this process is the ``pairs`` command; the
command then exits 130 for a signal noted while it started, or hands it to the driver's stop
request (``pairs run`` / ``pairs work``).
"""

from __future__ import annotations

import os
import signal
import sys

#: SIGINT/SIGTERM noted before a command's own handlers took over.
EARLY_SIGNALS: list[int] = []


def _note(signum, _frame) -> None:
    EARLY_SIGNALS.append(signum)


def defer_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _note)


def is_pairs_command() -> bool:
    """Whether this process is the ``pairs`` command (the console script or ``python -m
    tui.cli``), not a program that imports ``tui`` (tests, the console app)."""
    if os.path.basename(sys.argv[0]) == "pairs":
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    return "-m" in argv and argv[argv.index("-m") + 1 :][:1] == ["tui.cli"]
