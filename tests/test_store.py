import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from core.api import open_store
from core.config import training_cost
from core.store import SCHEMA_VERSION, LostClaim, Store, StoreError, run_id
from tests.conftest import tiny

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


def test_wal_busy_timeout_and_schema_version(store):
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert store.schema_version() == SCHEMA_VERSION
    assert {"meta", "configs", "runs", "epochs", "checkpoints"} <= set(store.db.table_names())


def test_queue_is_idempotent(store):
    configs = [tiny(), tiny(arch="A2")]
    assert store.queue(configs, 3) == 6
    assert store.queue(configs, 3) == 0
    assert store.queue(configs, 4) == 2
    assert store.db["runs"].count == 8 and store.db["configs"].count == 2
    assert store.count_new([tiny(arch="A3"), tiny()], 4) == 4


def test_the_costliest_configuration_is_claimed_first(store):
    """Largest first, so that a grid ends on its cheapest runs instead of one process training
    the last big configuration while the others idle."""
    cheap, costly = tiny(arch="A1", kernel=3), tiny(arch="A6", kernel=5)
    store.queue([cheap, costly], 2)  # the costly one queued last
    assert [c.config for c in store.claim("host:1", limit=2)] == [costly, costly]
    assert [c.config for c in store.claim("host:1", limit=2)] == [cheap, cheap]


def test_a_lower_repetition_comes_before_a_costlier_configuration(store):
    cheap, costly = tiny(arch="A1", kernel=3), tiny(arch="A6", kernel=5)
    store.queue([costly], 2)
    assert [(c.config, c.rep) for c in store.claim("host:1")] == [(costly, 0)]
    store.queue([cheap], 2)
    assert [(c.config, c.rep) for c in store.claim("host:1")] == [(cheap, 0)]
    assert [(c.config, c.rep) for c in store.claim("host:1")] == [(costly, 1)]


def test_training_cost_counts_the_convolutions_of_both_images():
    # A1 k3: 1 -> 16 channels, 3x3 kernel, 14x14 map; 2 images x 900 training pairs x 30 epochs
    assert training_cost("A1", 3, 30, 1000, 100) == 16 * 9 * 14 * 14 * 2 * 900 * 30
    # A3 k5: then 16 -> 32 channels on the 7x7 map
    assert training_cost("A3", 5, 1, 2, 1) == 2 * (16 * 25 * 196 + 16 * 32 * 25 * 49)
    costs = [training_cost(arch, 5, 30, 1000, 100) for arch in ("A1", "A2", "A3", "A4", "A6")]
    assert costs == sorted(costs)


def test_epoch_upsert_is_idempotent(store):
    store.queue([tiny()], 1)
    (claim,) = store.claim("host:1")
    for _ in range(3):
        store.record_epoch(claim.id, "host:1", {"epoch": 1, **METRICS}, b"state")
    assert store.db["epochs"].count == 1
    assert store.db["checkpoints"].get(claim.id)["state"] == b"state"
    store.finish_run(claim.id, "host:1", {"test_acc": 0.9, "test_loss": 0.3})
    assert store.db["checkpoints"].count == 0
    assert store.db["runs"].get(claim.id)["status"] == "done"


def test_writes_of_a_worker_that_lost_its_run_are_refused(store):
    store.queue([tiny()], 1)
    (claim,) = store.claim("host:1")
    assert store.requeue_stale(timeout_s=-1) == [claim.id]
    store.claim("host:2")
    with pytest.raises(LostClaim):
        store.record_epoch(claim.id, "host:1", {"epoch": 1, **METRICS}, b"x")
    assert store.db["epochs"].count == 0


@pytest.mark.slow
def test_dead_local_worker_is_requeued(store):
    import socket

    store.queue([tiny()], 1)
    dead = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    (claim,) = store.claim(f"{socket.gethostname()}:{dead.pid}")
    assert store.requeue_stale(timeout_s=3600) == [claim.id]
    assert store.db["runs"].get(claim.id)["status"] == "queued"


def _claim_all(path, worker, out):
    with Store(path) as s:
        got = []
        while True:
            claimed = s.claim(worker, limit=1)
            if not claimed:
                break
            got.append(claimed[0].id)
        out.put(got)


@pytest.mark.slow
def test_two_processes_never_claim_the_same_run(fresh_db):
    with open_store(fresh_db) as s:
        s.queue([tiny(arch=a, kernel=k) for a in ("A1", "A2", "A3") for k in (3, 5)], 10)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(fresh_db, f"h:{i}", out)) for i in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert len(results[0]) + len(results[1]) == 60
    assert not set(results[0]) & set(results[1])


def _write_from_another_process(path, sql: str) -> None:
    script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit(); c.close()"
    subprocess.run([sys.executable, "-c", script, str(path), sql], check=True)


@pytest.mark.slow
def test_opening_a_second_store_keeps_the_first_ones_locks(fresh_db):
    """Closing any descriptor of a database file drops the process's POSIX locks on it: opening a
    second store (the TUI has two) must not, or the next writer that closes its connection takes
    the file for its last user, checkpoints and deletes the WAL under the first store."""
    with open_store(fresh_db) as first:
        first.queue([tiny()], 1)
        version = first.db.execute("PRAGMA data_version").fetchone()[0]
        with open_store(fresh_db):
            pass
        _write_from_another_process(fresh_db, "INSERT INTO meta (key, value) VALUES ('a', 'x')")
        assert os.path.exists(f"{fresh_db}-wal"), "the WAL was deleted while a store had it open"
        _write_from_another_process(fresh_db, "INSERT INTO meta (key, value) VALUES ('b', 'y')")
        assert first.db.execute("PRAGMA data_version").fetchone()[0] != version
        assert first.db.execute("SELECT count(*) FROM meta WHERE key IN ('a', 'b')").fetchone()[0] == 2
        assert first.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_store(tmp_path)


def test_a_non_sqlite_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("hello, not a database")
    with pytest.raises(StoreError, match="not an SQLite database"):
        open_store(path)
    assert path.read_text() == "hello, not a database"


def test_a_newer_schema_is_refused(fresh_db):
    with open_store(fresh_db) as s:
        s.db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = fresh_db.read_bytes()
    with pytest.raises(StoreError, match="newer than this pairs"):
        open_store(fresh_db)
    assert fresh_db.read_bytes() == before


def test_read_only_open_does_not_create(tmp_path):
    with pytest.raises(StoreError, match="no database at"):
        open_store(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_run_ids_are_stable(store):
    config = tiny()
    store.queue([config], 2)
    assert [r["id"] for r in store.run_rows()] == [run_id(config, 0), run_id(config, 1)]
    assert os.path.basename(str(store.path)) == "runs.db"


def test_a_version_1_database_is_upgraded_in_place_with_a_backup(fresh_db):
    with open_store(fresh_db) as s:
        config = tiny()
        s.queue([config], 1)
        (claim,) = s.claim("host:1")
        s.record_epoch(claim.id, "host:1", {**METRICS, "epoch": 2, "val_acc": 0.75}, b"x")
        s.finish_run(claim.id, "host:1", {"test_acc": 0.8})
        s.db.execute("ALTER TABLE runs DROP COLUMN final_val_acc")
        s.db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with open_store(fresh_db) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.db["runs"].get(claim.id)["final_val_acc"] == 0.75
        assert s.db["epochs"].count == 1
    backup = fresh_db.with_name("runs.db.v1.bak")
    assert backup.exists()
    with sqlite3.connect(backup) as old:
        assert old.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        assert old.execute("SELECT count(*) FROM runs").fetchone() == (1,)
