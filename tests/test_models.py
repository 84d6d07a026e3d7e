import pytest
import torch

from core.config import ARCHITECTURES, KERNELS, STRUCTURES, RunConfig
from core.models import build_model, model_catalog, parameter_count

SETUPS = [(s, a, k) for s in STRUCTURES for a in ARCHITECTURES for k in KERNELS]


@pytest.mark.parametrize(("structure", "arch", "kernel"), SETUPS)
def test_output_shapes_of_all_setups(structure, arch, kernel):
    model = build_model(RunConfig(structure=structure, arch=arch, kernel=kernel))
    logits, digits = model(torch.randn(5, 2, 14, 14))
    assert logits.shape == (5, 2)
    if structure in ("shared-aux", "digits"):
        assert digits.shape == (5, 2, 10)
    else:
        assert digits is None


def test_shared_uses_the_very_same_parameters_for_both_digits():
    model = build_model(RunConfig(structure="shared", arch="A3"))
    x = torch.randn(4, 2, 14, 14)
    swapped = x.flip(1)
    features = model.tower(x.reshape(8, 1, 14, 14)).reshape(4, 2, -1)
    features_swapped = model.tower(swapped.reshape(8, 1, 14, 14)).reshape(4, 2, -1)
    assert torch.allclose(features[:, 0], features_swapped[:, 1])
    assert not hasattr(model, "tower2")


def test_independent_has_two_distinct_towers():
    model = build_model(RunConfig(structure="independent", arch="A3"))
    first = {id(p) for p in model.tower1.parameters()}
    second = {id(p) for p in model.tower2.parameters()}
    assert not first & second


def test_parameter_counts():
    # A1, kernel 3: conv 1->16 (16*9 + 16) and a 14x14 -> 7x7 pooled 16-channel map.
    conv = 16 * 9 + 16
    features = 16 * 7 * 7
    shared = build_model(RunConfig(structure="shared", arch="A1", kernel=3))
    assert parameter_count(shared) == conv + (2 * features * 2 + 2)
    independent = build_model(RunConfig(structure="independent", arch="A1", kernel=3))
    assert parameter_count(independent) == 2 * conv + (2 * features * 2 + 2)
    aux = build_model(RunConfig(structure="shared-aux", arch="A1", kernel=3))
    assert parameter_count(aux) == conv + (features * 10 + 10) + (20 * 2 + 2)
    assert len(model_catalog()) == 48  # the paper's 36 and digits'
    digits = build_model(RunConfig(structure="digits", arch="A1", kernel=3))
    assert parameter_count(digits) == conv + (features * 10 + 10)
