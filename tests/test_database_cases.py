"""Every way the database file can be wrong: one line on stderr, exit code 2, and the file left
byte for byte as it was (or, for an older schema, upgraded in place after a backup).

Most cases call ``tui.cli.main`` in this process; the permission cases run ``pairs`` in a
subprocess whose root privileges over file permissions are dropped (tests often run as root,
for whom ``chmod`` blocks nothing).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from core.api import open_store
from core.store import SCHEMA_VERSION, busy, opening
from tests.conftest import tiny
from tests.test_bad_input_props import call

ROOT = Path(__file__).resolve().parents[1]
METRICS = dict(
    train_loss=0.5,
    train_main_loss=0.5,
    train_acc=0.8,
    val_loss=0.6,
    val_main_loss=0.6,
    val_acc=0.7,
    val_digit_acc=None,
    lr=0.01,
    seconds=0.1,
)
#: Commands that only read, and commands that write (``work`` writes when something is queued).
READS = [["status"], ["table"], ["table", "-f", "csv"], ["best"]]
WRITES = [["queue", "--reps", "1", "--arch", "A2"], ["retry"], ["work", "--workers", "1"]]


def build(path: Path) -> Path:
    """A database as pairs leaves it: done, failed and queued runs with epochs (no training)."""
    with open_store(path) as s:
        configs = [tiny(structure=name) for name in ("independent", "shared", "shared-aux")]
        s.queue(configs, 3)
        for n in range(7):
            (claim,) = s.claim("host:1")
            for epoch in (1, 2):
                s.record_epoch(claim.id, "host:1", {**METRICS, "epoch": epoch, "val_acc": 0.6 + n / 100}, b"state" * 50)
            if n == 6:
                s.fail_run(claim.id, "host:1", "TrainingDiverged: lower --lr")
            else:
                s.finish_run(claim.id, "host:1", {"test_acc": 0.8, "test_loss": 0.4})
    return path


def dump(path: Path) -> dict:
    """Every table's rows (to compare content across an upgrade), but the count of writes
    (``meta.writes``, see ``Store._count_write``)."""
    conn = sqlite3.connect(str(path))
    try:
        conn.row_factory = sqlite3.Row
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: sorted(
                repr(sorted(dict(row).items()))
                for row in conn.execute(f"SELECT * FROM {t}")
                if not (t == "meta" and dict(row).get("key") == "writes")
            )
            for t in tables
        }
    finally:
        conn.close()


def assert_refused(argv: list[str], db: Path, folder: Path, message: str) -> None:
    before = db.read_bytes() if db.is_file() else None
    code, _, err = call([*argv, "--db", str(db)], folder)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, code, err)
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], (argv, err)
    assert all("error" not in line for line in lines[:-1]) and "Traceback" not in err
    assert [line for line in lines if line.startswith("error")] == [lines[-1]]
    if before is not None:
        assert db.read_bytes() == before, argv


@pytest.fixture
def real_db(tmp_path) -> Path:
    return build(tmp_path / "runs.db")


# -- the file is not a usable database ----------------------------------------------------------
def test_a_directory(tmp_path):
    (tmp_path / "inside.txt").write_text("x")
    for argv in READS + WRITES:
        assert_refused(argv, tmp_path, tmp_path, "is a directory")
    assert [p.name for p in tmp_path.iterdir()] == ["inside.txt"]


def test_not_sqlite(tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("my notes, not a database\n" * 20)
    for argv in READS + WRITES:
        assert_refused(argv, db, tmp_path, "is not an SQLite database")


def test_an_sqlite_database_of_another_program(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    for argv in READS + WRITES[1:]:
        assert_refused(argv, db, tmp_path, "not a pairs database")
    assert_refused(WRITES[0], db, tmp_path, "an SQLite file of another program")


def test_an_empty_file_is_a_new_database_for_queue_and_refused_by_readers(tmp_path):
    db = tmp_path / "empty.db"
    db.touch()
    for argv in READS + WRITES[1:]:
        assert_refused(argv, db, tmp_path, "not a pairs database")
    code, out, _ = call([*WRITES[0], "--db", str(db)], tmp_path)
    assert code == 0 and "queued 1 new run" in out


def test_truncated(tmp_path, real_db):
    data = real_db.read_bytes()
    real_db.write_bytes(data[: len(data) // 2])
    for argv in READS + WRITES:
        assert_refused(argv, real_db, tmp_path, "is corrupted")


@pytest.mark.parametrize("table", ["runs", "epochs", "configs"])
def test_corrupted_pages(tmp_path, real_db, table):
    conn = sqlite3.connect(real_db)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    data = bytearray(real_db.read_bytes())
    middle = (root - 1) * page_size + page_size // 4
    data[middle : middle + page_size // 2] = bytes((i * 37 + 11) % 256 for i in range(page_size // 2))
    data[(root - 1) * page_size : (root - 1) * page_size + 12] = b"\xff" * 12  # its page header
    real_db.write_bytes(bytes(data))
    for argv in READS + WRITES:
        assert_refused(argv, real_db, tmp_path, "is corrupted")


# -- schema versions ------------------------------------------------------------------------------
def _set_version(db: Path, value: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [value])
    conn.close()


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (str(SCHEMA_VERSION + 1), "newer than this pairs understands"),
        ("-1", "older than any this pairs can upgrade"),
        ("two", "unreadable schema_version"),
    ],
)
def test_a_schema_version_it_cannot_use(tmp_path, real_db, version, message):
    _set_version(real_db, version)
    for argv in READS + WRITES:
        assert_refused(argv, real_db, tmp_path, message)
    assert not list(tmp_path.glob("*.bak"))


def _make_version_0(db: Path) -> None:
    """The layout of schema version 0: no configs.precision, no (config_id, status) index, no
    final metrics on the run row."""
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX idx_runs_config_id_status")
        conn.execute("ALTER TABLE configs DROP COLUMN precision")
        for column in ("final_train_loss", "final_val_loss", "final_val_acc"):
            conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    conn.close()


def test_version_0_is_upgraded_in_place_after_a_backup(tmp_path, real_db):
    before_upgrade = dump(real_db)
    _make_version_0(real_db)
    old = dump(real_db)
    code, out, err = call(["table", "-f", "csv", "--db", str(real_db)], tmp_path)
    assert code == 0, err
    assert out.count("\n") == 4  # a header and the three configurations
    # The backup is the version-0 database, as it was.
    backup = tmp_path / "runs.db.v0.bak"
    assert dump(backup) == old
    # Nothing lost: every row is there, with the columns the upgrade added.
    new = dump(real_db)
    assert {t: len(rows) for t, rows in new.items()} == {t: len(rows) for t, rows in old.items()}
    assert new == before_upgrade  # precision back as fp32, final metrics filled again
    conn = sqlite3.connect(real_db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert "idx_runs_config_id_status" in {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    finally:
        conn.close()
    # And it is a working database.
    code, out, _ = call([*WRITES[0], "--db", str(real_db)], tmp_path)
    assert code == 0 and "queued 1 new run" in out


@pytest.mark.slow
def test_two_processes_opening_an_old_database_upgrade_it_once(tmp_path, real_db):
    _make_version_0(real_db)
    script = "import sys; from core.api import open_store; open_store(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(real_db)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with open_store(real_db, create=False) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.db["runs"].count == 9


# -- locked by another program -------------------------------------------------------------------
def test_a_database_locked_by_another_program(tmp_path, real_db, monkeypatch):
    """A write waits (busy timeout, then retries with backoff) and gives up in one line; reads
    go on (WAL)."""
    monkeypatch.setattr(opening, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(busy, "WRITE_RETRY_S", 0.5)
    monkeypatch.setattr(busy, "BEGIN_ATTEMPTS", 2)
    holder = sqlite3.connect(real_db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, out, _ = call(["status", "--db", str(real_db)], tmp_path)
        assert code == 0 and "done: 6" in out
        assert_refused(WRITES[0], real_db, tmp_path, "is locked by another program")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- permissions -----------------------------------------------------------------------------------
def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (empty when not root): root keeps its
    uid but loses the capabilities that let it ignore them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root (chmod blocks nothing) and setpriv is not installed")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def pairs_as_user(prefix: list[str], *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tui.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )


def _assert_one_line(result: subprocess.CompletedProcess, message: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_read_only_file_is_read_but_never_written(tmp_path, real_db):
    prefix = _unprivileged()
    with open_store(real_db) as s:
        s.queue([tiny(arch="A2")], 1)  # something for `work` to claim
    real_db.chmod(0o444)
    before = real_db.read_bytes()
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(real_db)!r}, 'r+b')"], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("file permissions are not enforced here")
        assert pairs_as_user(prefix, "status", "--db", real_db).returncode == 0
        assert pairs_as_user(prefix, "table", "--db", real_db).returncode == 0
        for argv in WRITES:
            _assert_one_line(pairs_as_user(prefix, *argv, "--db", real_db), "is read-only")
        assert real_db.read_bytes() == before
    finally:
        real_db.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.slow
def test_a_read_only_folder_is_read_but_never_written(tmp_path):
    prefix = _unprivileged()
    folder = tmp_path / "shipped"
    folder.mkdir()
    db = build(folder / "runs.db")
    with open_store(db) as s:
        s.queue([tiny(arch="A2")], 1)
    folder.chmod(0o555)
    before = db.read_bytes()
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", f"open({str(folder / 'x')!r}, 'w')"], capture_output=True
        )
        if probe.returncode == 0:
            pytest.skip("folder permissions are not enforced here")
        status = pairs_as_user(prefix, "status", "--db", db)
        assert status.returncode == 0 and "done: 6" in status.stdout, status.stderr
        assert pairs_as_user(prefix, "table", "-f", "csv", "--db", db).returncode == 0
        for argv in WRITES:
            _assert_one_line(pairs_as_user(prefix, *argv, "--db", db), "folder")
        new_file = pairs_as_user(prefix, "queue", "--db", folder / "new.db")
        _assert_one_line(new_file, "not writable")
        assert db.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["runs.db"]
    finally:
        folder.chmod(0o755)
