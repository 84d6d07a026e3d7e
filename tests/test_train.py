import pytest
import torch

from core.config import RunConfig, lr_at
from core.data import draw_pairs
from core.train import RunInterrupted, TrainingDiverged, run_training
from core.vectorized import run_group
from tests.conftest import tiny


def test_lr_schedule_is_the_papers():
    config = RunConfig()
    assert [lr_at(config, e) for e in (1, 15)] == [0.01, 0.01]
    assert lr_at(config, 16) == pytest.approx(0.001)
    assert lr_at(config, 30) == pytest.approx(0.001)


def test_loss_falls_on_a_tiny_set():
    config = tiny(structure="shared", epochs=3, val_pairs=20)  # 0.89 -> 0.80 -> 0.62
    epochs = []
    run_training(config, 0, on_epoch=lambda m, _: epochs.append(m))
    assert [m.epoch for m in epochs] == list(range(1, 4))
    assert epochs[-1].train_loss < epochs[0].train_loss


def test_eq2_terms_are_recorded_for_shared_aux():
    epochs = []
    test = run_training(tiny(structure="shared-aux"), 0, on_epoch=lambda m, _: epochs.append(m))
    last = epochs[-1]
    assert last.train_loss > last.train_main_loss > 0
    assert last.val_loss > last.val_main_loss > 0
    assert 0 <= last.val_digit_acc <= 1
    assert test.test_loss > test.test_main_loss and test.test_digit_acc is not None


def test_main_loss_equals_total_without_aux():
    epochs = []
    test = run_training(tiny(structure="independent"), 0, on_epoch=lambda m, _: epochs.append(m))
    assert epochs[-1].train_loss == epochs[-1].train_main_loss
    assert epochs[-1].val_digit_acc is None and test.test_digit_acc is None


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run():
    config = tiny(structure="shared-aux", epochs=4)
    data = draw_pairs(config.seed, 0, config.train_pairs, config.val_pairs, config.test_pairs)
    full, states = [], {}

    def record(metrics, state):
        full.append(metrics)
        states[metrics.epoch] = state

    final = run_training(config, 0, data=data, on_epoch=record)
    resumed = []
    final_resumed = run_training(config, 0, data=data, checkpoint=states[2], on_epoch=lambda m, _: resumed.append(m))
    assert [m.epoch for m in resumed] == [3, 4]
    for a, b in zip(full[2:], resumed):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-6)
        assert a.val_acc == b.val_acc
    assert final.test_acc == final_resumed.test_acc
    assert final.test_loss == pytest.approx(final_resumed.test_loss, rel=1e-6)


def test_stop_request_interrupts_between_epochs():
    calls = []
    with pytest.raises(RunInterrupted):
        run_training(tiny(epochs=3), 0, on_epoch=lambda m, _: calls.append(m), should_stop=lambda: len(calls) >= 1)
    assert len(calls) == 1


def test_diverging_run_raises_with_the_reason():
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        run_training(tiny(lr=1e6, optimizer="sgd", epochs=3), 0)


def test_bf16_path_runs_on_cpu():
    test = run_training(tiny(precision="bf16"), 0)
    assert 0 <= test.test_acc <= 1
    assert torch.isfinite(torch.tensor(test.test_loss))
    grouped = run_group(tiny(precision="bf16", structure="shared-aux"), [0, 1])
    assert sorted(grouped) == [0, 1]
    assert all(0 <= t.test_acc <= 1 and torch.isfinite(torch.tensor(t.test_loss)) for t in grouped.values())


def test_evaluation_in_batches_gives_the_metrics_of_one_batch(monkeypatch):
    """Evaluation runs in small batches for speed: the metrics must not depend on their size."""
    import core.train
    import core.vectorized
    from core.models import build_model
    from core.vectorized import VectorizedRuns, _stack

    config = tiny(structure="shared-aux", test_pairs=100)
    data = [draw_pairs(config.seed, rep, config.train_pairs, config.val_pairs, config.test_pairs) for rep in (0, 1)]
    torch.manual_seed(0)
    model = build_model(config)
    group = VectorizedRuns(config, [0, 1], "cpu", [None, None])
    test = _stack([d.test for d in data], "cpu")
    results = []
    for batch in (1000, 7):
        monkeypatch.setattr(core.train, "EVAL_BATCH", batch)
        monkeypatch.setattr(core.vectorized, "EVAL_BATCH", batch)
        results.append((core.train.evaluate(model, data[0].test, aux_weight=config.aux_weight), group.evaluate(test)))
    (single, grouped), (single_batched, grouped_batched) = results
    assert single_batched == pytest.approx(single, rel=1e-5)
    for name, values in grouped.items():
        assert grouped_batched[name] == pytest.approx(values, rel=1e-5), name
