"""A resumed run gives the numbers of an undisturbed one, with every option beyond the paper.

Each option of ``RunConfig.EXTENSION_FIELDS`` (and the paper's protocol) is trained through the
real task code (``core.executors.execute_task``, what every executor's worker runs) twice:
straight through, and stopped after epoch 1 then resumed from that epoch's checkpoint with the
global random generator left in another state (as in a new process). The resumed epochs and test
metrics must equal the undisturbed ones bit for bit. A slow test does the same with a real
``pairs work`` killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

from core.api import open_store, queue, work
from core.config import EXTENSION_FIELDS, vectorizable
from core.execution import Done, Epoch, ExecutorEvent, Interrupted
from core.executors import Task, execute_task
from tests.conftest import tiny
from tests.test_reliability import _pairs_work, _read, _results, _wait_for

#: A value beyond the paper for each extension field.
OPTIONS = {
    "batch_norm": True,
    "dropout": 0.3,
    "pooling": "avg",
    "hidden": 8,
    "momentum": 0.9,
    "weight_decay": 0.01,
    "repair": True,
    "shift": 1,
    "rotate": 10.0,
    "swap": True,
}
EPOCHS = 3


def test_every_extension_field_is_covered():
    assert set(OPTIONS) == set(EXTENSION_FIELDS)


def _config(option: str | None):
    changes = {option: OPTIONS[option]} if option else {}
    structure = "shared-aux" if option == "hidden" else "shared"
    # 40 pairs (10 batches of 4) an epoch: resuming must be exact whatever the size, and each
    # option's random draws (shuffles, masks, augmentations) happen in every batch
    return tiny(structure=structure, epochs=EPOCHS, train_pairs=40, test_pairs=40, **changes)


def _execute(config, runs, *, vectorize: bool, stop_after: int | None = None) -> list[ExecutorEvent]:
    """Events of one task; with ``stop_after``, stop once that many epoch events came."""
    events: list[ExecutorEvent] = []

    def should_stop() -> bool:
        return stop_after is not None and sum(isinstance(e, Epoch) for e in events) >= stop_after

    task = Task(config.to_dict(), tuple(runs), "cpu", None, vectorize)
    execute_task(task, events.append, should_stop)
    return events


def _scramble_global_rng() -> None:
    """What a new worker process has: the global generator in some other state."""
    torch.manual_seed(987654321)
    torch.rand(1000)


def _numbers(events: list[ExecutorEvent], first_epoch: int) -> dict:
    """Epoch rows from ``first_epoch`` on and test metrics, without timings."""
    numbers = {}
    for event in events:
        if isinstance(event, Epoch) and event.metrics["epoch"] >= first_epoch:
            numbers[(event.run_id, event.metrics["epoch"])] = {k: v for k, v in event.metrics.items() if k != "seconds"}
        elif isinstance(event, Done):
            numbers[(event.run_id, "test")] = {k: v for k, v in event.results.items() if k.startswith("test_")}
    return numbers


@pytest.mark.parametrize("option", [None, *OPTIONS])
def test_one_at_a_time_resume_is_bitwise_identical(option):
    config = _config(option)
    straight = _execute(config, [("run", 0, None)], vectorize=False)
    assert [type(e) for e in straight] == [Epoch] * EPOCHS + [Done]

    first = _execute(config, [("run", 0, None)], vectorize=False, stop_after=1)
    assert [type(e) for e in first] == [Epoch, Interrupted]
    checkpoint = first[0].checkpoint
    _scramble_global_rng()
    resumed = _execute(config, [("run", 0, checkpoint)], vectorize=False)
    assert [e.metrics["epoch"] for e in resumed if isinstance(e, Epoch)] == list(range(2, EPOCHS + 1))
    assert _numbers(resumed, 2) == _numbers(straight, 2)


VECTORIZABLE = [None, *(o for o in OPTIONS if vectorizable(_config(o)))]


@pytest.mark.parametrize("option", VECTORIZABLE)
def test_vectorised_resume_is_identical(option):
    config = _config(option)
    runs = [("a", 0, None), ("b", 1, None)]
    straight = _execute(config, runs, vectorize=True)
    first = _execute(config, runs, vectorize=True, stop_after=2)
    states = {e.run_id: e.checkpoint for e in first if isinstance(e, Epoch)}
    assert sorted(states) == ["a", "b"]
    _scramble_global_rng()
    resumed = _execute(config, [("a", 0, states["a"]), ("b", 1, states["b"])], vectorize=True)
    assert _numbers(resumed, 2) == _numbers(straight, 2)
    # Resumed in another grouping (one repetition alone): float32 rounding at most.
    _scramble_global_rng()
    alone = _numbers(_execute(config, [("b", 1, states["b"])], vectorize=True), 2)
    expected = {k: v for k, v in _numbers(straight, 2).items() if k[0] == "b"}
    assert alone.keys() == expected.keys()
    for key, values in expected.items():
        for name, value in values.items():
            assert alone[key][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (key, name)


@pytest.mark.parametrize("option", ["dropout", "batch_norm"])
def test_the_numbers_do_not_depend_on_the_global_generator(option):
    """Whatever state the process's generator is in, a run draws the same (seed, epoch) masks."""
    config = _config(option)
    _scramble_global_rng()
    one = _numbers(_execute(config, [("run", 0, None)], vectorize=False), 1)
    torch.manual_seed(1)
    two = _numbers(_execute(config, [("run", 0, None)], vectorize=False), 1)
    assert one == two


@pytest.mark.slow
def test_killed_pairs_work_with_dropout_resumes_to_the_undisturbed_numbers(tmp_path):
    config = tiny(dropout=0.3, epochs=6, train_pairs=300, val_pairs=30)
    reference = tmp_path / "reference.db"
    with open_store(reference) as s:
        queue(s, [config], 2)
        assert work(s, workers=2, vectorize=False).done == 2
    chaos = tmp_path / "chaos.db"
    with open_store(chaos) as s:
        queue(s, [config], 2)
    assert _read(chaos, "SELECT id FROM configs") == _read(reference, "SELECT id FROM configs")
    proc = _pairs_work(chaos, "--workers", "2", "--no-vectorize")
    try:
        _wait_for(
            lambda: _read(chaos, "SELECT count(*) FROM epochs WHERE epoch >= 2")[0][0] >= 1, what="epoch 2 of a run"
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert _read(chaos, "SELECT count(*) FROM runs WHERE status = 'done'") == [(0,)]
    resumed = _pairs_work(chaos, "--workers", "2", "--no-vectorize")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert _results(chaos) == _results(reference)
