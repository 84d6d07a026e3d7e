"""The ``pairs`` command line: thin Typer commands over the core library.

One ``typer.Typer`` per module, merged into the root app without a group name (Typer's
"one file per command"): ``runs`` (run, queue, grid, work, status, retry) and ``reports``
(table, best, models, plot, report). ``options`` builds the hyperparameter flags from
``RunConfig``'s fields; ``build_app(config)`` builds the whole command line for a
``RunConfig`` class (a subclass adds fields, e.g. a test's toy hyperparameter).
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from core import __version__, api
from core.config import RunConfig
from tui._early import EARLY_SIGNALS as _EARLY_SIGNALS
from tui._early import TRAINING_COMMANDS, command, stop_unused_fork_server
from tui._early import defer_signals as _defer_signals
from tui.cli import reports, runs
from tui.cli.options import (
    DbOption,
    complete_arch,
    complete_format,
    complete_protocol,
    complete_structure,
    protocol_choice,
)
from tui.cli.output import err, out
from tui.literal import clean_block, literal

__all__ = [
    "DbOption",
    "app",
    "build_app",
    "complete_arch",
    "complete_format",
    "complete_protocol",
    "complete_structure",
    "err",
    "main",
    "out",
    "protocol_choice",
]


def _version(value: bool) -> None:
    if value:
        out.print(f"pairs {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """pairs: queue, train, watch and tabulate the digit-comparison study."""


def build_app(config: type[RunConfig] = RunConfig) -> typer.Typer:
    """The ``pairs`` app, its hyperparameter flags from ``config``'s fields."""
    root = typer.Typer(
        name="pairs",
        help="Experiment console for weight sharing and auxiliary losses on MNIST digit pairs.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=True,
    )
    root.callback()(_root)
    root.add_typer(runs.make_app(config))
    root.add_typer(reports.app)
    return root


app = build_app()


def _started() -> None:
    """Signals while the program started: exit 130 at once (nothing was done yet). Then only
    ``run`` and ``work`` keep deferring them (their driver stops cleanly); the other commands
    are interrupted by Ctrl-C as usual."""
    if _EARLY_SIGNALS:
        err.print("interrupted: nothing was done")
        _ignore_signals()
        stop_unused_fork_server()
        sys.exit(130)
    if command() not in TRAINING_COMMANDS:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _ignore_signals() -> None:
    """The command is done: a signal from now on changes nothing, and must not kill the
    interpreter's exit with -2 (its finalisation puts SIG_DFL back in place of a Python handler
    such as ``tui._early``'s; SIG_IGN stays)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def main() -> None:
    """Entry point: every expected error is one line on stderr and exit code 2."""
    _defer_signals()
    _started()
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("interrupted")
        code = 130
    except api.USER_ERRORS as exc:
        err.print(literal(f"error: {exc}"))
        code = 2
    except KeyboardInterrupt:
        err.print("interrupted: unfinished runs are queued again")
        code = 130
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            out.print(clean_block(exc.ctx.get_help()), markup=False, highlight=False)
            code = 0
        else:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx else ""
            err.print(literal(f"error: {exc.format_message()}{hint}"))
            code = 2
    _ignore_signals()
    stop_unused_fork_server()
    if _EARLY_SIGNALS and code in (0, None):  # noted after the driver stopped, before the end
        err.print("interrupted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (typer vendors click in recent releases, so match by shape)."""
    return hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2
