"""Security (issue 16): child processes import only the installed project, never the current
folder's; strings from a database never reach the terminal as markup or control characters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import api
from core.config import RunConfig

TINY = RunConfig(structure="shared", arch="A1", kernel=3, epochs=2, train_pairs=100, val_pairs=10,
                 test_pairs=100)
#: Packages a hostile folder holds: each writes the marker when imported (and then breaks).
HOSTILE_PACKAGES = ("tui", "core", "multiprocessing", "torch", "ray")


def hostile_folder(path: Path) -> tuple[Path, Path]:
    """A folder whose ./tui/cli.py, ./core/, ./multiprocessing/ ... write a marker file."""
    path.mkdir()
    marker = path.parent / "MARKER"
    code = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for package in HOSTILE_PACKAGES:
        (path / package).mkdir()
        (path / package / "__init__.py").write_text(code)
    (path / "tui" / "cli.py").write_text(code)
    return path, marker


def queued_db(path: Path, reps: int = 2) -> Path:
    with api.open_store(path) as store:
        api.queue(store, [TINY], reps)
    return path


def done_count(db: Path) -> int:
    with api.open_store(db, create=False) as store:
        return store.status_counts()["done"]


def pairs_script() -> str:
    return str(Path(sys.executable).with_name("pairs"))


@pytest.mark.slow
def test_pairs_work_from_a_hostile_folder_runs_only_the_installed_project(tmp_path):
    folder, marker = hostile_folder(tmp_path / "hostile")
    db = queued_db(tmp_path / "runs.db")
    result = subprocess.run([pairs_script(), "work", "--workers", "2", "--db", str(db)],
                            cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), marker.read_text()
    assert done_count(db) == 2


@pytest.mark.slow
def test_the_consoles_pool_from_a_hostile_folder_runs_only_the_installed_project(tmp_path,
                                                                                  monkeypatch):
    from tui.widgets.pool import WorkerPool

    folder, marker = hostile_folder(tmp_path / "hostile")
    db = queued_db(tmp_path / "runs.db")
    monkeypatch.chdir(folder)
    pool = WorkerPool(db)
    process = pool.start(1)
    process.wait(timeout=300)
    assert process.returncode == 0, pool.log_path.read_text()
    assert not marker.exists(), marker.read_text()
    assert done_count(db) == 2
    assert "2 run(s) done" in pool.log_path.read_text()


@pytest.mark.slow
def test_ray_tasks_from_a_hostile_folder_run_only_the_installed_project(tmp_path):
    pytest.importorskip("ray")
    folder, marker = hostile_folder(tmp_path / "hostile")
    for package in ("torch", "ray"):  # the driver itself needs these from the venv
        (folder / package / "__init__.py").unlink()
        (folder / package).rmdir()
    db = queued_db(tmp_path / "runs.db")
    started = time.monotonic()
    result = subprocess.run([pairs_script(), "work", "--executor", "ray", "--workers", "1",
                             "--db", str(db)], cwd=folder, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, (result.stderr[-3000:], time.monotonic() - started)
    assert not marker.exists(), marker.read_text()
    assert done_count(db) == 2
