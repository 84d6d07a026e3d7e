"""Property-based tests of every command's options: never a traceback, and invalid input is one
line on stderr, exit code 2 and an untouched database.

``tui.cli.main`` runs in this process with ``sys.argv`` patched (much faster than a subprocess
per example). The options are read from the Typer app itself, so a new option is covered the day
it is added. Commands that would train (``run``, ``work`` with something queued) are only given
input that is sure to be refused before any training (a guard value known to be invalid); the
others (``queue``, ``grid``, ``table`` ...) get anything, against a throwaway database, and must
either succeed or fail cleanly.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import typer.main
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.api import open_store
from tui import cli

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COMMANDS = typer.main.get_command(cli.app).commands

#: Values that are valid for some option, so that examples also get past the first check.
PLAUSIBLE = [
    "shared",
    "independent",
    "shared-aux",
    "SHARED",
    "A1",
    "a6",
    "A7",
    "3",
    "5",
    "4",
    "1",
    "2",
    "0",
    "-1",
    "0.01",
    "1e6",
    "nan",
    "inf",
    "-inf",
    "sgd",
    "adam",
    "fp32",
    "bf16",
    "on",
    "off",
    "max",
    "avg",
    "sample",
    "mnist",
    "auto",
    "cpu",
    "local",
    "ray",
    "markdown",
    "csv",
    "json",
    "latex",
    "rich",
    "paper",
    "3,5",
    "A1,A2",
    " 3 ",
    ",",
    "",
]
# Real command lines cannot hold NUL; everything else is fair game.
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
NUMBER = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)
VALUE = st.one_of(st.sampled_from(PLAUSIBLE), TEXT, NUMBER)
SMALL_REPS = st.one_of(st.sampled_from(["1", "2", "0", "-3", "x", "1.5", ""]), TEXT)


def options_of(command: str) -> list:
    return [p for p in COMMANDS[command].params if p.param_type_name == "option" and p.name != "db"]


@st.composite
def arguments(draw, command: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Some of ``command``'s options, each with a random value (flags: present or not)."""
    options = [p for p in options_of(command) if p.name not in skip]
    if not options:
        return []
    chosen = draw(st.lists(st.sampled_from(options), max_size=6, unique_by=lambda p: p.name))
    argv: list[str] = []
    for option in chosen:
        flag = draw(st.sampled_from(list(option.opts) + list(option.secondary_opts)))
        if option.is_flag:
            argv.append(flag)
        else:
            argv += [flag, draw(SMALL_REPS if option.name == "reps" else VALUE)]
    return argv


def call(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``pairs ARGV`` in this process: (exit code, stdout, stderr). Any other exception escapes."""
    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    os.chdir(cwd)
    try:
        with (
            mock.patch.object(sys, "argv", ["pairs", *argv]),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(before)
        for sig, handler in handlers.items():  # main() takes the signals over (as pairs does)
            signal.signal(sig, handler)
    return code, out.getvalue(), err.getvalue()


def assert_clean_failure(code: int, err: str, argv: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert "Traceback" not in err


@contextlib.contextmanager
def throwaway_db(queued: bool = False):
    """A folder (the working directory of the call) with an empty pairs database in it."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "runs.db"
        with open_store(db) as store:
            if queued:
                from tests.conftest import tiny

                store.queue([tiny()], 1)
        yield Path(folder), db


@pytest.fixture(autouse=True)
def _no_env_db(monkeypatch):
    monkeypatch.delenv("PAIRS_DB", raising=False)


# A value sure to be refused before anything is trained or written, for commands that train.
GUARDS = [
    ["--reps", "0"],
    ["--workers", "0"],
    ["--device", "tpu"],
    ["--data", "nowhere"],
    ["--epochs", "0"],
    ["--train-pairs", "100000"],
    ["--structure", "siamese"],
    ["--kernel", "4"],
    ["--lr", "-1"],
    ["--batch-size", "0"],
    ["--optimizer", "rmsprop"],
]


@SETTINGS
@given(args=arguments("run"), guard=st.sampled_from(GUARDS), at=st.integers(0, 12))
def test_run_with_an_invalid_value_is_one_line_and_exit_2(args, guard, at):
    at = min(at, len(args)) // 2 * 2  # between two option/value pairs
    argv = ["run", *args[:at], *guard, *args[at:]]
    with throwaway_db() as (folder, db):
        before = db.read_bytes()
        code, _, err = call([*argv, "--db", str(db)], folder)
        assert_clean_failure(code, err, argv)
        assert db.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["runs.db"]


@SETTINGS
@given(args=arguments("queue"))
def test_queue_either_queues_or_fails_cleanly(args):
    argv = ["queue", *args]
    with throwaway_db() as (folder, db):
        before = db.read_bytes()
        code, out, err = call([*argv, "--db", str(db)], folder)
        if code == 0:
            assert "queued" in out or "Usage" in out, (argv, out)
        else:
            assert_clean_failure(code, err, argv)
            assert db.read_bytes() == before


@SETTINGS
@given(name=st.one_of(st.sampled_from(["paper", "PAPER", "nonsense", ""]), TEXT), args=arguments("grid"))
def test_grid_either_queues_or_fails_cleanly(name, args):
    argv = ["grid", *args, "--", name]
    with throwaway_db() as (folder, db):
        before = db.read_bytes()
        code, out, err = call([*argv[:-2], "--db", str(db), *argv[-2:]], folder)
        if code == 0:
            assert "queued" in out or "Usage" in out, (argv, out)
        else:
            assert_clean_failure(code, err, argv)
            assert db.read_bytes() == before


@SETTINGS
@given(
    args=arguments("work"),
    guard=st.sampled_from([["--workers", "0"], ["--device", "tpu"], ["--max-retries", "-1"], ["--executor", "slurm"]]),
)
def test_work_with_an_invalid_value_is_one_line_and_exit_2(args, guard):
    argv = ["work", *args, *guard]  # the guard last: of a repeated option the last one counts
    with throwaway_db(queued=True) as (folder, db):
        before = db.read_bytes()
        code, _, err = call([*argv, "--db", str(db)], folder)
        assert_clean_failure(code, err, argv)
        assert db.read_bytes() == before


@SETTINGS
@given(command=st.sampled_from(["table", "best", "status", "retry", "plot", "models"]), data=st.data())
def test_read_commands_either_answer_or_fail_cleanly(command, data):
    args = data.draw(arguments(command, skip=("output",)))
    argv = [command, *args]
    with throwaway_db() as (folder, db):
        before = db.read_bytes()
        db_args = [] if command == "models" else ["--db", str(db)]
        code, _, err = call([*argv, *db_args], folder)
        if code != 0:
            assert_clean_failure(code, err, argv)
        assert db.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["runs.db"]


@SETTINGS
@example(command="table", path="a\nb.db")  # a newline in a path stays one line (escaped)
@example(command="queue", path="missing/x.db")
@given(
    command=st.sampled_from(["queue", "table", "status", "work", "retry"]),
    path=st.one_of(TEXT, st.sampled_from(["", ".", "..", "sub/runs.db", "missing/x.db", "runs.db/", "-", "--db"])),
)
def test_any_db_path_is_used_or_refused_in_one_line(command, path):
    """Relative paths only (the working directory is a throwaway folder)."""
    if path.startswith("/") or path.startswith("~"):
        path = "." + path
    with tempfile.TemporaryDirectory() as folder:
        code, out, err = call([command, "--db", path], Path(folder))
        if code != 0:
            assert_clean_failure(code, err, [command, "--db", path])
        else:
            assert not err.strip() or "queued" in out or "nothing" in out, (path, out, err)


def test_cuda_without_a_gpu_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    with throwaway_db() as (folder, db):
        before = db.read_bytes()
        code, _, err = call(["run", "--device", "cuda", "--db", str(db)], folder)
        assert_clean_failure(code, err, ["run", "--device", "cuda"])
        assert "no CUDA GPU is visible" in err and db.read_bytes() == before
