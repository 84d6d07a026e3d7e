"""Provenance (issue 15): every run records the code that trained it; reports mark a mix."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core import api, provenance
from core.store import SCHEMA_VERSION, run_id
from tests.conftest import tiny
from tests.report_fixtures import add_runs
from tui.cli import app

ROOT = Path(__file__).resolve().parents[1]


def pairs(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_code_version_of_this_checkout_or_of_the_sources():
    version = provenance.code_version()
    top = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == ROOT:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert re.fullmatch(r"git:[0-9a-f]{12}(\+dirty)?", version)
        assert version.startswith(f"git:{head[:12]}")
    else:
        assert version == provenance.source_version()
    assert provenance.code_version() is provenance.code_version()  # computed once per process


def test_outside_a_checkout_the_source_hash(tmp_path, monkeypatch):
    assert provenance._git_version(tmp_path) is None  # not a repository: no git version
    source = provenance.source_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\+src:[0-9a-f]{12}", source)
    # git missing altogether: fail-safe, no exception
    monkeypatch.setenv("PATH", str(tmp_path))
    assert provenance._git_version(ROOT) is None


@pytest.mark.slow
def test_a_trained_run_records_the_code_version(fresh_db):
    config = tiny(structure="shared")
    with api.open_store(fresh_db) as store:
        api.queue(store, [config], 1)
        summary = api.work(store, workers=1, configs=[config])
        assert summary.done == 1
        (row,) = store.run_rows(config.id)
    assert row["code_version"] == provenance.code_version()


def _two_versions(store):
    a, b = tiny(structure="shared", arch="A1"), tiny(structure="shared", arch="A2")
    metrics = {2: {"train_loss": 0.1, "val_loss": 0.5, "val_acc": 0.8}}
    add_runs(store, a, [metrics] * 2)
    add_runs(store, b, [metrics] * 2)
    store.db["runs"].update(run_id(a, 0), {"code_version": "git:0123456789ab"})
    store.db["runs"].update(run_id(a, 1), {"code_version": "git:0123456789ab"})
    store.db["runs"].update(run_id(b, 0), {"code_version": "git:ba9876543210+dirty"})
    store.db["runs"].update(run_id(b, 1), {"code_version": None})
    return a, b


def test_a_table_over_two_code_versions_shows_the_mark(store):
    _two_versions(store)
    for command in (["table"], ["best"], ["status"]):
        result = pairs(*command, "--db", store.path)
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert (
            "mixed code versions: git:0123456789ab (2 runs), git:ba9876543210+dirty (1 run), unknown (1 run)"
        ) in text, command
    # text formats keep stdout parseable: the mark goes to stderr
    result = CliRunner().invoke(app, ["table", "-f", "csv", "--db", str(store.path)])
    assert "mixed code versions" not in result.stdout
    assert "mixed code versions" in result.stderr
    # the report says it in its machine section
    from core.reproduction import write_report

    text = write_report(store, store.path.parent / "report").path.read_text()
    assert "**Mixed code versions: git:0123456789ab (2 runs)" in text


def test_one_code_version_no_mark(store):
    a, b = _two_versions(store)
    for rep in range(2):
        store.db["runs"].update(run_id(b, rep), {"code_version": "git:0123456789ab"})
    for command in (["table"], ["best"], ["status"], ["table", "-f", "json"]):
        result = CliRunner().invoke(app, [*command, "--db", str(store.path)])
        assert result.exit_code == 0 and "mixed code" not in result.output
    # a table of only some setups counts only their runs
    store.db["runs"].update(run_id(b, 0), {"code_version": "git:ffffffffffff"})
    with api.open_store(store.path, create=False) as s:
        rows = [r for r in api.table_rows(s) if r.config_id == a.id]
        assert api.code_version_note(s, rows) is None
        assert "git:ffffffffffff (1 run)" in api.code_version_note(s, api.table_rows(s))


def test_old_database_gains_the_column(fresh_db):
    with api.open_store(fresh_db) as store:
        add_runs(store, tiny(), [{2: {"train_loss": 0.1, "val_loss": 0.5, "val_acc": 0.8}}])
    with sqlite3.connect(fresh_db) as conn:  # a database of a pairs without the column
        conn.execute("ALTER TABLE runs DROP COLUMN code_version")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with api.open_store(fresh_db, create=False) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert "code_version" in {c.name for c in store.db["runs"].columns}
        assert provenance.code_versions(store) == {"unknown": 1}  # NULL: shown as unknown


@pytest.mark.slow
def test_status_and_models_do_not_import_torch(fresh_db):
    code = (
        "import sys; sys.argv = ['pairs', 'models', '--db', sys.argv[1]]\n"
        "from tui.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(fresh_db)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "shared-aux" in done.stdout and "3,970" in done.stdout


def test_models_counts_equal_the_torch_models():
    pytest.importorskip("torch")
    from core.config import model_catalog
    from core.models import model_catalog as torch_catalog

    assert model_catalog() == torch_catalog()
