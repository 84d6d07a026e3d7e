"""The pairs CLI: CliRunner for every command, subprocesses for exit codes and one-line errors."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from core.api import open_store
from tui.cli import app

runner = CliRunner()
TINY = [
    "--arch",
    "A1",
    "--kernel",
    "3",
    "--epochs",
    "2",
    "--reps",
    "2",
    "--train-pairs",
    "100",
    "--val-pairs",
    "10",
    "--test-pairs",
    "100",
]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def pairs(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_version_and_help():
    assert invoke("--version").stdout.startswith("pairs ")
    result = invoke("--help")
    for command in ("run", "queue", "grid", "work", "status", "table", "best", "models", "retry"):
        assert command in result.stdout


@pytest.mark.slow
def test_run_table_best_status(fresh_db):
    result = invoke("run", "--structure", "shared-aux", *TINY, "--workers", "1", "--db", fresh_db)
    assert result.exit_code == 0, result.output
    assert "shared-aux A1 k3: 2 run(s) done" in result.stdout
    table = invoke("table", "--format", "markdown", "--db", fresh_db)
    assert "Table IV" in table.stdout and "2/2" in table.stdout
    assert "shared-aux" in invoke("best", "--db", fresh_db).stdout
    assert "done: 2" in invoke("status", "--db", fresh_db).stdout
    assert invoke("table", "--db", fresh_db).exit_code == 0
    assert invoke("table", "-f", "csv", "--db", fresh_db).stdout.startswith("protocol,protocol_id,structure,")
    assert invoke("best", "-f", "json", "--db", fresh_db).stdout.lstrip().startswith("[")


def test_queue_expands_repeated_and_comma_separated_values(fresh_db):
    result = invoke(
        "queue",
        "--structure",
        "shared,independent",
        "--arch",
        "A1",
        "--arch",
        "A2",
        "--kernel",
        "3,5",
        "--reps",
        "2",
        "--db",
        fresh_db,
    )
    assert "queued 16 new run(s)" in result.stdout
    again = invoke(
        "queue",
        "--structure",
        "shared,independent",
        "--arch",
        "A1,A2",
        "--kernel",
        "3",
        "--kernel",
        "5",
        "--reps",
        "2",
        "--db",
        fresh_db,
    )
    assert "queued 0 new run(s)" in again.stdout
    lrs = invoke("queue", "--lr", "0.01,0.1", "--reps", "1", "--db", fresh_db)
    assert "queued 2 new run(s)" in lrs.stdout


def test_grid_paper_queues_360_runs_once(fresh_db):
    assert "queued 360 new run(s)" in invoke("grid", "paper", "--db", fresh_db).stdout
    assert "queued 0 new run(s)" in invoke("grid", "paper", "--db", fresh_db).stdout
    with open_store(fresh_db, create=False) as s:
        assert s.db["configs"].count == 36


@pytest.mark.slow
def test_work_and_retry(fresh_db):
    invoke("queue", "--structure", "shared", *TINY, "--db", fresh_db)
    result = invoke("work", "--workers", "2", "--db", fresh_db)
    assert "2 run(s) done, 0 failed" in result.stdout
    assert "nothing queued" in invoke("work", "--db", fresh_db).stdout
    assert "nothing to retry" in invoke("retry", "--db", fresh_db).stdout


def test_models_lists_36_setups():
    result = invoke("models")
    assert result.stdout.count("shared-aux") == 12 and "A6" in result.stdout


BAD_INPUTS = [
    (["run", "--structure", "siamese"], "unknown structure 'siamese'"),
    (["run", "--arch", "A7"], "unknown arch 'A7'"),
    (["run", "--kernel", "4"], "unknown kernel 4"),
    (["run", "--kernel", "five"], "--kernel must be an integer"),
    (["run", "--reps", "0"], "--reps must be an integer from 1 to 1000"),
    (["queue", "--reps", "100000000"], "--reps must be an integer from 1 to 1000"),
    (["grid", "paper", "--reps", "1000", "--seed", "0,1,2,3"], "more than 100,000 in one command"),
    (
        [
            "queue",
            "--lr",
            ",".join(f"0.{i}" for i in range(1, 10)),
            "--seed",
            ",".join(str(i) for i in range(40)),
            "--epochs",
            ",".join(str(i) for i in range(1, 31)),
        ],
        "10,800 setups, more than 10,000",
    ),
    (["queue", "--arch", "A1,,A2"], "--arch has an empty item in 'A1,,A2'"),
    (["run", "--workers", "9999999"], "--workers must be from 1 to 256"),
    (["work", "--workers", "0"], "--workers must be from 1 to 256"),
    (["run", "--lr", "-0.1"], "lr must be a number > 0"),
    (["run", "--lr", "nan"], "lr must be a number > 0"),
    (["run", "--epochs", "0"], "epochs must be an integer >= 1"),
    (["run", "--optimizer", "rmsprop"], "unknown optimizer"),
    (["run", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "--val-pairs", "1000"], "val-pairs must be between"),
    (["run", "--train-pairs", "5000"], "needs 10000 digits"),
    (["queue", "--batch-size", "0"], "batch-size must be an integer >= 1"),
    (["grid", "nonsense"], "unknown grid preset 'nonsense'"),
    (["table", "--format", "html"], "unknown format 'html'"),
    (["table", "--structure", "bogus"], "unknown structure 'bogus'"),
    (["run", "--bogus-flag"], "No such option"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_leaves_the_database_unchanged(fresh_db, args, message):
    before = fresh_db.read_bytes()
    result = pairs(*args, "--db", fresh_db)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert fresh_db.read_bytes() == before


@pytest.mark.slow
def test_bad_database_paths(tmp_path):
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("plain text")
    cases = [
        (tmp_path, "is a directory"),
        (not_sqlite, "not an SQLite database"),
        (tmp_path / "missing" / "runs.db", "does not exist"),
    ]
    for db, message in cases:
        result = pairs("queue", "--db", db)
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not_sqlite.read_text() == "plain text"
    missing = pairs("table", "--db", tmp_path / "none.db")
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()


@pytest.mark.slow
def test_mnist_offline_is_a_clear_error(tmp_path, fresh_db):
    before = fresh_db.read_bytes()
    result = pairs("run", "--data", "mnist", "--data-dir", tmp_path / "mnist", "--db", fresh_db, cwd=tmp_path)
    assert result.returncode == 2
    assert "MNIST is not in" in result.stderr and "--data sample" in result.stderr
    assert fresh_db.read_bytes() == before


@pytest.mark.slow
def test_default_database_is_runs_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("PAIRS_DB", raising=False)
    result = pairs("queue", "--reps", "1", cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "runs.db").exists()
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("PAIRS_DB", str(env_db))
    assert pairs("queue", "--reps", "1", cwd=tmp_path).returncode == 0 and env_db.exists()
