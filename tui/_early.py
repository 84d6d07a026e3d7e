"""What ``pairs`` does before anything else: signals that arrive while it starts are noted, never
raised, and a training command starts its workers' fork server. Imported first, stdlib only at
import time (``start_workers_early`` imports ``core.executors``, which has no torch, when it runs).

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


#: The commands whose driver trains in local worker processes (and defers signals to stop
#: cleanly).
TRAINING_COMMANDS = ("run", "work")
#: Whether ``start_workers_early`` started the fork server workers come from.
FORK_SERVER_STARTED: list[bool] = []


def command() -> str | None:
    """The subcommand this ``pairs`` process runs (its first argument that is not an option)."""
    return next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)


def start_workers_early() -> None:
    """For a training command, start the fork server its workers come from before the CLI is
    even imported: it imports torch (~3 s) meanwhile, ~0.4 s sooner than the command's own
    start (``core.api.check_device``). Not for ``--help``; a bad setting is left to the
    command, which reports it in one line."""
    if command() not in TRAINING_COMMANDS or {"--help", "-h"} & set(sys.argv[1:]):
        return
    try:
        from core.executors import start_workers_early as start
        from core.executors import workers_skip_driver_main

        workers_skip_driver_main()  # the entry point would import the whole CLI in each worker
        start()
    except Exception:  # noqa: BLE001 - e.g. a bad PAIRS_START_METHOD: the command says it
        return
    FORK_SERVER_STARTED.append(True)


def stop_unused_fork_server() -> None:
    """At the command's end: stop the fork server ``start_workers_early`` started if no
    executor uses it (the command failed first, or is done), rather than let it finish importing
    torch with this process's output pipes open."""
    if FORK_SERVER_STARTED:
        from core.executors import stop_fork_server

        stop_fork_server()
