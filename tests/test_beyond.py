"""Beyond the paper: the ``digits`` structure, the options and the augmentations (issue 8)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from core.augment import augment_generator, augment_split, repair, swap, targets, transform
from core.config import (
    EXTENSION_FIELDS,
    PAPER_STRUCTURES,
    STRUCTURES,
    ConfigError,
    GridSpec,
    RunConfig,
    beyond_steps,
    parse_grid,
    preset_configs,
    vectorizable,
)
from core.data import PairSplit, draw_pairs
from core.execution import Done, Epoch
from core.executors import Task, execute_task
from core.models import build_model, comparison_logits
from core.train import run_training
from core.vectorized import run_group
from tests.conftest import tiny
from tui.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


# -- the posterior comparison ------------------------------------------------------------------


def test_posterior_comparison_equals_brute_force():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 2, 10, generator=generator) * 3
    p = logits.softmax(-1)
    brute = torch.tensor(
        [sum(p[k, 0, i] * p[k, 1, j] for i in range(10) for j in range(10) if i > j) for k in range(64)]
    )
    comparison = comparison_logits(logits)
    assert comparison.shape == (64, 2)
    assert torch.allclose(comparison[:, 1].exp(), brute, atol=1e-6)
    assert torch.allclose(comparison.softmax(1)[:, 1], brute, atol=1e-6)  # [log(1-P), log P]
    assert torch.allclose(comparison.exp().sum(1), torch.ones(64), atol=1e-6)


def test_posterior_comparison_of_certain_digits_is_the_label():
    classes = torch.tensor([[3, 1], [1, 3], [5, 5], [9, 0], [0, 0]])
    logits = torch.nn.functional.one_hot(classes, 10).float() * 50  # near-certain posteriors
    decided = comparison_logits(logits).argmax(1)
    assert decided.tolist() == targets(classes).tolist() == [1, 0, 0, 1, 0]


def test_digits_model_decides_from_its_digit_logits():
    model = build_model(RunConfig(structure="digits", arch="A4", kernel=3, hidden=16))
    logits, digits = model(torch.randn(5, 2, 14, 14))
    assert logits.shape == (5, 2) and digits.shape == (5, 2, 10)
    assert torch.allclose(logits, comparison_logits(digits))
    assert not hasattr(model, "head") and not hasattr(model, "classifier")


# -- augmentations -----------------------------------------------------------------------------


def _split(classes: list[list[int]]) -> PairSplit:
    c = torch.tensor(classes)
    n = len(c)
    # each image is filled with its class and its position, so it can be traced
    x = (c.float() * 100 + torch.arange(2 * n).reshape(n, 2))[:, :, None, None].expand(n, 2, 14, 14)
    return PairSplit(x.clone(), targets(c), c)


def test_swap_and_flip_keeps_labels_consistent_including_equal_digits():
    split = _split([[3, 1], [1, 3], [5, 5], [0, 0], [9, 2], [2, 9], [7, 7], [4, 8]] * 8)
    x, classes = swap(split.x, split.classes, torch.Generator().manual_seed(1))
    swapped = (classes != split.classes).any(1) | (x[:, 0, 0, 0] != split.x[:, 0, 0, 0])
    assert 0 < swapped.sum() < len(split)  # some pairs swapped, some not
    assert torch.equal(x[swapped], split.x[swapped].flip(1))
    assert torch.equal(classes[swapped], split.classes[swapped].flip(1))
    assert torch.equal(x[~swapped], split.x[~swapped])
    target = targets(classes)
    assert torch.equal(target, (classes[:, 0] > classes[:, 1]).long())
    equal = classes[:, 0] == classes[:, 1]
    assert equal.any() and (target[equal] == 0).all()  # equal digits: label 0 both ways
    different = swapped & ~equal
    assert torch.equal(target[different], 1 - split.target[different])  # flipped


def test_repairing_keeps_every_digit_with_its_class():
    split = _split([[i % 10, (3 * i) % 10] for i in range(50)])
    x, classes = repair(split.x, split.classes, torch.Generator().manual_seed(2))
    assert x.shape == split.x.shape and classes.shape == split.classes.shape
    assert not torch.equal(classes, split.classes)
    # the same images, each still with its own class (the image encodes class * 100 + position)
    assert sorted(x[:, :, 0, 0].flatten().tolist()) == sorted(split.x[:, :, 0, 0].flatten().tolist())
    assert torch.equal((x[:, :, 0, 0] // 100).long(), classes)


def test_whole_pixel_shifts_move_images_and_keep_the_background():
    image = torch.full((1, 14, 14), -0.5)
    image[0, 5, 7] = 2.0
    moved = transform(image.repeat(200, 1, 1), 1, 0.0, torch.Generator().manual_seed(3), -0.5)
    assert moved.shape == (200, 14, 14)
    seen = set()
    for m in moved:
        peak = (m == m.max()).nonzero()
        assert len(peak) == 1 and torch.isclose(m.max(), torch.tensor(2.0), atol=1e-5)
        dy, dx = peak[0, 0].item() - 5, peak[0, 1].item() - 7
        assert abs(dx) <= 1 and abs(dy) <= 1
        seen.add((dy, dx))
        assert torch.allclose(m.sum(), image.sum(), atol=1e-4)  # nothing lost, background kept
    assert len(seen) == 9  # every shift in [-1, 1]^2 happens


def test_rotations_are_small_and_keep_the_background():
    image = torch.full((1, 14, 14), -0.4)
    image[0, 4:10, 6:8] = 2.0  # a vertical bar through the centre
    moved = transform(image.repeat(50, 1, 1), 0, 10.0, torch.Generator().manual_seed(4), -0.4)
    assert moved.shape == (50, 14, 14) and torch.isfinite(moved).all()
    assert torch.allclose(moved[:, 0, 0], torch.tensor(-0.4))  # corners stay background
    assert (moved - image).abs().amax() > 0.1  # it did rotate
    assert (moved[:, 4:10, 6:8] > 0.5).float().mean() > 0.6  # but only a little


def test_augment_split_keeps_shapes_and_label_semantics():
    config = tiny(structure="digits", repair=True, swap=True, shift=1, rotate=10.0)
    data = draw_pairs(0, 0, 100, 10, 10)
    out = augment_split(data.train, config, augment_generator(123, 1))
    assert out.x.shape == data.train.x.shape and out.x.dtype == data.train.x.dtype
    assert out.classes.shape == data.train.classes.shape
    assert torch.equal(out.target, (out.classes[:, 0] > out.classes[:, 1]).long())
    assert sorted(out.classes.flatten().tolist()) == sorted(data.train.classes.flatten().tolist())
    again = augment_split(data.train, config, augment_generator(123, 1))
    assert torch.equal(out.x, again.x)  # a pure function of (run seed, epoch)
    assert not torch.equal(out.x, augment_split(data.train, config, augment_generator(123, 2)).x)
    assert augment_split(data.train, tiny(), augment_generator(123, 1)) is data.train


# -- configuration -----------------------------------------------------------------------------


def test_new_fields_do_not_change_existing_ids():
    assert RunConfig(structure="shared", arch="A5", kernel=5).id == "93bf2ffb87f3257d"
    canonical = json.loads(RunConfig().canonical_json())
    assert not set(EXTENSION_FIELDS) & set(canonical)
    changed = RunConfig(batch_norm=True)
    assert changed.id != RunConfig().id and json.loads(changed.canonical_json())["batch_norm"]
    assert RunConfig(rotate=10).id == RunConfig(rotate=10.0).id


def test_paper_grid_keeps_the_papers_structures():
    assert "digits" in STRUCTURES and "digits" not in PAPER_STRUCTURES
    assert GridSpec().structures == PAPER_STRUCTURES
    assert len(preset_configs("paper", {})) == 36


def test_options_parse_from_text_and_reject_bad_values():
    configs = parse_grid({"batch_norm": "on,off", "dropout": "0.3", "pooling": "AVG"})
    assert [(c.batch_norm, c.dropout, c.pooling) for c in configs] == [(True, 0.3, "avg"), (False, 0.3, "avg")]
    for options, message in (
        ({"batch_norm": "maybe"}, "true or false"),
        ({"dropout": "1"}, "dropout must be"),
        ({"pooling": "min"}, "unknown pooling"),
        ({"shift": "-1"}, "shift must be"),
        ({"momentum": "0.9", "optimizer": "adam"}, "momentum is for"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_grid(options)


def test_vectorizable_and_the_fallback_to_one_at_a_time():
    assert vectorizable(tiny(structure="digits", repair=True, shift=1, momentum=0.9))
    assert not vectorizable(tiny(batch_norm=True)) and not vectorizable(tiny(dropout=0.2))
    config = tiny(structure="digits", batch_norm=True, dropout=0.2, epochs=1)
    with pytest.raises(ValueError, match="one at a time"):
        run_group(config, [0, 1])
    events = []
    task = Task(config.to_dict(), (("a", 0, None), ("b", 1, None)), "cpu", None, vectorize=True)
    execute_task(task, events.append, lambda: False)
    assert [type(e) for e in events if not isinstance(e, Epoch)] == [Done, Done]


def test_augmented_training_is_the_same_on_both_paths():
    config = tiny(structure="digits", repair=True, swap=True, shift=1, rotate=10.0, hidden=8)
    one = []
    tests = [run_training(config, rep, on_epoch=lambda m, _: one.append(m)) for rep in (0, 1)]
    both = {}
    group = run_group(config, [0, 1], on_epoch=lambda rep, m, _: both.setdefault(rep, []).append(m))
    for rep, test in zip((0, 1), tests):
        for a, b in zip(one[2 * rep : 2 * rep + 2], both[rep]):
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
            assert a.val_acc == pytest.approx(b.val_acc)
        assert test.test_acc == pytest.approx(group[rep].test_acc)


def test_beyond_preset_adds_one_ingredient_at_a_time():
    steps = beyond_steps()
    assert steps[0][1].structure == "shared-aux" and steps[1][1].structure == "digits"
    fields = [{f: getattr(c, f) for f in RunConfig.__dataclass_fields__} for _, c in steps]
    for before, after in zip(fields[2:], fields[3:]):
        changed = {f for f in before if before[f] != after[f]}
        assert len(changed) >= 1
    assert len({c.id for _, c in steps}) == len(steps)


# -- end to end --------------------------------------------------------------------------------

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


@pytest.mark.slow
def test_digits_trains_through_pairs_run_and_appears_in_the_tables(fresh_db, tmp_path):
    result = invoke(
        "run", "--structure", "digits", *TINY, "--shift", "1", "--swap", "on", "--workers", "1", "--db", fresh_db
    )
    assert result.exit_code == 0, result.output
    assert "digits A1 k3: 2 run(s) done" in result.stdout
    table = invoke("table", "-f", "markdown", "--db", fresh_db).stdout
    assert "Beyond the paper (digits)" in table and "shift 1 swap" in table and "2/2" in table
    assert "digits" in invoke("best", "--db", fresh_db).stdout
    assert "digits" in invoke("table", "--structure", "digits", "--db", fresh_db).stdout
    assert "structure,arch,kernel,config_id" in invoke("table", "-f", "csv", "--db", fresh_db).stdout
    assert invoke("report", "--output", tmp_path / "report", "--db", fresh_db).exit_code == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "beyond the paper" in report and "| `shift` | 0 | 1 |" in report


def test_grid_beyond_queues_the_ablation(fresh_db):
    result = invoke("grid", "beyond", "--reps", "1", "--epochs", "2", "--db", fresh_db)
    assert result.exit_code == 0, result.output
    queued = {c.id for c in preset_configs("beyond", {"epochs": "2"})}
    assert f"queued {len(queued)} new run(s)" in result.stdout


def test_bad_option_value_is_one_line(fresh_db):
    result = runner.invoke(app, ["queue", "--batch-norm", "maybe", "--db", str(fresh_db)])
    assert isinstance(result.exception, ConfigError)
    assert "--batch-norm must be true or false" in str(result.exception)
