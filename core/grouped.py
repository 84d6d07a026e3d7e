"""The forward pass of R models of one configuration at once, on their stacked parameters.

Convolutions of the R towers run as one grouped convolution (the repetitions side by side on the
channel axis, ``groups=R``) and linear layers as one batched matmul, following the modules of the
model module for module, so every repetition computes exactly what its own ``nn.Module`` computes.
This is what ``vmap(functional_call)`` lowers to, without its per-operator overhead, and with the
memory layouts chosen for small images on a CPU: pooling runs channels-last (PyTorch's NCHW
pooling kernel is ~10x slower on 14x14 maps), and so does a tower's first convolution (one input
channel per group: oneDNN runs it 2-2.7x faster channels-last); the deeper ones, on 7x7 and 3x3
maps, are as fast or faster in NCHW.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core import structures
from core.models import IMAGE_SIZE, NUM_CLASSES, ConvTower, comparison_logits

Params = dict[str, torch.Tensor]


def grouped_forward(model: nn.Module, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``model``'s forward for R stacked parameter sets: x (R, n, 2, 14, 14) -> comparison logits
    (R, n, 2) and digit logits (R, n, 2, 10) or None. ``params`` are keyed like
    ``model.named_parameters()`` with a leading R dimension (``torch.func.stack_module_state``).
    The forward is the one its structure's ``core.structures`` entry declares (``build_model``
    names the structure on the model); ``config.vectorizable`` keeps the others out."""
    entry = structures.get(getattr(model, "structure", None) or _structure_of(model))
    forward = entry.grouped_forward()
    if forward is None:
        raise TypeError(f"structure {entry.name} has no grouped forward: train it one run at a time")
    return forward(model, params, x)


def _structure_of(model: nn.Module) -> str:
    for entry in structures.entries():
        if (
            not isinstance(entry.builder, str)
            and type(model) is entry.builder
            or isinstance(entry.builder, str)
            and entry.builder.endswith(f":{type(model).__name__}")
        ):
            return entry.name
    raise TypeError(f"no structure builds {type(model).__name__}")


def _module(model: nn.Module, name: str) -> Any:
    """``model.<name>`` (a tower, a dense part), typed for what reads it."""
    return getattr(model, name)


def independent_forward(model: nn.Module, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, None]:
    first, second = _independent_towers(model, params, x)
    return _dense(_module(model, "classifier"), "classifier", params, torch.cat([first, second], dim=2)), None


def shared_tower(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """``model.tower`` on both images of x (R, n, 2, 14, 14): (R, 2n, features), image-major
    per pair like ``core.models._shared_features``."""
    r, n = x.shape[:2]
    return _tower(_module(model, "tower"), ("tower",), params, x.reshape(r, 2 * n, IMAGE_SIZE, IMAGE_SIZE))


def digit_logits(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """The shared tower then ``model.digit``: (R, n, 2, 10)."""
    r, n = x.shape[:2]
    return _dense(_module(model, "digit"), "digit", params, shared_tower(model, params, x)).reshape(
        r, n, 2, NUM_CLASSES
    )


def shared_forward(model: nn.Module, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, None]:
    r, n = x.shape[:2]
    return _dense(
        _module(model, "classifier"), "classifier", params, shared_tower(model, params, x).reshape(r, n, -1)
    ), None


def shared_aux_forward(model: nn.Module, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r, n = x.shape[:2]
    digits = digit_logits(model, params, x)
    return _linear("head", params, digits.reshape(r, n, 2 * NUM_CLASSES)), digits


def digits_forward(model: nn.Module, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r, n = x.shape[:2]
    digits = digit_logits(model, params, x)
    return comparison_logits(digits.reshape(r * n, 2, NUM_CLASSES)).reshape(r, n, 2), digits


def dense(module: nn.Module, prefix: str, params: Params, features: torch.Tensor) -> torch.Tensor:
    """``core.models.dense`` (its parameters under ``prefix``) on (R, m, in)."""
    return _dense(module, prefix, params, features)


def _independent_towers(model: nn.Module, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Features of the first and the second image, each through its own tower. A one-layer tower
    is dominated by per-call overhead, so both run as one grouped tower of 2R groups (their
    weights concatenated each step); deeper towers run apart, where that copy costs more."""
    r, n = x.shape[:2]
    tower1, tower2 = _module(model, "tower1"), _module(model, "tower2")
    if _conv_count(tower1) == 1:
        images = x.permute(2, 0, 1, 3, 4).reshape(2 * r, n, IMAGE_SIZE, IMAGE_SIZE)
        return _tower(tower1, ("tower1", "tower2"), params, images).split(r)
    return (_tower(tower1, ("tower1",), params, x[:, :, 0]), _tower(tower2, ("tower2",), params, x[:, :, 1]))


def _conv_count(tower: ConvTower) -> int:
    return sum(isinstance(layer, nn.Conv2d) for layer in tower.layers)


def _tower(tower: ConvTower, prefixes: tuple[str, ...], params: Params, images: torch.Tensor) -> torch.Tensor:
    """(G, m, 14, 14) images -> (G, m, features), flattened per image like ``nn.Flatten``.

    The towers named by ``prefixes`` (same layers, R stacked parameter sets each) run as one
    grouped tower: G = len(prefixes) x R groups, the first R for the first prefix."""
    groups, m = images.shape[:2]
    x = images.transpose(0, 1)  # (m, G, 14, 14): group g is input channel g
    single_conv = _conv_count(tower) == 1
    x = x.contiguous(memory_format=torch.channels_last)
    layers = list(tower.layers)
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            weight, bias = (_stacked(params, prefixes, f"layers.{index}.{kind}") for kind in ("weight", "bias"))
            x = _conv(x, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1), layer, groups)
        elif isinstance(layer, nn.ReLU):
            if not _relu_before_max_pool(layers, index):
                x = F.relu(x)
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            pool = F.max_pool2d if isinstance(layer, nn.MaxPool2d) else F.avg_pool2d
            x = pool(x.contiguous(memory_format=torch.channels_last), layer.kernel_size)
            if _relu_before_max_pool(layers, index - 1):
                x = F.relu(x)
            if not single_conv:
                x = x.contiguous()
        elif not isinstance(layer, nn.Flatten):
            raise TypeError(f"no grouped form of {type(layer).__name__}")
    return x.contiguous().reshape(m, groups, -1).transpose(0, 1)


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, layer: nn.Conv2d, groups: int) -> torch.Tensor:
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and layer.kernel_size[0] > x.shape[-1]:
        # A kernel wider than its map (5x5 on the 3x3 maps of A5/A6): oneDNN's bf16 (AMX) kernels
        # run it ~1.5x slower than fp32 (bench: 14.5 vs 9.4 ms fwd+bwd for A6's last layer).
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.float(), weight, bias, padding=layer.padding, groups=groups)
    return F.conv2d(x, weight, bias, padding=layer.padding, groups=groups)


def _stacked(params: Params, prefixes: tuple[str, ...], name: str) -> torch.Tensor:
    if len(prefixes) == 1:
        return params[f"{prefixes[0]}.{name}"]
    return torch.cat([params[f"{prefix}.{name}"] for prefix in prefixes])


def _relu_before_max_pool(layers: list[nn.Module], index: int) -> bool:
    """Whether ``layers[index]`` is a ReLU followed by a max-pool: the grouped tower then pools
    first. MaxPool -> ReLU equals ReLU -> MaxPool, values and gradients alike (ReLU is monotone and
    its gradient at the pooled element is the same), with the ReLU on a quarter of the elements."""
    return (
        0 <= index < len(layers) - 1
        and isinstance(layers[index], nn.ReLU)
        and isinstance(layers[index + 1], nn.MaxPool2d)
    )


def _dense(module: nn.Module, prefix: str, params: Params, features: torch.Tensor) -> torch.Tensor:
    """``core.models.dense`` (a Linear, or Linear -> ReLU -> Linear) on (R, m, in)."""
    if isinstance(module, nn.Linear):
        return _linear(prefix, params, features)
    layers: list[nn.Module] = list(module.children())
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            features = _linear(f"{prefix}.{index}", params, features)
        elif isinstance(layer, nn.ReLU):
            features = F.relu(features)
        else:
            raise TypeError(f"no grouped form of {type(layer).__name__}")
    return features


def _linear(prefix: str, params: Params, features: torch.Tensor) -> torch.Tensor:
    return torch.baddbmm(params[f"{prefix}.bias"].unsqueeze(1), features, params[f"{prefix}.weight"].transpose(1, 2))


# -- the fused form (``core.fused``): a structure's towers and its head, apart ------------------


@dataclass(frozen=True)
class Parts:
    """A grouped forward cut in two, so that the towers of several configurations can run as one
    grouped tower (``core.fused``) and each configuration's head on its own features.

    ``towers`` are the prefixes of the tower parameters; with ``images_per_pair`` 1 tower i sees
    image i of every pair (n images per group), with 2 the one tower sees both (2n images per
    group, image-major per pair like ``shared_tower``). ``head(model, params, features)`` takes
    one (R, m, features) tensor per tower and returns what the grouped forward returns."""

    towers: tuple[str, ...]
    images_per_pair: int
    head: Callable[[nn.Module, Params, list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor | None]]

    def images(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each tower's images of x (R, n, 2, 14, 14): (R, m, 14, 14) each."""
        r, n = x.shape[:2]
        if self.images_per_pair == 2:
            return [x.reshape(r, 2 * n, IMAGE_SIZE, IMAGE_SIZE)]
        return [x[:, :, index] for index in range(len(self.towers))]


def _independent_head(model: nn.Module, params: Params, features: list[torch.Tensor]):
    return _dense(_module(model, "classifier"), "classifier", params, torch.cat(features, dim=2)), None


def _shared_head(model: nn.Module, params: Params, features: list[torch.Tensor]):
    r, _, width = features[0].shape
    pairs = features[0].reshape(r, -1, 2 * width)  # both images' features side by side
    return _dense(_module(model, "classifier"), "classifier", params, pairs), None


def _digit_head(model: nn.Module, params: Params, features: list[torch.Tensor]) -> torch.Tensor:
    r, m = features[0].shape[:2]
    return _dense(_module(model, "digit"), "digit", params, features[0]).reshape(r, m // 2, 2, NUM_CLASSES)


def _shared_aux_head(model: nn.Module, params: Params, features: list[torch.Tensor]):
    digits = _digit_head(model, params, features)
    r, n = digits.shape[:2]
    return _linear("head", params, digits.reshape(r, n, 2 * NUM_CLASSES)), digits


def _digits_head(model: nn.Module, params: Params, features: list[torch.Tensor]):
    digits = _digit_head(model, params, features)
    r, n = digits.shape[:2]
    return comparison_logits(digits.reshape(r * n, 2, NUM_CLASSES)).reshape(r, n, 2), digits


_PARTS: dict[Callable[..., Any], Parts] = {
    independent_forward: Parts(("tower1", "tower2"), 1, _independent_head),
    shared_forward: Parts(("tower",), 2, _shared_head),
    shared_aux_forward: Parts(("tower",), 2, _shared_aux_head),
    digits_forward: Parts(("tower",), 2, _digits_head),
}


def fused_parts(structure: str) -> Parts | None:
    """The fused form of a structure's grouped forward, or None (a structure registered with a
    grouped forward of its own then trains vectorised, unfused)."""
    forward = structures.get(structure).grouped_forward()
    return _PARTS.get(forward) if forward is not None else None


def tower_call(tower: ConvTower, weights: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """``tower`` for G parameter sets given as one (G, ...) tensor per tower parameter (keyed like
    ``tower.named_parameters()``): (G, m, 14, 14) -> (G, m, features)."""
    return _tower(tower, ("fused",), {f"fused.{name}": value for name, value in weights.items()}, images)
