"""Integers beyond any sensible run (and beyond SQLite's 64 bits), and figure paths that cannot
be written: one line, exit 2, nothing queued; the queue form marks the field and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_tui_support import build_fixture_db, settle, wait_for
from textual.widgets import Button, Input, SelectionList, Static

from core import api
from core.config import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LR_STEP,
    MAX_SEED,
    ConfigError,
    RunConfig,
)
from core.curves import check_figure_path
from tui.app import make_app
from tui.screens.queue import QueueScreen

HUGE = "99999999999999999999"  # beyond SQLite's 64-bit integers
INT64_MAX = str(2**63 - 1)
TINY = [
    "--arch",
    "A1",
    "--kernel",
    "3",
    "--reps",
    "1",
    "--train-pairs",
    "100",
    "--val-pairs",
    "10",
    "--test-pairs",
    "100",
]


def pairs(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(result, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def run_count(path) -> int:
    with api.open_store(path, create=False) as store:
        return len(store.run_rows())


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--epochs", HUGE, f"epochs must be an integer >= 1 and <= {MAX_EPOCHS:,}"),
        ("--epochs", INT64_MAX, f"epochs must be an integer >= 1 and <= {MAX_EPOCHS:,}"),
        ("--batch-size", HUGE, f"batch-size must be an integer >= 1 and <= {MAX_BATCH_SIZE:,}"),
        ("--lr-step", HUGE, f"lr-step must be an integer >= 1 and <= {MAX_LR_STEP:,}"),
        ("--seed", HUGE, f"seed must be an integer >= 0 and <= {MAX_SEED:,}"),
        ("--seed", INT64_MAX, f"seed must be an integer >= 0 and <= {MAX_SEED:,}"),
        ("--train-pairs", HUGE, "train-pairs must be an integer >= 1 and <= 1,000,000"),
        ("--test-pairs", HUGE, "test-pairs must be an integer >= 1 and <= 1,000,000"),
        ("--val-pairs", HUGE, "val-pairs must be between"),
        ("--hidden", HUGE, "hidden must be an integer between 0 and 100000"),
        ("--shift", HUGE, "shift must be an integer between 0 and 7"),
        ("--reps", HUGE, "--reps must be an integer from 1 to 1000"),
    ],
)
@pytest.mark.slow
def test_huge_integers_are_refused_before_anything_is_queued(fresh_db, flag, value, message):
    before = fresh_db.read_bytes()
    for command in ("queue", "run"):
        # a single-valued flag given twice: the last value counts
        one_line_error(pairs(command, *TINY, flag, value, "--db", fresh_db), message)
    assert fresh_db.read_bytes() == before
    assert run_count(fresh_db) == 0


@pytest.mark.slow
def test_huge_values_in_a_list_and_for_work_are_refused(fresh_db):
    one_line_error(
        pairs("queue", *TINY, "--epochs", f"2,{INT64_MAX}", "--db", fresh_db), "epochs must be an integer >= 1"
    )
    assert run_count(fresh_db) == 0
    one_line_error(
        pairs("grid", "paper", "--reps", "1", "--epochs", HUGE, "--db", fresh_db), "epochs must be an integer >= 1"
    )
    assert run_count(fresh_db) == 0
    assert pairs("queue", *TINY, "--epochs", "2", "--db", fresh_db).returncode == 0
    before = fresh_db.read_bytes()
    one_line_error(
        pairs("work", "--max-retries", HUGE, "--db", fresh_db), "--max-retries must be an integer >= 0 and <= 100"
    )
    one_line_error(pairs("work", "--workers", HUGE, "--db", fresh_db), "--workers must be from 1")
    one_line_error(pairs("plot", "--kernel", HUGE, "--db", fresh_db), "unknown kernel")
    assert fresh_db.read_bytes() == before


def test_the_bounds_live_in_runconfig():
    for field, value in (
        ("epochs", MAX_EPOCHS + 1),
        ("lr_step", 2**63),
        ("batch_size", 10**20),
        ("seed", MAX_SEED + 1),
        ("train_pairs", 10**30),
    ):
        with pytest.raises(ConfigError, match=field.replace("_", "-")):
            RunConfig(**{field: value})
    at_the_bounds = RunConfig(epochs=MAX_EPOCHS, lr_step=MAX_LR_STEP, batch_size=MAX_BATCH_SIZE, seed=MAX_SEED)
    assert at_the_bounds.seed == MAX_SEED
    # a 4,000-digit value is not repeated in the message
    with pytest.raises(ConfigError) as caught:
        RunConfig(epochs=10**4000)
    assert len(str(caught.value)) < 120


async def test_queue_form_marks_a_huge_integer_and_says_why(fresh_db):
    app = make_app(fresh_db, workers=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        queue = await settle(pilot, QueueScreen)
        for name, values in (("structure", ("shared",)), ("arch", ("A1",)), ("kernel", (3,))):
            selection = queue.query_one(f"#q-{name}", SelectionList)
            selection.deselect_all()
            for value in values:
                selection.select(value)
        for name, value in dict(
            reps=1,
            epochs=INT64_MAX,
            seed=HUGE,
            batch_size=HUGE,
            lr_step=HUGE,
            train_pairs=100,
            val_pairs=10,
            test_pairs=100,
        ).items():
            queue.query_one(f"#q-{name}", Input).value = str(value)
        await pilot.pause()
        for name in ("epochs", "seed", "batch_size", "lr_step"):
            assert queue.query_one(f"#q-{name}").has_class("invalid-field"), name
        assert queue.query_one("#queue-go", Button).disabled
        errors = str(queue.query_one("#queue-errors", Static).render())
        assert f"epochs must be an integer >= 1 and <= {MAX_EPOCHS:,}" in errors
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("not queued" in n.message for n in app._notifications))
        message = next(n.message for n in app._notifications if "not queued" in n.message)
        assert "epochs must be an integer" in message and "seed must be" in message
        await pilot.pause(0.3)
        assert app.is_running and run_count(fresh_db) == 0


# -- pairs plot --output --------------------------------------------------------------------------


@pytest.mark.slow
def test_figure_paths_that_cannot_be_written(tmp_path, fresh_db):
    afile = tmp_path / "afile"
    afile.write_text("a plain file")
    cases = [
        (afile / "x.png", "afile is a file, not a folder"),
        (afile / "deeper" / "x.png", "afile is a file, not a folder"),
        (tmp_path / "fig.txt", "use a name ending in .png, .svg, .pdf"),
        (tmp_path / "fig", "use a name ending in .png"),
        (tmp_path / "missing" / "x.png", "does not exist: create it"),
        (tmp_path, "use a name ending in"),
    ]
    before = fresh_db.read_bytes()
    for output, message in cases:
        with pytest.raises(ConfigError, match=message.split(":")[0].replace(".", r"\.")):
            check_figure_path(output)
        one_line_error(pairs("plot", "--output", output, "--db", fresh_db), message)
    assert afile.read_text() == "a plain file"
    assert fresh_db.read_bytes() == before


@pytest.mark.slow
def test_figure_into_a_folder_that_refuses_it(tmp_path):
    """An unwritable folder (as root, which writes anywhere else, /proc): one line, no file."""
    db = build_fixture_db(tmp_path / "fixture.db")
    if os.geteuid() == 0:
        target, message = Path("/proc/pairs-figure.png"), "cannot write /proc/pairs-figure.png"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target, message = locked / "x.png", "is not writable"
    try:
        one_line_error(pairs("plot", "--arch", "A1", "--kernel", "3", "--output", target, "--db", db), message)
        assert not target.exists()
    finally:
        if target.parent != Path("/proc"):
            target.parent.chmod(0o700)
    good = tmp_path / "fig.svg"
    assert pairs("plot", "--arch", "A1", "--kernel", "3", "--output", good, "--db", db).returncode == 0
    assert good.stat().st_size > 0
