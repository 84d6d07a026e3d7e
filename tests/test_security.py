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

TINY = RunConfig(structure="shared", arch="A1", kernel=3, epochs=2, train_pairs=100, val_pairs=10, test_pairs=100)
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
    result = subprocess.run(
        [pairs_script(), "work", "--workers", "2", "--db", str(db)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), marker.read_text()
    assert done_count(db) == 2


@pytest.mark.slow
def test_the_consoles_pool_from_a_hostile_folder_runs_only_the_installed_project(tmp_path, monkeypatch):
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
    result = subprocess.run(
        [pairs_script(), "work", "--executor", "ray", "--workers", "1", "--db", str(db)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    assert result.returncode == 0, (result.stderr[-3000:], time.monotonic() - started)
    assert not marker.exists(), marker.read_text()
    assert done_count(db) == 2


# -- strings from a database are data ------------------------------------------------------------


def test_literal_escapes_controls_and_never_parses_markup():
    from tui.literal import clean, clean_block, literal

    assert clean("\x1b[2J") == "\\x1b[2J"
    assert clean("\x9b31m\x7f") == "\\x9b31m\\x7f"
    assert clean("a\nb\tc") == "a\\x0ab\\x09c"
    assert clean_block("a\nb\tc\x1b") == "a\nb\tc\\x1b"
    assert clean("\u202eabc") == "\\u202eabc"
    assert clean(None) == "" and clean(3) == "3"
    text = literal("[/oops] [bold]x[/bold]", "red")
    assert text.plain == "[/oops] [bold]x[/bold]" and not text.spans


CLI_COMMANDS = (
    ["status"],
    ["table"],
    ["table", "--format", "csv"],
    ["table", "--format", "markdown"],
    ["table", "--compare", "paper", "--epochs", "2"],
    ["best"],
    ["best", "--format", "latex"],
    ["plot", "--structure", "shared-aux", "--arch", "A1", "--kernel", "3"],
)


@pytest.mark.parametrize("args", CLI_COMMANDS, ids=" ".join)
def test_every_command_shows_hostile_strings_literally(tmp_path, args):
    from hostile import has_control, hostile_db
    from typer.testing import CliRunner

    from tui.cli import app

    db = hostile_db(tmp_path / "hostile.db")
    result = CliRunner().invoke(app, [*args, "--db", str(db)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not has_control(result.stdout), repr(result.stdout)
    assert not has_control(result.stderr or ""), repr(result.stderr)


@pytest.mark.slow
def test_status_through_a_pipe_shows_the_error_and_host_literally(tmp_path):
    """``pairs status | cat``: a real process, its stdout a pipe."""
    from hostile import VISIBLE, has_control, hostile_db

    db = hostile_db(tmp_path / "hostile.db")
    result = subprocess.run(
        [pairs_script(), "status", "--db", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and not has_control(result.stdout), repr(result.stdout)
    flat = result.stdout.replace("\n", "")
    for shown in VISIBLE:
        assert shown in flat, (shown, result.stdout)
    assert "[/oops]\\x1b]0;host\\x07" in flat  # the host of the running run


@pytest.mark.slow
def test_a_hostile_database_path_in_a_message(tmp_path):
    """A file name with markup and escapes, in an error message: shown literally, one line."""
    from hostile import has_control

    name = tmp_path / "[/oops]\x1b]0;t\x07.db"  # a folder "[" holding "oops]...db"
    name.parent.mkdir()
    name.write_text("not a database")
    result = subprocess.run([pairs_script(), "status", "--db", str(name)], capture_output=True, text=True)
    assert result.returncode == 2
    assert not has_control(result.stderr) and "[/oops]\\x1b]0;t\\x07.db" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _all_text(app) -> str:
    """The text of every DataTable cell, Static, Select and notification of the app."""
    from rich.text import Text
    from textual.widgets import DataTable, Static

    parts = []
    for screen in [app.screen, *app.screen_stack]:
        for table in screen.query(DataTable):
            for index in range(table.row_count):
                parts.extend(c.plain if isinstance(c, Text) else str(c) for c in table.get_row_at(index))
        for static in screen.query(Static):
            parts.append(str(static.render()))
    parts.extend(n.message for n in app._notifications)
    return "\n".join(parts)


async def test_every_screen_shows_hostile_strings_literally(tmp_path):
    from hostile import VISIBLE, has_control, hostile_db
    from test_tui_support import settle, wait_for
    from textual.widgets import DataTable

    from tui.app import make_app
    from tui.screens.experiments import ExperimentsScreen
    from tui.screens.plots import PlotsScreen
    from tui.screens.queue import QueueScreen
    from tui.screens.tables import TablesScreen

    db = hostile_db(tmp_path / "hostile.db")
    app = make_app(db, workers=1)
    async with app.run_test(size=(160, 50)) as pilot:
        experiments = await settle(pilot, ExperimentsScreen)
        text = _all_text(app)
        assert "[/oops]\\x1b]0;host\\x07" in text  # the running run's host
        assert not has_control(text), repr(text)
        failures = experiments.query_one("#exp-failure-table", DataTable)
        assert failures.row_count == 1
        failures.focus()
        await pilot.press("enter")  # the whole error, in a notification
        await wait_for(pilot, lambda: any("[/oops]" in n.message for n in app._notifications))
        error = next(n.message for n in app._notifications if "[/oops]" in n.message)
        for shown in VISIBLE:
            assert shown in error, shown
        for key, screen_type in (("3", PlotsScreen), ("4", TablesScreen), ("2", QueueScreen), ("1", ExperimentsScreen)):
            await pilot.press(key)
            await settle(pilot, screen_type)
            await pilot.pause()
            text = _all_text(app)
            assert not has_control(text), (key, repr(text))
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.is_running


# -- a local Ray instance listens on loopback only ------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _address(hex_address: str, v6: bool) -> str:
    import socket

    raw = bytes.fromhex(hex_address.split(":")[0])
    if v6:
        return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return socket.inet_ntop(socket.AF_INET, raw[::-1])


def listening_sockets(pid: int) -> set[tuple[str, str]]:
    """(process name, address) of every TCP socket listening in ``pid`` or its descendants
    (from /proc: the sockets' inodes in each process's fds, matched in /proc/net/tcp{,6})."""
    inodes: dict[str, str] = {}
    for process in _descendants(pid):
        try:
            with open(f"/proc/{process}/comm") as f:
                name = f.read().strip()
            fds = os.listdir(f"/proc/{process}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{process}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = name
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add((inodes[fields[9]], _address(fields[1], v6)))
    return found


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


def test_the_listener_parser_sees_a_wildcard_socket():
    import socket

    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    try:
        sockets = listening_sockets(os.getpid())
        assert any(address == "0.0.0.0" for _, address in sockets), sockets
        assert not is_loopback("0.0.0.0") and not is_loopback("::")
    finally:
        server.close()


@pytest.mark.slow
def test_a_local_ray_instance_listens_on_loopback_only(tmp_path):
    pytest.importorskip("ray")
    with api.open_store(tmp_path / "runs.db") as store:
        api.queue(store, [TINY.replace(epochs=40)], 2)
    process = subprocess.Popen(
        [pairs_script(), "work", "--executor", "ray", "--workers", "1", "--db", str(tmp_path / "runs.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    seen: set[tuple[str, str]] = set()
    while process.poll() is None:
        seen |= listening_sockets(process.pid)
        time.sleep(0.2)
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    names = {name for name, _ in seen}
    assert {"gcs_server", "raylet"} <= names, seen  # the instance was seen while it ran
    beyond = {(name, address) for name, address in seen if not is_loopback(address)}
    assert not beyond, beyond
    assert done_count(tmp_path / "runs.db") == 2
