"""The training core shared by both paths: one objective for one run or R stacked runs, one metrics
accumulator, one divergence error, one checkpoint codec; a Task carries its RunConfig."""

import math
import pickle

import pytest
import torch

from core.config import RunConfig
from core.executors import Task
from core.models import build_model
from core.train import checkpoint_problem, make_optimizer, save_checkpoint
from core.training_common import (
    CheckpointError,
    Metrics,
    TrainingDiverged,
    TrainingSums,
    check_finite,
    decode_checkpoint,
    encode_checkpoint,
    failure_reason,
    objective,
)


@pytest.mark.parametrize("digits", [False, True])
def test_the_stacked_objective_is_each_runs_own(digits):
    g = torch.Generator().manual_seed(0)
    r, n = 3, 7
    logits = torch.randn(r, n, 2, generator=g)
    target = torch.randint(0, 2, (r, n), generator=g)
    classes = torch.randint(0, 10, (r, n, 2), generator=g)
    digit_logits = torch.randn(r, n, 2, 10, generator=g) if digits else None
    total, main = objective(logits, digit_logits, target, classes, 0.5)
    assert total.shape == main.shape == (r,)
    for i in range(r):
        one_total, one_main = objective(logits[i], digit_logits[i] if digits else None, target[i], classes[i], 0.5)
        assert one_total.dim() == 0
        assert total[i].item() == pytest.approx(one_total.item(), rel=1e-6)
        assert main[i].item() == pytest.approx(one_main.item(), rel=1e-6)
    assert (total > main).all() if digits else torch.equal(total, main)


def test_metrics_of_one_run_and_of_stacked_runs_agree():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 2, generator=g)
    target = torch.randint(0, 2, (2, 6), generator=g)
    classes = torch.randint(0, 10, (2, 6, 2), generator=g)
    digit_logits = torch.randn(2, 6, 2, 10, generator=g)
    stacked = Metrics(2)
    singles = [Metrics(), Metrics()]
    for half in (slice(0, 4), slice(4, 6)):
        loss, main = objective(logits[:, half], digit_logits[:, half], target[:, half], classes[:, half], 1.0)
        stacked.add(loss, main, logits[:, half], target[:, half], digit_logits[:, half], classes[:, half])
        for i, single in enumerate(singles):
            args = (logits[i, half], digit_logits[i, half], target[i, half], classes[i, half])
            one_loss, one_main = objective(*args, 1.0)
            single.add(one_loss, one_main, args[0], args[2], args[1], args[3])
    for got, single in zip(stacked.per_run(6), singles):
        want = single.result(6)
        assert set(got) == set(want) == {"loss", "main_loss", "acc", "digit_acc"}
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-6)
    assert Metrics().result(1)["digit_acc"] is None


def test_divergence_is_one_error_with_one_message():
    check_finite(0.7, 1, 0.01)
    with pytest.raises(TrainingDiverged, match=r"^training loss became nan at epoch 3: lower --lr \(now 0.5\)$"):
        check_finite(math.nan, 3, 0.5)
    try:
        check_finite(math.inf, 1, 0.1)
    except TrainingDiverged as exc:
        assert failure_reason(exc).startswith("TrainingDiverged: training loss became inf at epoch 1")


def test_the_checkpoint_codec_round_trips_and_names_what_is_wrong():
    config = RunConfig(structure="shared-aux", arch="A1", kernel=3, epochs=2)
    model = build_model(config)
    state = save_checkpoint(model, make_optimizer(config, model), 2)
    saved = decode_checkpoint(state, config.epochs)
    assert saved.epoch == 2 and set(saved.model) == set(model.state_dict())
    assert encode_checkpoint(saved.epoch, saved.model, saved.optimizer) == state
    assert checkpoint_problem(config, state) is None
    with pytest.raises(CheckpointError, match="is not one of 1-1"):
        decode_checkpoint(state, 1)
    with pytest.raises(CheckpointError, match="not a pairs checkpoint"):
        decode_checkpoint(_saved({"epoch": 1}))
    with pytest.raises(CheckpointError) as info:
        decode_checkpoint(b"not a checkpoint")
    assert "\n" not in str(info.value)


def _saved(value) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def test_a_task_carries_a_run_config_and_pickles():
    config = RunConfig(structure="shared", arch="A1", kernel=3, epochs=2)
    task = Task(config, (("a", 0, None),), "cpu", None)
    assert task.config is config
    assert Task(config.to_dict(), task.runs, "cpu", None) == task  # a dict is turned into its RunConfig
    again = pickle.loads(pickle.dumps(task))
    assert again == task and isinstance(again.config, RunConfig)


def test_training_sums_give_what_metrics_give_for_the_same_batches():
    """Reduced once per epoch (float64) instead of per batch (float32): the same figures to
    float32 rounding, a last batch smaller than the others weighted by its size."""
    g = torch.Generator().manual_seed(3)
    r, sizes = 4, [4, 4, 4, 2]
    metrics, sums = Metrics(r), TrainingSums()
    for b in sizes:
        loss, main = torch.rand(r, generator=g), torch.rand(r, generator=g)
        logits, target = torch.randn(r, b, 2, generator=g), torch.randint(0, 2, (r, b), generator=g)
        metrics.add(loss, main, logits, target)
        sums.add(loss, main, logits, target)
    expected, got = metrics.result(sum(sizes)), sums.result(sum(sizes))
    assert got.keys() == expected.keys()
    assert got["digit_acc"] == expected["digit_acc"] == [None] * r
    for key in ("loss", "main_loss", "acc"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6), key
    assert any(0 < acc < 1 for acc in got["acc"])
