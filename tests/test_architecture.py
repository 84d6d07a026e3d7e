"""Headless core, torch-free interface: checked in fresh interpreters (as harlequin does).

Every module of ``core`` and of ``tui`` is found with ``pkgutil.walk_packages`` (a new module or
subpackage is covered without editing this file) and imported, one after another, in one fresh
interpreter, which says for each module which top-level packages its import added. A forbidden
package is blamed on the first module whose import loaded it.
"""

import json
import subprocess
import sys

import pytest

UI_PACKAGES = {"textual", "typer", "rich"}

_PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [sys.argv[1]] + sorted(m.name for m in pkgutil.walk_packages(package.__path__,
                                                                      sys.argv[1] + ".")
                               if not m.name.endswith(".__main__"))  # runs the program
seen = {name.split(".")[0] for name in sys.modules}
added = {}
for name in names:
    importlib.import_module(name)
    now = {n.split(".")[0] for n in sys.modules}
    added[name] = sorted(now - seen)
    seen = now
print(json.dumps(added))
"""


def _packages_added_by_each_module(package: str) -> dict[str, set[str]]:
    out = subprocess.run([sys.executable, "-c", _PROBE, package], check=True, capture_output=True, text=True)
    return {name: set(added) for name, added in json.loads(out.stdout).items()}


@pytest.fixture(scope="module")
def core_modules() -> dict[str, set[str]]:
    return _packages_added_by_each_module("core")


@pytest.fixture(scope="module")
def tui_modules() -> dict[str, set[str]]:
    return _packages_added_by_each_module("tui")


@pytest.mark.slow
def test_every_core_module_is_checked(core_modules):
    # the walk finds the modules and the subpackages' modules (not a list to keep up to date)
    assert {"core.api", "core.config", "core.curves", "core.overlay"} <= set(core_modules)
    assert any(name.startswith("core.store") for name in core_modules)
    assert len(core_modules) >= 20


@pytest.mark.slow
def test_core_never_imports_ui_packages(core_modules):
    offenders = {name: sorted(added & UI_PACKAGES) for name, added in core_modules.items() if added & UI_PACKAGES}
    assert not offenders, f"core modules importing a UI package: {offenders}"


@pytest.mark.slow
def test_tui_never_imports_torch(tui_modules):
    assert {"tui.cli", "tui.app", "tui.screens.plots", "tui.widgets.curves"} <= set(tui_modules)
    offenders = [name for name, added in tui_modules.items() if "torch" in added]
    assert not offenders, f"tui modules importing torch: {offenders}"


@pytest.mark.slow
def test_the_fork_servers_preload_leaves_the_store_to_the_driver():
    """Workers never open the database (the driver writes it): what they are forked from imports
    neither the store nor sqlite-utils, ~0.4 s of every short ``pairs run``'s start-up."""
    from core.executors import PRELOAD

    probe = (
        "import importlib, json, sys\n"
        "for name in sys.argv[1:]: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe, *PRELOAD], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    assert "core.executors" in loaded and "torch" in loaded
    assert not {name for name in loaded if name.split(".")[0] == "sqlite_utils" or name.startswith("core.store")}


_SCRIPT_WITHOUT_MAIN_GUARD = """
import sys
open(sys.argv[1], "a").write(__name__ + "\\n")
from core import api
from core.config import RunConfig
from core.executors import workers_skip_driver_main
workers_skip_driver_main()  # what the pairs command does (tui._early)
tiny = RunConfig(structure="shared", arch="A1", kernel=3, epochs=2, train_pairs=100, val_pairs=10, test_pairs=100)
with api.open_store(sys.argv[2]) as store:
    api.queue(store, [tiny], 2)
    print(api.work(store, workers=2).done, "done")
"""


@pytest.mark.slow
def test_workers_of_the_pairs_command_never_run_its_script_again(tmp_path):
    """The ``pairs`` command's workers start from core's code alone: its entry point (which
    imports the whole CLI) is not run again in them as ``__mp_main__`` (here a script without a
    main guard, which would start workers from its workers)."""
    marker, script = tmp_path / "imported-as", tmp_path / "no_main_guard.py"
    script.write_text(_SCRIPT_WITHOUT_MAIN_GUARD)
    result = subprocess.run(
        [sys.executable, str(script), str(marker), str(tmp_path / "runs.db")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.split() == ["2", "done"]
    assert marker.read_text().split() == ["__main__"]


def test_the_pairs_training_commands_ask_their_workers_to_skip_its_script(monkeypatch):
    import core.executors
    from tui import _early

    monkeypatch.setattr(core.executors, "_SKIP_DRIVER_MAIN", [])
    monkeypatch.setattr(core.executors, "start_workers_early", lambda: None)
    monkeypatch.setattr(_early, "FORK_SERVER_STARTED", [])
    monkeypatch.setattr(sys, "argv", ["pairs", "table"])
    _early.start_workers_early()
    assert not core.executors._SKIP_DRIVER_MAIN  # trains nothing: nothing changes
    monkeypatch.setattr(sys, "argv", ["pairs", "run", "--arch", "A1"])
    _early.start_workers_early()
    assert core.executors._SKIP_DRIVER_MAIN and _early.FORK_SERVER_STARTED


_PAIRS_RUN_DRIVER = """
import sys
sys.argv = ["pairs", "run", "--structure", "shared", "--arch", "A1", "--kernel", "3", "--reps", "2",
            "--epochs", "1", "--train-pairs", "100", "--val-pairs", "10", "--test-pairs", "100",
            "--db", sys.argv[1]]
from tui.cli import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("torch" in sys.modules)
"""


@pytest.mark.slow
def test_the_driver_of_pairs_run_never_imports_torch(tmp_path):
    """On the default device (auto) and the local executor the workers resolve the device and
    send plain values back: the driver of ``pairs run`` trains without importing torch itself
    (it took ~0.6 s of every short run's start-up, and again at its end)."""
    import sqlite3

    from core.train import resolve_device

    db = tmp_path / "runs.db"
    result = subprocess.run(
        [sys.executable, "-c", _PAIRS_RUN_DRIVER, str(db)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
    with sqlite3.connect(db) as connection:
        devices = connection.execute("SELECT device, status FROM runs").fetchall()
    assert devices == [(resolve_device("auto"), "done")] * 2
