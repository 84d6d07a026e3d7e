"""Cross-configuration fusion (core.fused): configurations of one family trained as one fused
model give every run the numbers of its own configuration's vectorised group (core.vectorized),
epoch by epoch, from scratch and resumed from a checkpoint; the scheduler claims a family
together."""

import pytest
import torch

from core import execution
from core.api import open_store, queue, work
from core.data import draw_pairs
from core.executors import Task, execute_task
from core.families import family_key, fusion_enabled
from core.fused import FusedRuns, run_fused
from core.train import RunInterrupted
from core.training_common import decode_checkpoint
from core.vectorized import run_group
from tests.conftest import tiny

REPS = [0, 1]


def family(**changes):
    """A family of five configurations: the four structures and protocol variants (another
    learning rate, aux weight, optimiser, momentum and weight decay, a hidden layer)."""
    return [
        tiny(structure="independent", **changes),
        tiny(structure="shared", **changes),
        tiny(structure="shared", lr=0.03, momentum=0.5, weight_decay=0.001, **changes),
        tiny(structure="shared-aux", aux_weight=0.5, hidden=6, **changes),
        tiny(structure="digits", optimizer="adam", lr=0.002, **changes),
    ]


def _unfused(config, checkpoints=None):
    epochs, states = {}, {}

    def record(rep, metrics, state):
        epochs.setdefault(rep, []).append(metrics.as_row())
        states[rep, metrics.epoch] = state

    test = run_group(config, REPS, checkpoints=checkpoints, on_epoch=record)
    return epochs, states, test


def _fused(configs, checkpoints=None, should_stop=lambda: False, states=None):
    epochs, states = {}, {} if states is None else states

    def record(index, rep, metrics, state):
        epochs.setdefault((index, rep), []).append(metrics.as_row())
        states[index, rep, metrics.epoch] = state

    checkpoints = checkpoints or [[None] * len(REPS) for _ in configs]
    test = run_fused([(c, REPS, own) for c, own in zip(configs, checkpoints)], on_epoch=record, should_stop=should_stop)
    return epochs, states, test


def _assert_same_epochs(ours, theirs):
    assert [row["epoch"] for row in ours] == [row["epoch"] for row in theirs]
    for a, b in zip(ours, theirs):
        for name, value in a.items():
            if name == "seconds":
                continue
            if value is None:
                assert b[name] is None, name
            else:
                assert b[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def _assert_same_state(ours: bytes, theirs: bytes):
    a, b = decode_checkpoint(ours), decode_checkpoint(theirs)
    assert a.epoch == b.epoch and a.model.keys() == b.model.keys()
    for name in a.model:
        torch.testing.assert_close(a.model[name], b.model[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("changes", [{}, {"arch": "A3", "pooling": "avg"}])
def test_every_fused_run_has_the_numbers_of_its_own_group(changes):
    configs = family(**changes)
    assert len({family_key(c) for c in configs}) == 1
    epochs, states, test = _fused(configs)
    for index, config in enumerate(configs):
        own_epochs, own_states, own_test = _unfused(config)
        for rep in REPS:
            _assert_same_epochs(own_epochs[rep], epochs[index, rep])
            _assert_same_state(own_states[rep, 2], states[index, rep, 2])
            assert test[index, rep].as_row() == pytest.approx(own_test[rep].as_row(), rel=1e-5, abs=1e-6)
        assert (own_test[0].test_digit_acc is None) == (config.structure in ("independent", "shared"))


def test_a_fused_group_resumed_from_its_checkpoints_ends_as_an_uninterrupted_one():
    configs = family()
    full_epochs, _, full_test = _fused(configs)
    states: dict = {}
    checks = iter([False, True])  # stop before the second epoch
    with pytest.raises(RunInterrupted, match="stopped before epoch 2"):
        _fused(configs, should_stop=lambda: next(checks), states=states)
    assert sorted({epoch for _, _, epoch in states}) == [1]
    # resume from the epoch-1 checkpoints, those of one configuration written by the unfused path
    resumed_from = [[states[i, rep, 1] for rep in REPS] for i in range(len(configs))]
    resumed_from[1] = [_unfused(configs[1])[1][rep, 1] for rep in REPS]
    epochs, _, test = _fused(configs, checkpoints=resumed_from)
    for key, rows in epochs.items():
        assert [row["epoch"] for row in rows] == [2]
        _assert_same_epochs(full_epochs[key][1:], rows)
        assert test[key].as_row() == pytest.approx(full_test[key].as_row(), rel=1e-5, abs=1e-6)


def test_the_members_of_a_fused_group_must_start_from_one_epoch_and_be_one_family():
    configs = family()[:2]
    state = _unfused(configs[0])[1][0, 1]
    with pytest.raises(ValueError, match="same epoch"):
        FusedRuns([(configs[0], [0], [state]), (configs[1], [0], [None])], "cpu")
    with pytest.raises(ValueError, match="one family"):
        FusedRuns([(configs[0], [0], [None]), (tiny(batch_size=8), [0], [None])], "cpu")


def test_family_key_keeps_apart_what_cannot_step_together():
    base = tiny()
    assert family_key(base) == family_key(base.replace(structure="independent", lr=0.5, aux_weight=2.0))
    for other in (
        base.replace(batch_size=8),
        base.replace(epochs=3),
        base.replace(arch="A2"),
        base.replace(kernel=5),
        base.replace(pooling="avg"),
        base.replace(train_pairs=120),
        base.replace(precision="bf16"),
    ):
        assert family_key(other) != family_key(base)
    assert family_key(base.replace(batch_norm=True)) is None
    assert family_key(base.replace(dropout=0.5)) is None


def test_fusion_follows_the_environment_and_leaves_large_towers_apart(monkeypatch):
    monkeypatch.delenv("PAIRS_FUSE", raising=False)
    assert fusion_enabled()
    small, large = tiny(arch="A5", kernel=3), tiny(arch="A5", kernel=5)
    assert family_key(small) is not None and family_key(large) is None
    monkeypatch.setenv("PAIRS_FUSE", "all")
    assert fusion_enabled() and family_key(large) is not None
    for off in ("0", "false", "No", "off"):
        monkeypatch.setenv("PAIRS_FUSE", off)
        assert not fusion_enabled()


def test_a_task_fuses_the_runs_at_each_epoch_and_trains_the_rest_apart():
    """Runs of a family at different epochs after an interrupt: those at the same epoch fuse,
    a configuration alone at its epoch trains as its own group; every run ends as unfused."""
    configs = family()[:3]
    data = [draw_pairs(c.seed, rep, c.train_pairs, c.val_pairs, c.test_pairs) for c in configs for rep in REPS]
    assert data  # the cache is warm for both paths
    unfused = [_unfused(c) for c in configs]
    ahead = [unfused[0][1][rep, 1] for rep in REPS]  # the first configuration already at epoch 1
    runs = [tuple((f"{i}-{rep}", rep, ahead[rep] if i == 0 else None) for rep in REPS) for i in range(3)]
    task = Task(configs[0], runs[0], "cpu", None, True, tuple(zip(configs[1:], runs[1:])))
    assert task.run_ids == [f"{i}-{rep}" for i in range(3) for rep in REPS]
    events = []
    execute_task(task, events.append, lambda: False)
    epochs = [e for e in events if isinstance(e, execution.Epoch)]
    done = {e.run_id: e.results for e in events if isinstance(e, execution.Done)}
    assert sorted(done) == task.run_ids
    for i, (own_epochs, _, own_test) in enumerate(unfused):
        for rep in REPS:
            rows = [e.metrics for e in epochs if e.run_id == f"{i}-{rep}"]
            _assert_same_epochs(own_epochs[rep][1:] if i == 0 else own_epochs[rep], rows)
            assert done[f"{i}-{rep}"]["test_loss"] == pytest.approx(own_test[rep].test_loss, rel=1e-5)


class _Inline:
    """An executor that trains each task here, recording the tasks (to see what was fused)."""

    tasks: list = []

    def __init__(self, workers, threads):
        self.slots, self.events = workers, []

    def free_slots(self):
        return self.slots

    def submit(self, task):
        _Inline.tasks.append(task)
        execute_task(task, self.events.append, lambda: False)

    def poll(self, timeout):
        events, self.events = self.events, []
        return events

    def lost_runs(self):
        return []

    def lost_reason(self, run_id):
        return None

    def request_stop(self):
        pass

    def shutdown(self, *, kill=False):
        pass


@pytest.fixture
def inline_executor():
    execution.register(execution.ExecutorSpec("inline-test", _Inline, "tasks trained in the driver"))
    _Inline.tasks = []
    yield _Inline
    execution.EXECUTORS.pop("inline-test", None)


def _metrics(path):
    with open_store(path) as store:
        rows = store.db.query(
            "SELECT c.structure, c.lr, r.rep, e.epoch, e.train_loss, e.val_acc, "
            "r.test_loss FROM epochs e JOIN runs r ON r.id = e.run_id "
            "JOIN configs c ON c.id = r.config_id ORDER BY 1, 2, 3, 4"
        )
        return [tuple(row.values()) for row in rows]


def test_the_scheduler_claims_a_family_together_and_records_the_unfused_numbers(tmp_path, inline_executor):
    configs = family()[:3] + [tiny(structure="shared", batch_size=5)]  # the last: its own family
    results = {}
    for fuse in (True, False):
        path = tmp_path / f"fuse-{fuse}.db"
        with open_store(path) as store:
            queue(store, configs, 2)
            summary = work(store, workers=1, executor="inline-test", fuse=fuse)
        assert summary.done == 8 and summary.failed == 0
        results[fuse] = _metrics(path)
        tasks, inline_executor.tasks = inline_executor.tasks, []
        sizes = sorted(len(task.members) for task in tasks)
        assert sizes == ([1, 3] if fuse else [1, 1, 1, 1])
    assert len(results[True]) == len(results[False]) == 8 * 2
    for fused, unfused in zip(results[True], results[False]):
        assert fused[:4] == unfused[:4]
        assert fused[4:] == pytest.approx(unfused[4:], rel=1e-5)


def test_a_diverging_configuration_fails_alone_and_the_others_keep_their_numbers():
    configs = [tiny(structure="shared"), tiny(structure="shared-aux", lr=1e6)]
    failed = []
    epochs: dict = {}

    def record(index, rep, metrics, state):
        epochs.setdefault((index, rep), []).append(metrics.as_row())

    test = run_fused(
        [(c, REPS, [None, None]) for c in configs],
        on_epoch=record,
        on_failed=lambda index, rep, reason: failed.append((index, rep, reason)),
    )
    assert sorted((index, rep) for index, rep, _ in failed) == [(1, 0), (1, 1)]
    assert all("lower --lr" in reason for _, _, reason in failed)
    assert sorted(test) == [(0, 0), (0, 1)]
    own_epochs, _, own_test = _unfused(configs[0])
    for rep in REPS:
        _assert_same_epochs(own_epochs[rep], epochs[0, rep])
        assert test[0, rep].test_loss == pytest.approx(own_test[rep].test_loss, rel=1e-5)


def test_a_fused_group_trains_in_bf16():
    configs = [
        tiny(structure="shared", precision="bf16", epochs=1),
        tiny(structure="independent", precision="bf16", epochs=1),
    ]
    epochs, _, test = _fused(configs)
    for index, config in enumerate(configs):
        own_epochs, _, _ = _unfused(config)
        for rep in REPS:
            assert epochs[index, rep][0]["train_loss"] == pytest.approx(own_epochs[rep][0]["train_loss"], rel=0.02)
            assert 0 <= test[index, rep].test_acc <= 1
