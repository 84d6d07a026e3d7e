"""A structure registered at run time (the recipe of docs/architecture.md, "How to add a
structure") trains on both paths with the same numbers and is listed wherever structures are."""

import pytest
import torch
from torch import nn
from torch.func import stack_module_state
from typer.testing import CliRunner

from core import grouped, structures
from core.config import STRUCTURES, RunConfig, model_layers, not_vectorizable_reason, parameter_count, vectorizable
from core.execution import Done, Epoch
from core.executors import Task, execute_task
from core.models import ConvTower, PairModel, build_model
from core.models import parameter_count as torch_parameter_count
from core.train import run_training
from core.vectorized import run_group
from tests.conftest import tiny


# Step 1: the nn.Module (in core/models.py for a real one), built from the existing parts.
class SharedDifference(PairModel):
    """A shared tower; the comparison from the difference of the two images' features."""

    def __init__(self, channels, kernel, **options):
        super().__init__(channels, kernel, **options)
        self.tower = self.new_tower()
        self.classifier = self.new_dense(self.tower.out_features, 2)

    def forward(self, x):
        n = x.shape[0]
        features = self.tower(x.reshape(2 * n, 1, 14, 14)).reshape(n, 2, -1)
        return self.classifier(features[:, 0] - features[:, 1]), None


# Step 2: its grouped forward (in core/grouped.py), from core.grouped's building blocks.
def difference_forward(model, params, x):
    r, n = x.shape[:2]
    features = grouped.shared_tower(model, params, x).reshape(r, n, 2, -1)
    return grouped.dense(model.classifier, "classifier", params, features[:, :, 0] - features[:, :, 1]), None


# Step 3: its torch-free layer walk (in core/structures.py).
def difference_layers(kit):
    tower = kit.tower("tower")
    features = tower[-1].shape[0]
    return [
        *tower,
        kit.Layer("comparison head", "difference", (features,), 0),
        *kit.dense("comparison head", features, 2),
    ]


@pytest.fixture
def toy():
    # Step 4: the registry entry (in core/structures.py).
    entry = structures.register(
        structures.Structure(
            "shared-diff",
            SharedDifference,
            digit_logits=False,
            towers=1,
            description="shared tower, comparison from the features' difference",
            layers=difference_layers,
            grouped=difference_forward,
        )
    )
    slow = structures.register(
        structures.Structure(
            "shared-diff-slow",
            SharedDifference,
            digit_logits=False,
            towers=1,
            description="the same without a grouped forward",
            layers=difference_layers,
        )
    )
    yield entry, slow
    structures.unregister(entry.name)
    structures.unregister(slow.name)


def test_every_entry_declares_what_its_module_does(toy):
    for entry in structures.entries():
        for arch, kernel in (("A1", 3), ("A3", 5)):
            config = RunConfig(structure=entry.name, arch=arch, kernel=kernel, hidden=4)
            model = build_model(config)
            towers = sum(isinstance(m, ConvTower) for m in model.modules())
            assert towers == entry.towers
            _, digits = model(torch.randn(3, 2, 14, 14))
            assert (digits is not None) == entry.digit_logits
            assert sum(layer.params for layer in model_layers(config)) == torch_parameter_count(model)
    assert parameter_count("shared-diff", "A1", 3) == torch_parameter_count(
        build_model(RunConfig(structure="shared-diff", arch="A1", kernel=3))
    )


def test_a_registered_structure_is_a_structure_everywhere(toy):
    from tui.cli import app, complete_structure
    from tui.widgets.model import model_diagram

    assert "shared-diff" in STRUCTURES and STRUCTURES[-2:] == ("shared-diff", "shared-diff-slow")
    config = RunConfig(structure="shared-diff", arch="A1", kernel=3)
    assert config.id != RunConfig(structure="shared", arch="A1", kernel=3).id
    assert "shared-diff" in complete_structure("shared-d")
    output = CliRunner().invoke(app, ["queue", "--help"]).output
    help_text = " ".join(output.replace("│", " ").split())  # Rich wraps it in a box
    assert "shared-diff (shared tower, comparison from the features' difference)" in help_text
    assert "one run at a time" in help_text  # shared-diff-slow
    assert "features' difference" in model_diagram(config).plain


def test_the_toy_structure_trains_the_same_on_both_paths(toy):
    config = tiny(structure="shared-diff", hidden=8)
    assert vectorizable(config)
    torch.manual_seed(0)
    models = [build_model(config) for _ in range(3)]
    params, _ = stack_module_state(models)
    x = torch.randn(3, 5, 2, 14, 14)
    logits, digits = grouped.grouped_forward(models[0], params, x)
    assert digits is None
    for rep, model in enumerate(models):
        torch.testing.assert_close(logits[rep], model(x[rep])[0], rtol=1e-5, atol=1e-6)
    one = []
    tests = [run_training(config, rep, on_epoch=lambda m, _: one.append(m)) for rep in (0, 1)]
    both = {}
    group = run_group(config, [0, 1], on_epoch=lambda rep, m, _: both.setdefault(rep, []).append(m))
    for rep, test in zip((0, 1), tests):
        for a, b in zip(one[2 * rep : 2 * rep + 2], both[rep]):
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
            assert a.val_acc == pytest.approx(b.val_acc)
        assert test.test_acc == pytest.approx(group[rep].test_acc)


def test_a_structure_without_a_grouped_forward_trains_one_run_at_a_time(toy):
    config = tiny(structure="shared-diff-slow", epochs=1)
    assert not vectorizable(config)
    assert not_vectorizable_reason(config) == "structure shared-diff-slow has no grouped forward"
    events = []
    task = Task(config.to_dict(), (("a", 0, None), ("b", 1, None)), "cpu", None, vectorize=True)
    execute_task(task, events.append, lambda: False)
    assert [type(e) for e in events if not isinstance(e, Epoch)] == [Done, Done]
    with pytest.raises(TypeError, match="one run at a time"):
        grouped.grouped_forward(build_model(config), {}, torch.zeros(1, 1, 2, 14, 14))


def test_an_unregistered_structure_is_refused_with_the_choices():
    from core.config import ConfigError

    with pytest.raises(ConfigError, match="unknown structure 'shared-diff': choose one of independent"):
        RunConfig(structure="shared-diff")


@pytest.mark.slow
def test_the_registry_is_torch_free_and_its_import_paths_resolve():
    import subprocess
    import sys

    code = "import sys, core.structures, core.config; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
    for entry in structures.entries():
        assert callable(entry.grouped_forward()) and isinstance(entry.builder, str)
        assert isinstance(build_model(RunConfig(structure=entry.name, arch="A1", kernel=3)), nn.Module)
