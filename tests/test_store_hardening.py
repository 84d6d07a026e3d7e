"""The store against a hostile file system and hand-edited databases (issues 15 and 16).

The file deleted or replaced under a running process (device + inode checked before every write
and on the console's poll); dropped tables and rows edited into values pairs cannot read (refused
on open, naming table, row and column, nothing changed); ``--db`` paths that are symlink loops,
dangling links, go through a file or are too long (each named as it is); one id per setup
however its values are spelled; no empty folder left by a failed MNIST download.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import store as store_module
from core.api import open_store
from core.config import ConfigError, RunConfig, parse_grid, preset_configs
from core.store import DatabaseGone
from tests.conftest import tiny
from tests.test_bad_input_props import call
from tests.test_database_cases import (
    READS,
    WRITES,
    assert_refused,
    build,
    dump,
)

ROOT = Path(__file__).resolve().parents[1]


# -- the file deleted or replaced under an open store ------------------------------------------
def test_a_deleted_file_is_never_written_and_never_recreated(tmp_path):
    db = build(tmp_path / "w.db")
    with open_store(db) as s:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        with pytest.raises(DatabaseGone, match="was deleted"):
            s.queue([tiny(arch="A3")], 2)
        with pytest.raises(DatabaseGone, match="was deleted"):
            s.claim("host:1")
        with pytest.raises(DatabaseGone):
            s.data_version()
        assert "\n" not in str(DatabaseGone("a\nb"))
    assert not db.exists()


def test_a_file_replaced_by_another_is_never_written(tmp_path):
    db = build(tmp_path / "w.db")
    backup = tmp_path / "backup.db"
    store_module.copy_database(db, backup)
    before = dump(backup)
    with open_store(db) as s:
        os.replace(backup, db)  # cp --remove-destination, rsync, an editor: a new inode
        with pytest.raises(DatabaseGone, match="replaced by another file"):
            s.queue([tiny(arch="A3")], 2)
        with pytest.raises(DatabaseGone, match="replaced"):
            s.retry_failed()
    assert dump(db) == before


def test_the_same_file_is_written_as_always(store):
    assert store.queue([tiny()], 2) == 2
    store.check_same_file()


def _wait_for_epochs(db: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        conn = sqlite3.connect(str(db), timeout=30)
        try:
            if conn.execute("SELECT count(*) FROM epochs").fetchone()[0]:
                return
        finally:
            conn.close()
        time.sleep(0.2)
    raise AssertionError("pairs work recorded no epoch")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["delete", "replace"])
def test_pairs_work_stops_with_one_line_when_its_file_is_deleted_or_replaced(tmp_path, how):
    db = tmp_path / "w.db"
    with open_store(db) as s:
        s.queue([tiny(epochs=60, train_pairs=400, val_pairs=40)], 2)
    backup = tmp_path / "backup.db"
    store_module.copy_database(db, backup)
    before = dump(backup)
    process = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "work", "--workers", "1", "--db", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_epochs(db, process)
        if how == "delete":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        else:
            os.replace(backup, db)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [line for line in err.splitlines() if line.strip().startswith("error")]
    assert process.returncode == 2, (out, err)
    assert len(lines) == 1 and ("was deleted" if how == "delete" else "replaced") in lines[0]
    assert "Traceback" not in err and "done" not in out
    if how == "delete":
        assert not db.exists()
    else:
        assert dump(db) == before


# -- dropped tables and rows edited by hand: refused on open, naming table, row and column ----
@pytest.fixture
def built_db(tmp_path) -> Path:
    return build(tmp_path / "runs.db")


def _edit(db: Path, sql: str) -> None:
    conn = sqlite3.connect(str(db))
    try:
        conn.executescript(f"PRAGMA foreign_keys = OFF; {sql};")
    finally:
        conn.close()


@pytest.mark.parametrize("table", ["runs", "epochs", "configs", "checkpoints"])
@pytest.mark.parametrize("argv", READS + WRITES, ids=lambda a: " ".join(a))
def test_a_dropped_table_is_named(tmp_path, built_db, table, argv):
    _edit(built_db, f"DROP TABLE {table}")
    assert_refused(argv, built_db, tmp_path, f"has no {table} table")


FIRST_RUN = "(SELECT min(id) FROM runs)"
EDITS = [
    (
        "bad options JSON",
        "UPDATE configs SET options = '{oops' WHERE rowid = 1",
        "table configs, row",
        "column options",
    ),
    ("options a list", "UPDATE configs SET options = '[1,2]' WHERE rowid = 1", "table configs, row", "column options"),
    (
        "text in test_acc",
        f"UPDATE runs SET test_acc = 'high' WHERE id = {FIRST_RUN}",
        "table runs, row",
        "column test_acc",
    ),
    ("NULL attempts", f"UPDATE runs SET attempts = NULL WHERE id = {FIRST_RUN}", "table runs, row", "column attempts"),
    (
        "text in created_at",
        "UPDATE configs SET created_at = 'yesterday' WHERE rowid = 1",
        "table configs, row",
        "column created_at",
    ),
    (
        "text in heartbeat_at",
        f"UPDATE runs SET heartbeat_at = 'now' WHERE id = {FIRST_RUN}",
        "table runs, row",
        "column heartbeat_at",
    ),
    ("unknown status", f"UPDATE runs SET status = 'paused' WHERE id = {FIRST_RUN}", "table runs, row", "column status"),
    (
        "text in an epoch metric",
        "UPDATE epochs SET val_acc = 'x' WHERE rowid = 1",
        "table epochs, row",
        "column val_acc",
    ),
    ("unknown arch", "UPDATE configs SET arch = 'A9' WHERE rowid = 1", "table configs, row", "column arch"),
    ("text in epochs", "UPDATE configs SET epochs = 'thirty' WHERE rowid = 1", "table configs, row", "column epochs"),
    (
        "bad option value",
        "UPDATE configs SET options = '{\"dropout\": 7}' WHERE rowid = 1",
        "table configs, row",
        "column options.dropout",
    ),
]


@pytest.mark.parametrize("case", EDITS, ids=[e[0] for e in EDITS])
@pytest.mark.parametrize("argv", READS + WRITES, ids=lambda a: " ".join(a))
def test_a_hand_edited_row_is_named(tmp_path, built_db, case, argv):
    _, sql, where, column = case
    _edit(built_db, sql)
    assert_refused(argv, built_db, tmp_path, where)
    assert_refused(argv, built_db, tmp_path, column)


def test_a_valid_database_opens_and_its_check_reads_every_table(built_db):
    with open_store(built_db, create=False) as s:
        assert s.status_counts()["done"] == 6


# -- --db paths that are not files --------------------------------------------------------------
PATHS = {
    "a symlink loop": (lambda d: (d / "loop").symlink_to(d / "loop") or d / "loop", "symbolic link loop"),
    "a dangling link": (
        lambda d: (d / "dangling").symlink_to(d / "nowhere" / "x.db") or d / "dangling",
        "which does not exist",
    ),
    "a file as a folder": (
        lambda d: (d / "file.txt").write_text("x") and d / "file.txt" / "runs.db",
        "which is a file, not a folder",
    ),
    "a name too long": (lambda d: d / ("n" * 300 + ".db"), "name too long"),
}


@pytest.mark.parametrize("case", list(PATHS), ids=list(PATHS))
@pytest.mark.parametrize("argv", READS + WRITES + [["run", "--epochs", "1", "--reps", "1"]], ids=lambda a: " ".join(a))
def test_a_path_that_is_no_file_is_named(tmp_path, case, argv):
    make, message = PATHS[case]
    db = make(tmp_path)
    code, _, err = call([*argv, "--db", str(db)], tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("error: ") and message in lines[-1], err
    assert "read-only" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # nothing created
        {
            "a symlink loop": ["loop"],
            "a dangling link": ["dangling"],
            "a file as a folder": ["file.txt"],
            "a name too long": [],
        }[case]
    )


# -- one setup, one id ------------------------------------------------------------------------
#: sha256 (first 16 hex digits) of the space-joined ids of these grids, computed by the code
#: before the values were canonicalised: ids must never change.
GRID_IDS = {
    "paper": ("ad28adf4d1358ff6", {}),
    "beyond": ("1db47f0eaa490cb4", {}),
    "paper-quick": (
        "cad67a2e1c623489",
        {"epochs": ["2"], "optimizer": ["adam"], "lr": ["0.001"], "aux_weight": ["0.5"]},
    ),
}


@pytest.mark.parametrize("name", list(GRID_IDS))
def test_the_ids_of_existing_grids_are_unchanged(name):
    digest, options = GRID_IDS[name]
    ids = [c.id for c in preset_configs(name.split("-")[0], options)]
    assert hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16] == digest


@pytest.mark.parametrize("path", sorted((ROOT / "docs").rglob("*.db")), ids=lambda p: p.name)
def test_the_ids_of_the_committed_databases_are_unchanged(path):
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(row) for row in conn.execute("SELECT * FROM configs")]
    finally:
        conn.close()
    assert rows
    assert [RunConfig.from_dict(row).id for row in rows] == [row["id"] for row in rows]


@pytest.mark.parametrize(
    "spellings",
    [
        {"aux_weight": [0.0, -0.0, 0]},
        {"aux_weight": [1.0, 1]},
        {"lr": [0.01, 1e-2]},
        {"lr_gamma": [0.1, 1e-1]},
        {"dropout": [0.0, -0.0, 0]},
        {"rotate": [10, 10.0]},
        {"momentum": [0.0, -0.0]},
        {"weight_decay": [0, 0.0, -0.0]},
    ],
)
def test_one_setup_has_one_id_however_its_values_are_spelled(spellings):
    ((name, values),) = spellings.items()
    assert len({RunConfig(**{name: v}).id for v in values}) == 1


@pytest.mark.parametrize("texts", [["0", "-0", "0.0", "-0.0", "0e5"], ["1", "1.0", "1e0"]])
def test_the_command_line_queues_one_configuration_for_one_aux_weight(store, texts):
    for text in texts:
        store.queue(parse_grid({"aux_weight": [text]}), 1)
    assert store.db.execute("SELECT count(*) FROM configs").fetchone()[0] == 1
    assert len(parse_grid({"aux_weight": [",".join(texts)]})) == 1


@pytest.mark.parametrize(
    "field, value",
    [
        ("aux_weight", True),
        ("lr", False),
        ("dropout", True),
        ("kernel", 5.0),
        ("epochs", 2.0),
        ("seed", True),
        ("aux_weight", 10**400),
        ("lr", 10**400),
        ("aux_weight", "1"),
        ("batch_norm", 1),
        ("swap", 0),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(field, value):
    with pytest.raises(ConfigError, match=field.replace("_", "-")):
        RunConfig(**{field: value})


# -- a failed MNIST download leaves no empty folder ---------------------------------------------
@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "existing folder"])
def test_a_failed_offline_mnist_download_leaves_no_folder_behind(tmp_path, monkeypatch, existing):
    import torchvision.datasets.mnist as mnist

    from core.data import load_mnist_pools
    from core.errors import DataError

    monkeypatch.setattr(mnist.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    data = tmp_path / "data"
    if existing:
        data.mkdir()
        (data / "mine.txt").write_text("kept")
    with pytest.raises(DataError, match="could not be downloaded"):
        load_mnist_pools(str(data))
    assert not (data / "MNIST").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == (["data", "mine.txt"] if existing else [])


# -- the console: a banner when the file is deleted, nothing queued into it -----------------------
async def test_the_console_shows_a_banner_when_its_file_is_deleted_and_refuses_to_queue(tmp_path):
    from textual.widgets import Input, SelectionList

    from tests.test_tui_support import settle, wait_for
    from tui.app import make_app
    from tui.screens.experiments import ExperimentsScreen
    from tui.screens.queue import QueueScreen

    db = build(tmp_path / "w.db")
    app = make_app(db, workers=1, poll_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, ExperimentsScreen)
        assert app.db_error is None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        await wait_for(pilot, lambda: app.db_error is not None)
        shown = str(app.screen.query_one("DbBanner").render())
        assert "was deleted" in shown and app.screen.query_one("DbBanner").has_class("-shown")
        await pilot.press("2")
        queue = await settle(pilot, QueueScreen)
        selection = queue.query_one("#q-arch", SelectionList)
        selection.deselect_all()
        selection.select("A4")
        for name, value in dict(reps=2, epochs=2, train_pairs=100, val_pairs=10, test_pairs=100).items():
            queue.query_one(f"#q-{name}", Input).value = str(value)
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: any("not queued" in n.message and "was deleted" in n.message for n in app._notifications)
        )
        assert not any(n.message.startswith("queued") for n in app._notifications)
        assert "was deleted" in str(app.screen.query_one("DbBanner").render())
        await pilot.press("1", "4", "1")
        await pilot.pause(0.3)
        assert app.is_running and "was deleted" in (app.db_error or "")
    assert not db.exists()  # never created again behind the user's back


async def test_the_console_reads_the_file_put_back_in_place(tmp_path):
    from tests.test_tui_support import settle, wait_for
    from tui.app import make_app
    from tui.screens.experiments import ExperimentsScreen

    db = build(tmp_path / "w.db")
    backup = tmp_path / "backup.db"
    store_module.copy_database(db, backup)
    app = make_app(db, workers=1, poll_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, ExperimentsScreen)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        await wait_for(pilot, lambda: app.db_error is not None)
        os.replace(backup, db)
        await wait_for(pilot, lambda: app.db_error is None)
        assert not app.screen.query_one("DbBanner").has_class("-shown")


async def test_the_console_shows_a_banner_for_a_hand_edited_row(tmp_path, built_db):
    from tests.test_tui_support import settle
    from tui.app import make_app
    from tui.screens.experiments import ExperimentsScreen

    _edit(built_db, "UPDATE configs SET options = '[1,2]' WHERE rowid = 1")
    app = make_app(built_db, workers=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, ExperimentsScreen)
        assert "table configs" in (app.db_error or "") and "column options" in app.db_error
        assert app.screen.query_one("DbBanner").has_class("-shown")
        await pilot.press("4")
        await pilot.pause(0.3)
        assert app.is_running and "table configs" in (app.db_error or "")


def test_a_file_overwritten_in_place_by_an_older_copy_is_never_written(tmp_path):
    db = build(tmp_path / "w.db")
    backup = tmp_path / "backup.db"
    store_module.copy_database(db, backup)
    with open_store(db) as s:
        s.queue([tiny(arch="A3")], 2)
        s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file itself
        before = dump(backup)
        shutil.copyfile(backup, db)  # like cp: the same inode, overwritten
        with pytest.raises(DatabaseGone, match="overwritten by another copy"):
            s.queue([tiny(arch="A4")], 2)
        with pytest.raises(DatabaseGone, match="overwritten"):
            s.claim("host:1")
    assert dump(db) == before
