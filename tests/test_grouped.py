"""The grouped forward of R stacked models computes what each model computes on its own."""

import pytest
import torch
from torch.func import stack_module_state

from core.config import RunConfig
from core.grouped import grouped_forward
from core.models import build_model


@pytest.mark.parametrize("structure", ["independent", "shared", "shared-aux", "digits"])
@pytest.mark.parametrize(
    "arch, pooling, hidden", [("A1", "max", 0), ("A3", "max", 0), ("A2", "avg", 8), ("A5", "avg", 0)]
)
def test_grouped_forward_matches_each_model(structure, arch, pooling, hidden):
    config = RunConfig(structure=structure, arch=arch, kernel=3, pooling=pooling, hidden=hidden)
    torch.manual_seed(0)
    models = [build_model(config) for _ in range(3)]
    params, _ = stack_module_state(models)
    x = torch.randn(3, 5, 2, 14, 14)
    logits, digits = grouped_forward(models[0], params, x)
    assert logits.shape == (3, 5, 2)
    for rep, model in enumerate(models):
        own_logits, own_digits = model(x[rep])
        torch.testing.assert_close(logits[rep], own_logits, rtol=1e-5, atol=1e-6)
        if own_digits is None:
            assert digits is None
        else:
            torch.testing.assert_close(digits[rep], own_digits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "structure, arch, pooling",
    [
        ("shared", "A1", "max"),
        ("shared", "A3", "max"),
        ("shared", "A3", "avg"),
        ("independent", "A1", "max"),
        ("independent", "A3", "max"),
    ],
)
def test_grouped_forward_gives_each_repetition_its_own_gradient(structure, arch, pooling):
    """Also the gradients of the pooled-then-ReLU order that the grouped tower runs, and of the
    two towers of ``independent`` run as one grouped tower (A1) or apart (A3)."""
    config = RunConfig(structure=structure, arch=arch, kernel=5, pooling=pooling)
    torch.manual_seed(1)
    models = [build_model(config) for _ in range(2)]
    params, _ = stack_module_state(models)
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    x = torch.randn(2, 4, 2, 14, 14)
    grouped_forward(models[0], params, x)[0][1].sum().backward()
    models[1](x[1])[0].sum().backward()
    for name, own in models[1].named_parameters():
        torch.testing.assert_close(params[name].grad[1], own.grad, rtol=1e-5, atol=1e-6)
        assert not params[name].grad[0].any()


class _ConvDtypes(torch.overrides.TorchFunctionMode):
    """Records the dtype each conv2d computes in (its input's under autocast's casting)."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func is torch.nn.functional.conv2d:
            self.dtypes.append(result.dtype)
        return result


@pytest.mark.parametrize(
    "kernel, expected", [(5, [torch.bfloat16, torch.bfloat16, torch.float32]), (3, [torch.bfloat16] * 3)]
)
def test_bf16_runs_a_kernel_wider_than_its_map_in_fp32(kernel, expected):
    """A5's last convolution sees 3x3 maps: with a 5x5 kernel it runs in fp32 under bf16 autocast
    (oneDNN's bf16 kernels are slower there), and the forward stays close to fp32's."""
    config = RunConfig(structure="shared-aux", arch="A5", kernel=kernel)
    torch.manual_seed(2)
    models = [build_model(config) for _ in range(2)]
    params, _ = stack_module_state(models)
    x = torch.randn(2, 4, 2, 14, 14)
    full, _ = grouped_forward(models[0], params, x)
    with torch.autocast("cpu", dtype=torch.bfloat16), _ConvDtypes() as seen:
        half, _ = grouped_forward(models[0], params, x)
    assert seen.dtypes == expected
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)
