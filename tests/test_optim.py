"""core.optim.SGD against torch.optim.SGD: the same numbers, the same state, and no torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from core.config import RunConfig
from core.models import build_model
from core.optim import SGD, SGD_DEFAULTS
from core.train import checkpoint_problem, make_optimizer, save_checkpoint

SETTINGS = [
    {"lr": 0.01},
    {"lr": 0.001, "momentum": 0.9},
    {"lr": 0.002, "momentum": 0.5, "weight_decay": 1e-3},
]


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(RunConfig(structure="shared-aux", arch="A2", kernel=3))


def _steps(model: torch.nn.Module, optimizer, steps: int, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 2, 14, 14, generator=generator)
        logits, digits = model(x)
        optimizer.zero_grad(set_to_none=True)
        loss = logits.square().mean()
        (loss if digits is None else loss + digits.square().mean()).backward()
        optimizer.step()


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    assert all(p.isfinite().all() for p in a.parameters()), "the steps diverged: a smaller lr"
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_the_param_group_holds_what_torch_sgd_holds():
    model = _model()
    for settings in SETTINGS:
        ours, theirs = SGD(model.parameters(), **settings), torch.optim.SGD(model.parameters(), **settings)
        assert {k: v for k, v in ours.param_groups[0].items() if k != "params"} == theirs.defaults
    assert set(SGD_DEFAULTS) == set(torch.optim.SGD([torch.zeros(1, requires_grad=True)]).defaults)


@pytest.mark.parametrize("settings", SETTINGS)
def test_steps_equal_torch_sgd_to_the_bit(settings):
    ours, theirs = _model(), _model()
    _steps(ours, SGD(ours.parameters(), **settings), 6)
    _steps(theirs, torch.optim.SGD(theirs.parameters(), **settings), 6)
    assert _same_parameters(ours, theirs)


@pytest.mark.parametrize("settings", SETTINGS)
def test_state_dicts_move_between_the_two_both_ways(settings):
    ours_model, theirs_model = _model(), _model()
    ours, theirs = SGD(ours_model.parameters(), **settings), torch.optim.SGD(theirs_model.parameters(), **settings)
    _steps(ours_model, ours, 3)
    _steps(theirs_model, theirs, 3)
    mine, torchs = copy.deepcopy(ours.state_dict()), copy.deepcopy(theirs.state_dict())  # torch's share the buffers
    assert mine["param_groups"] == torchs["param_groups"]
    assert mine["state"].keys() == torchs["state"].keys()
    for key, values in torchs["state"].items():
        assert values.keys() == mine["state"][key].keys()
        assert all(torch.equal(values[name], mine["state"][key][name]) for name in values)

    # swap the optimisers' states: each resumes from the other's, the steps stay equal
    ours_next, theirs_next = _model(), _model()
    ours_next.load_state_dict(theirs_model.state_dict())
    theirs_next.load_state_dict(ours_model.state_dict())
    resumed_ours = SGD(ours_next.parameters(), **settings)
    resumed_ours.load_state_dict(torchs)
    resumed_theirs = torch.optim.SGD(theirs_next.parameters(), **settings)
    resumed_theirs.load_state_dict(mine)
    _steps(ours_next, resumed_ours, 3, seed=2)
    _steps(theirs_next, resumed_theirs, 3, seed=2)
    _steps(ours_model, ours, 3, seed=2)
    assert _same_parameters(ours_next, theirs_next)
    assert _same_parameters(ours_next, ours_model)


def test_a_state_dict_of_another_model_is_refused_with_a_line():
    small = SGD(_model().parameters(), lr=0.01)
    other = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.01)
    with pytest.raises(ValueError, match="doesn't match the size"):
        small.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="number of parameter groups"):
        small.load_state_dict({"state": {}, "param_groups": []})


def test_zero_grad_clears_or_zeroes():
    model = _model()
    optimizer = SGD(model.parameters(), lr=0.01)
    _steps(model, optimizer, 1)
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_a_checkpoint_of_torch_sgd_resumes_an_sgd_run():
    config = RunConfig(structure="shared", arch="A1", kernel=5, momentum=0.9)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    _steps(model, optimizer, 2)
    state = save_checkpoint(model, optimizer, 2)
    assert checkpoint_problem(config, state) is None
    assert isinstance(make_optimizer(config, model), SGD)


@pytest.mark.slow
def test_training_sgd_runs_never_imports_torch_dynamo(tmp_path):
    """What a worker does for SGD runs (one at a time, vectorised, fused) leaves torch._dynamo
    unimported: it is what made every worker's start-up 1.2-1.7 s longer."""
    script = """
import sys
from core.config import RunConfig
from core.fused import run_fused
from core.train import run_training
from core.vectorized import run_group
small = dict(arch="A1", kernel=5, epochs=2, train_pairs=100, val_pairs=10, test_pairs=100)
shared = RunConfig(structure="shared", momentum=0.9, **small)
run_training(shared, 0)
run_group(shared, [0, 1])
run_fused([(shared, [0], [None]), (RunConfig(structure="shared-aux", **small), [0], [None])])
print("torch._dynamo" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
