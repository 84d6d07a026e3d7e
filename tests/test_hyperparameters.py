"""Each hyperparameter is declared once: a ``RunConfig`` field with its ``Param``.

The toy field below follows the recipe of docs/architecture.md ("How to add a hyperparameter"):
a field declared with ``hyperparameter(...)`` — here on a subclass, since a test cannot edit
``RunConfig`` — is a flag of ``pairs run`` / ``pairs queue`` (and only those that the Param says),
a field of the console's queue form, a label, and it queues; nothing else is written for it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from test_tui_support import settle, wait_for
from textual.widgets import Input, Label, SelectionList
from typer.testing import CliRunner

import tui.app as tui_app
from core import api
from core.config import FRACTION, ConfigError, RunConfig, hyperparameter, options_label, params
from tui.app import PairsApp
from tui.cli import app as pairs_app
from tui.cli import build_app
from tui.flags import flag_table
from tui.screens.queue import QueueScreen

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@dataclass(frozen=True)
class ToyConfig(RunConfig):
    """RunConfig with one hyperparameter more, beyond the paper (left out of ids at 0)."""

    label_smoothing: float = hyperparameter(
        0.0,
        "Toy: label smoothing of the comparison loss.",
        "Label smoothing",
        bounds=FRACTION,
        extension=True,
        short="ls",
    )


def _help(app, command: str) -> str:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_toy_field_is_a_flag_of_run_and_queue_but_not_of_grid():
    toy = build_app(ToyConfig)
    for command in ("run", "queue"):
        text = _help(toy, command)
        assert "--label-smoothing" in text
        assert re.search(
            r"Toy: label smoothing of the comparison loss\. Repeat or comma-separate "
            r"for several\. \[default: 0\.0\]",
            text,
        )
        assert "--label-smoothing" not in _help(pairs_app, command)  # RunConfig's app: untouched
    assert "--label-smoothing" not in _help(toy, "grid")  # not preset=True


def test_queueing_with_the_toy_field(tmp_path):
    db = tmp_path / "runs.db"
    toy = build_app(ToyConfig)
    result = runner.invoke(
        toy,
        [
            "queue",
            "--arch",
            "A1",
            "--kernel",
            "3",
            "--reps",
            "2",
            "--epochs",
            "2",
            "--label-smoothing",
            "0,0.1",
            "--db",
            str(db),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "queued 4 new run(s) (2 configuration(s) x 2 reps" in result.output
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, options FROM configs ORDER BY id").fetchall()
    options = sorted(json.loads(text).get("label_smoothing") for _, text in rows)
    assert options == [0.0, 0.1]
    # at its default the toy field is left out of the id: the configuration of RunConfig's
    plain = RunConfig(arch="A1", kernel=3, epochs=2)
    assert ToyConfig(arch="A1", kernel=3, epochs=2).id == plain.id
    assert {row[0] for row in rows} == {plain.id, ToyConfig(arch="A1", kernel=3, epochs=2, label_smoothing=0.1).id}
    assert ToyConfig(label_smoothing=0.1).options_label() == "ls 0.1"
    assert options_label({"label_smoothing": 0.1}, ToyConfig) == "ls 0.1"


def test_the_toy_field_is_validated_by_its_bounds(tmp_path):
    db = tmp_path / "runs.db"
    result = runner.invoke(build_app(ToyConfig), ["queue", "--label-smoothing", "1", "--db", str(db)])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "label-smoothing must be a number >= 0 and < 1, got 1.0"
    result = runner.invoke(build_app(ToyConfig), ["queue", "--label-smoothing", "x", "--db", str(db)])
    assert str(result.exception) == "--label-smoothing must be a number, got 'x'"
    assert not db.exists()


class ToyApp(PairsApp):
    """The console with ToyConfig's queue form."""

    CSS_PATH = str(Path(tui_app.__file__).parent / PairsApp.CSS_PATH)
    MODES = {**PairsApp.MODES, "queue": lambda: QueueScreen(ToyConfig)}


async def test_the_toy_field_is_in_the_queue_form_and_queues(tmp_path):
    db = tmp_path / "runs.db"
    app = ToyApp(db, workers=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        screen = await settle(pilot, QueueScreen)
        field = screen.query_one("#q-label_smoothing", Input)
        assert field.value == "0"  # its default, as the form shows numbers
        labels = [str(label.render()) for label in screen.query(Label)]
        assert labels[-1] == "Label smoothing"  # after the paper's and the other options
        for name, values in (("structure", ["shared"]), ("arch", ["A1"]), ("kernel", [3])):
            selection = screen.query_one(f"#q-{name}", SelectionList)
            selection.deselect_all()
            for value in values:
                selection.select(value)
        for name, value in dict(reps=2, epochs=2, train_pairs=100, val_pairs=10, test_pairs=100).items():
            screen.query_one(f"#q-{name}", Input).value = str(value)
        field.value = "2"  # out of its bounds: marked, nothing to queue
        await wait_for(pilot, lambda: "label_smoothing" in screen.plan.errors)
        assert field.has_class("invalid-field")
        assert "label-smoothing must be a number >= 0 and < 1" in screen.plan.errors["label_smoothing"]
        field.value = "0.1,0.2"
        await wait_for(pilot, lambda: screen.plan.ok and "adds" in screen.preview_text)
        assert "2 configuration(s) x 2 reps = 4 runs" in screen.preview_text
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: db.exists() and _count_runs(db) == 4)
    with api.open_store(db, create=False) as store:
        rows = store.db.query("SELECT options FROM configs")
        assert sorted(json.loads(r["options"])["label_smoothing"] for r in rows) == [0.1, 0.2]


def _count_runs(db: Path) -> int:
    """Runs in ``db``; 0 while the console is still creating it."""
    try:
        with api.open_store(db, create=False) as store:
            return len(store.run_rows())
    except api.USER_ERRORS:
        return 0


def test_every_runconfig_field_has_a_param_and_the_derived_tables_agree():
    from core.config import EXTENSION_FIELDS, GRID_FIELDS, GRID_PARSERS
    from core.protocol import PROTOCOL_FIELDS

    names = [hp.name for hp in params()]
    assert names[:3] == list(GRID_FIELDS) == ["structure", "arch", "kernel"]
    assert set(PROTOCOL_FIELDS) == set(names) - set(GRID_FIELDS)
    assert set(EXTENSION_FIELDS) == {hp.name for hp in params() if hp.param.short}
    assert set(GRID_PARSERS) == set(names) - {"data", "train_pairs", "val_pairs", "test_pairs"}
    assert [hp.name for hp in params(ToyConfig)] == [*names, "label_smoothing"]


def test_the_readme_flag_table_is_generated_from_the_params():
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- flag table: python -m tui.flags -->\n", "<!-- end of flag table -->"
    assert begin in readme and end in readme
    table = readme.split(begin, 1)[1].split(end, 1)[0]
    assert table == flag_table(), (
        "README.md's flag table is stale: run python -m tui.flags --write and commit README.md"
    )
