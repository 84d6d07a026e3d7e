"""Pilot tests of the pairs console: every screen, live updates, errors, workers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from rich.text import Text
from test_tui_support import (
    AUX_A1,
    SHARED_A1,
    SHARED_A2,
    TINY,
    build_fixture_db,
    insert_epoch,
    set_status,
    settle,
    wait_for,
    wait_for_sync,
)
from textual.command import CommandPalette
from textual.widgets import Button, DataTable, Input, SelectionList, Static

from core import api
from core.report import to_markdown
from core.store import run_id
from tui.app import make_app
from tui.screens.dialogs import QuitScreen
from tui.screens.experiments import ExperimentsScreen
from tui.screens.help import HelpScreen
from tui.screens.queue import QueueScreen
from tui.watcher import DataChanged, DbWatcher
from tui.widgets import pool as pool_module

SIZE = (120, 40)


def runs_in(path) -> list[dict]:
    with api.open_store(path, create=False) as store:
        return store.run_rows()


def banner(app) -> str:
    return str(app.screen.query_one("DbBanner").render())


def plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def table_texts(table: DataTable) -> list[list[str]]:
    return [[plain(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def open_queue(pilot) -> QueueScreen:
    await pilot.press("2")
    return await settle(pilot, QueueScreen)


def fill_form(screen: QueueScreen, *, structures=("shared",), archs=("A1",), kernels=(3,), **fields) -> None:
    for name, values in (("structure", structures), ("arch", archs), ("kernel", kernels)):
        selection = screen.query_one(f"#q-{name}", SelectionList)
        selection.deselect_all()
        for value in values:
            selection.select(value)
    for name, value in fields.items():
        screen.query_one(f"#q-{name}", Input).value = str(value)


TINY_FIELDS = dict(reps=2, epochs=2, train_pairs=100, val_pairs=10, test_pairs=100)


# -- experiments ---------------------------------------------------------------------------------


async def test_experiments_lists_configurations_with_progress(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    app = make_app(db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot, ExperimentsScreen)
        rows = {r[0]: r for r in table_texts(screen.query_one("#exp-table", DataTable))}
        # Setup, Done, Val %, Test %, Run, Queued, Failed, Epoch, ...
        assert [rows["shared A1 k3"][i] for i in (1, 4)] == ["3/3", ""]
        assert [rows["independent A1 k3"][i] for i in (1, 4)] == ["2/3", "1"]
        assert rows["independent A1 k3"][7] == "1/2"  # the running rep's current epoch
        assert rows["shared-aux A1 k3"][6] == "1"
        failures = table_texts(screen.query_one("#exp-failure-table", DataTable))
        assert failures == [["shared-aux A1 k3", "2", "1", "RuntimeError: boom"]]
        assert "1 running" in str(screen.query_one("#exp-counts", Static).render())


async def test_experiments_filter_and_sort(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    app = make_app(db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot, ExperimentsScreen)
        table = screen.query_one("#exp-table", DataTable)
        await pilot.press("slash", *"aux")
        assert [r[0] for r in table_texts(table)] == ["shared-aux A1 k3"]
        screen.query_one("#exp-filter", Input).value = "running"
        await pilot.pause()
        assert [r[0] for r in table_texts(table)] == ["independent A1 k3"]
        screen.query_one("#exp-filter", Input).value = "shared a1"  # not shared-aux
        await pilot.pause()
        assert [r[0] for r in table_texts(table)] == ["shared A1 k3"]
        config_id = next(r["id"] for r in screen.snapshot.progress)
        screen.query_one("#exp-filter", Input).value = config_id[:6]  # hidden: never matched
        await pilot.pause()
        assert table_texts(table) == []
        screen.query_one("#exp-filter", Input).value = ""
        await pilot.press("escape", "s")  # sort by Done, most first
        assert screen.sort_key == "done"
        assert [r[1] for r in table_texts(table)][-1] == "2/3"
        await pilot.click("#exp-table", offset=(3, 0))  # the Setup header: A -> Z
        await pilot.pause()
        assert screen.sort_key == "setup"
        assert [r[0] for r in table_texts(table)][0] == "independent A1 k3"


async def test_enter_opens_plots_of_the_highlighted_configuration(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    app = make_app(db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ExperimentsScreen)
        await pilot.press("down", "enter")
        from tui.screens.plots import PlotsScreen

        plots = await settle(pilot, PlotsScreen)
        assert app.selected_config == SHARED_A1.id
        curve = plots.query_one("#plot-val_acc")
        await wait_for(pilot, lambda: len(curve.series) == 3)
        assert curve.mean[-1] == pytest.approx(82.0)
        assert curve.std[-1] == pytest.approx(2.0)
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: plots.curves and plots.curves["config_id"] == SHARED_A2.id)
        assert curve.mean[-1] == pytest.approx(92.0)


# -- live updates --------------------------------------------------------------------------------


async def test_new_epoch_rows_update_plot_and_list_without_a_key(fresh_db):
    with api.open_store(fresh_db) as store:
        api.queue(store, [TINY], 2)
    app = make_app(fresh_db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        experiments = await settle(pilot, ExperimentsScreen)
        table = experiments.query_one("#exp-table", DataTable)
        assert table_texts(table)[0][1:8] == ["0/2", "-", "-", "", "2", "", ""]
        writer = api.open_store(fresh_db)  # another connection, as a worker's driver is
        set_status(writer, TINY, 0, "running", worker="elsewhere:1", host="elsewhere")
        insert_epoch(writer, TINY, 0, 1, 0.9, 1.0, 0.5)
        await wait_for(pilot, lambda: table_texts(table)[0][7] == "1/2")
        assert table_texts(table)[0][4] == "1"

        await pilot.press("3")
        from tui.screens.plots import PlotsScreen

        plots = await settle(pilot, PlotsScreen)
        curve = plots.query_one("#plot-train_loss")
        await wait_for(pilot, lambda: curve.series == {0: [pytest.approx(0.9)]})
        posted = app.watcher.posted
        insert_epoch(writer, TINY, 0, 2, 0.5, 0.8, 0.7)
        # no key pressed: the watcher's next poll brings the row to the plot (the wait's bound
        # only keeps a broken watcher from hanging the test)
        await wait_for(pilot, lambda: curve.series[0] == [pytest.approx(0.9), pytest.approx(0.5)])
        assert app.watcher.posted > posted  # it came through a DataChanged of the watcher
        set_status(writer, TINY, 1, "running", worker="elsewhere:1", host="elsewhere")
        insert_epoch(writer, TINY, 1, 1, 0.7, 0.9, 0.6)
        await wait_for(pilot, lambda: len(curve.series) == 2)
        assert curve.mean[0] == pytest.approx(0.8)
        assert curve.std[0] == pytest.approx(0.1414, abs=1e-3)
        writer.close()


def test_watcher_coalesces_changes(fresh_db):
    posted: list[DataChanged] = []
    watcher = DbWatcher(fresh_db, posted.append, interval=0.02)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        wait_for_sync(lambda: len(posted) == 1)  # the database became available
        with api.open_store(fresh_db) as store:
            for rep in range(1, 6):
                api.queue(store, [TINY], rep)
                time.sleep(0.03)
        time.sleep(0.1)
        assert len(posted) == 1  # not acknowledged yet: the changes wait, coalesced
        watcher.ack()
        wait_for_sync(lambda: len(posted) == 2)
        time.sleep(0.1)
        assert len(posted) == 2
    finally:
        watcher.stop()
        thread.join(5)
    assert not thread.is_alive()


# -- database problems ---------------------------------------------------------------------------


async def test_missing_database_message_then_created_by_first_queue(tmp_path):
    db = tmp_path / "new.db"
    app = make_app(db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ExperimentsScreen)
        assert "No database at" in banner(app) and "Queue screen" in banner(app)
        queue = await open_queue(pilot)
        fill_form(queue, **TINY_FIELDS)
        await wait_for(pilot, lambda: "creates the database" in queue.preview_text)
        await pilot.press("ctrl+s")

        def queued() -> int:  # the file may exist a moment before its schema does
            try:
                return len(runs_in(db)) if db.exists() else 0
            except api.StoreError:
                return 0

        await wait_for(pilot, lambda: queued() == 2)
        await pilot.press("1")
        await wait_for(
            pilot, lambda: app.db_error is None and app.screen.query_one("#exp-table", DataTable).row_count == 1
        )
        assert not app.screen.query_one("DbBanner").has_class("-shown")


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("garbage", "is not an SQLite database"),
        ("newer", "newer than this pairs understands"),
        ("foreign", "another program"),
    ],
)
async def test_unusable_database_shows_a_message(tmp_path, damage, expected):
    db = tmp_path / "runs.db"
    if damage == "garbage":
        db.write_bytes(b"this is no database at all" * 10)
    elif damage == "newer":
        api.open_store(db).close()
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE photos (id INTEGER)")
    app = make_app(db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ExperimentsScreen)
        assert app.db_error is not None
        assert expected in banner(app) or (damage == "foreign" and "pairs" in banner(app))
        await pilot.press("3", "4", "1")  # every screen copes
        await pilot.pause(0.3)
        assert app.is_running
        await pilot.press("w")  # no worker started only to exit on it
        await pilot.pause()
        assert not app.pool.running and not app.screen.query_one("#exp-failures").display


# -- queue form ----------------------------------------------------------------------------------


async def test_queue_form_queues_the_product(fresh_db):
    app = make_app(fresh_db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        queue = await open_queue(pilot)
        fill_form(queue, structures=("independent", "shared-aux"), archs=("A1", "A2"), **TINY_FIELDS)
        await wait_for(pilot, lambda: "adds [b]8[/b] new run(s)" in queue.preview_text)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(runs_in(fresh_db)) == 8)
        await wait_for(pilot, lambda: "adds [b]0[/b] new run(s); 8 already" in queue.preview_text)
    with api.open_store(fresh_db) as store:
        configs = {store.config(r["config_id"]) for r in store.run_rows()}
    assert {(c.structure, c.arch, c.kernel) for c in configs} == {
        (s, a, 3) for s in ("independent", "shared-aux") for a in ("A1", "A2")
    }
    assert {(c.epochs, c.train_pairs, c.val_pairs, c.lr) for c in configs} == {(2, 100, 10, api.base_config().lr)}


async def test_typed_values_and_several_values_per_field(fresh_db):
    app = make_app(fresh_db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        queue = await open_queue(pilot)
        fill_form(queue, **{**TINY_FIELDS, "epochs": ""})
        await pilot.click("#q-epochs")
        await pilot.press(*"2,3")
        await wait_for(pilot, lambda: "2 configuration(s) x 2 reps" in queue.preview_text)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(runs_in(fresh_db)) == 4)
        await pilot.press("escape", "1")  # out of the field: digits switch screens again
        await settle(pilot, ExperimentsScreen)


async def test_invalid_values_are_marked_and_never_sent(fresh_db):
    app = make_app(fresh_db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        queue = await open_queue(pilot)
        fill_form(queue, archs=(), epochs="two", lr="-1", optimizer="adamw", reps="0", val_pairs="5000")
        await pilot.pause()
        for name in ("epochs", "lr", "optimizer", "reps", "val_pairs"):
            assert queue.query_one(f"#q-{name}").has_class("invalid-field"), name
        assert not queue.query_one("#q-batch_size").has_class("invalid-field")
        assert queue.query_one("#q-arch").has_class("invalid-field")
        assert queue.query_one("#queue-go", Button).disabled
        errors = str(queue.query_one("#queue-errors", Static).render())
        assert "epochs must be an integer" in errors and "adamw" in errors
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert runs_in(fresh_db) == []
        await pilot.press("ctrl+r")  # back to the defaults: valid again
        await wait_for(pilot, lambda: not queue.query_one("#queue-go", Button).disabled)
        assert not queue.query(".invalid-field")


async def test_more_pairs_than_the_data_has_are_marked_not_a_crash(fresh_db):
    app = make_app(fresh_db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        queue = await open_queue(pilot)
        fill_form(queue, train_pairs="1300", test_pairs="2000")
        await pilot.pause()
        for name in ("train_pairs", "test_pairs"):
            assert queue.query_one(f"#q-{name}").has_class("invalid-field"), name
        errors = str(queue.query_one("#queue-errors", Static).render())
        assert "use at most 1250 or --data mnist" in errors
        assert queue.query_one("#queue-go", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert app.is_running and runs_in(fresh_db) == []


async def test_paper_preset_is_one_key(fresh_db):
    app = make_app(fresh_db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        queue = await open_queue(pilot)
        queue.query_one("#q-reps", Input).value = "2"
        await pilot.press("ctrl+g")
        await wait_for(
            pilot,
            lambda: (
                "36 configuration(s) (the paper's grid) x 2 reps" in queue.preview_text
                and "adds [b]72[/b]" in queue.preview_text
            ),
        )
        assert queue.plan.configs == api.plan_preset("paper", {}, api.base_config(), 2)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(runs_in(fresh_db)) == 72)


# -- tables --------------------------------------------------------------------------------------


async def open_tables(pilot, tab: str):
    from tui.screens.tables import TablesScreen

    await pilot.press("4")
    screen = await settle(pilot, TablesScreen)
    screen.query_one("#tables-tabs").active = f"tab-{tab}"
    await pilot.pause()
    return screen


async def test_tables_show_known_mean_std_and_bold_the_best(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    app = make_app(db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_tables(pilot, "shared")
        table = screen.query_one("#table-shared", DataTable)
        a1, a2 = table.get_row_at(0), table.get_row_at(1)
        assert [plain(c) for c in a1] == ["A1", "3", "0.3000 ± 0.0000", "0.6000 ± 0.1000", "82.00 ± 2.00", "3/3"]
        assert [plain(c) for c in a2][3:5] == ["0.4500 ± 0.0500", "92.00 ± 2.00"]
        assert "bold" in str(a2[3].style) and "bold" in str(a2[4].style)
        assert "bold" not in str(a1[3].style) and "bold" not in str(a1[4].style)
        assert "bold" not in str(a2[2].style)  # train loss is never bolded

        independent = screen.query_one("#table-independent", DataTable)
        assert plain(independent.get_row_at(0)[5]) == "2/3 (unfinished)"
        assert "yellow" in str(independent.get_row_at(0)[5].style)

        best = table_texts(screen.query_one("#table-best", DataTable))
        assert [r[:3] for r in best] == [["independent", "A1", "3"], ["shared", "A2", "3"], ["shared-aux", "A1", "3"]]
        assert best[1][5] == "93.00 ± 2.00"
        notes = str(screen.query_one("#notes-best", Static).render())
        assert "independent vs shared: p = " in notes


async def test_export_writes_the_table_on_screen(tmp_path, monkeypatch):
    db = build_fixture_db(tmp_path / "runs.db")
    monkeypatch.chdir(tmp_path)
    app = make_app(db, workers=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_tables(pilot, "shared")
        await pilot.press("m", "l", "c")
        await pilot.pause()
        markdown = (tmp_path / "pairs-table-III-shared.md").read_text()
        assert markdown == to_markdown([screen.data.tables["shared"]])
        assert "| A2 | 3 | 0.2000 ± 0.0000 | **0.4500 ± 0.0500** | **92.00 ± 2.00** | 3/3 |" in markdown
        latex = (tmp_path / "pairs-table-III-shared.tex").read_text()
        assert r"\textbf{92.00 $\pm$ 2.00}" in latex
        csv_lines = (tmp_path / "pairs-table-III-shared.csv").read_text().splitlines()
        assert csv_lines[0].startswith("protocol,protocol_id,structure,arch,kernel")
        protocol = screen.data.current.protocol
        assert len(csv_lines) == 3 and csv_lines[2].startswith(f"{protocol.label},{protocol.id},shared,A2,3")
        screen.query_one("#tables-tabs").active = "tab-best"
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        best_csv = (tmp_path / "pairs-best.csv").read_text()
        assert best_csv.splitlines()[2].startswith(f"{protocol.label},{protocol.id},shared,A2,3")
        assert any("pairs-best.csv" in n.message for n in app._notifications)


# -- everywhere ----------------------------------------------------------------------------------


async def test_help_theme_palette_and_small_terminal(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    app = make_app(db, workers=2)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, ExperimentsScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, ExperimentsScreen)
        dark = app.current_theme.dark
        await pilot.press("d")
        assert app.current_theme.dark is not dark
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Go to Tables")
        await pilot.pause(0.5)
        await pilot.press("enter")
        from tui.screens.tables import TablesScreen

        await settle(pilot, TablesScreen)
        for key in ("1", "2", "3", "4"):  # every screen lays out at 80x24
            await pilot.press(key)
            await pilot.pause(0.2)
            assert app.screen.query_one("Footer").region.y == 23


def test_main_help_and_options(capsys):
    from tui.app import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--db PATH" in out and "PAIRS_DB" in out


def test_db_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PAIRS_DB", str(tmp_path / "env.db"))
    assert make_app().db_path == tmp_path / "env.db"
    assert make_app(tmp_path / "flag.db").db_path == tmp_path / "flag.db"
    monkeypatch.delenv("PAIRS_DB")
    assert str(make_app().db_path) == "runs.db"


@pytest.mark.slow
def test_importing_the_app_never_loads_torch_pandas_nor_numpy():
    code = textwrap.dedent("""
        import sys
        import tui.app, tui.watcher
        import tui.screens.plots, tui.screens.tables, tui.screens.help, tui.screens.dialogs
        from tui.app import make_app
        make_app("unused.db")
        heavy = ("torch", "torchvision", "pandas", "numpy")  # start-up time (core/store/_sqlite_utils.py)
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


# -- workers -------------------------------------------------------------------------------------

FAKE_WORK = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    print("fake work running", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def fake_work(monkeypatch):
    """``pairs work`` replaced by a sleeper that exits 130 on SIGINT, like the real driver."""
    monkeypatch.setattr(pool_module, "work_command", lambda db, n: [sys.executable, "-c", FAKE_WORK])


@pytest.mark.parametrize("choice", ["stop", "keep", "cancel"])
@pytest.mark.slow
async def test_quit_with_running_workers_asks(tmp_path, fake_work, choice):
    db = build_fixture_db(tmp_path / "runs.db")
    app = make_app(db, workers=3)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ExperimentsScreen)
        await pilot.press("w")
        process = app.pool.process
        assert process is not None and app.pool.workers == 3
        await wait_for(pilot, lambda: "fake work running" in app.pool.log_path.read_text())
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press({"stop": "s", "keep": "k", "cancel": "escape"}[choice])
        await pilot.pause(0.2)
        if choice == "cancel":
            assert app.is_running and app.pool.running
            app.pool.stop()
    try:
        if choice == "keep":
            time.sleep(0.3)
            assert process.poll() is None  # still running after the app exited
        else:
            assert process.wait(10) == 130
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.mark.slow
async def test_start_and_stop_workers_end_to_end(fresh_db):
    """Real ``pairs work`` subprocesses on a tiny grid: stop after an epoch, resume, finish."""
    with api.open_store(fresh_db) as store:
        api.queue(store, [TINY], 2)
    reader = api.open_store(fresh_db, create=False)

    def epochs() -> int:
        return reader.db.execute("SELECT count(*) FROM epochs").fetchone()[0]

    app = make_app(fresh_db, workers=1)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot, ExperimentsScreen)
        await pilot.press("w")
        assert app.pool.running
        await wait_for(pilot, lambda: epochs() >= 1, timeout=120)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.pool.process is None, timeout=60)
        assert reader.status_counts()["running"] == 0  # stopped runs went back to the queue
        table = screen.query_one("#exp-table", DataTable)
        screen.query_one("#pool-n", Input).value = "2"
        await pilot.click("#pool-start")
        assert app.pool.workers == 2
        assert app.focused is table  # the keys act on the screen, not in the count box
        await wait_for(pilot, lambda: reader.status_counts()["done"] == 2, timeout=120)
        await wait_for(pilot, lambda: app.pool.process is None, timeout=30)
        await wait_for(pilot, lambda: table_texts(table)[0][1] == "2/2")
    rows = reader.run_rows()
    assert [r["status"] for r in rows] == ["done", "done"]
    assert epochs() == 4  # two epochs each, none doubled by the stop and resume
    assert run_id(TINY, 0) in {r["id"] for r in rows}
    reader.close()


def test_work_command_runs_the_cli_module(tmp_path):
    command = pool_module.work_command(tmp_path / "x.db", 3)
    assert command[:4] == [sys.executable, "-P", "-m", "tui.cli"]  # -P: not the cwd's tui/
    assert command[4:] == ["work", "--workers", "3", "--db", str(tmp_path / "x.db")]


async def test_start_refused_when_nothing_to_train(tmp_path):
    app = make_app(tmp_path / "none.db", workers=1)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ExperimentsScreen)
        await pilot.press("w")
        assert app.pool.process is None
        assert not (tmp_path / "none.db").exists()


# keep the unused import checker quiet about fixtures used only by name
_ = (AUX_A1,)
