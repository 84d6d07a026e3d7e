"""The three structures of the paper (Figs 1-3) over the Table I convolutional towers.

Every model maps x (n, 2, 14, 14) to (comparison logits (n, 2), digit logits): the digit logits
are (n, 2, 10) for ``shared-aux`` and None otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

from core.config import ARCHITECTURES, KERNELS, STRUCTURES, RunConfig

IMAGE_SIZE = 14
NUM_CLASSES = 10


class ConvTower(nn.Module):
    """Conv(k, same padding) -> ReLU -> MaxPool(2) per Table I layer, then flatten."""

    def __init__(self, channels: tuple[int, ...], kernel: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, size = 1, IMAGE_SIZE
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels, size = out_channels, size // 2
        layers.append(nn.Flatten())
        self.layers = nn.Sequential(*layers)
        self.out_features = in_channels * size * size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class Independent(nn.Module):
    """Fig. 1: two distinct towers, flatten, concatenate, one linear layer."""

    def __init__(self, channels: tuple[int, ...], kernel: int):
        super().__init__()
        self.tower1 = ConvTower(channels, kernel)
        self.tower2 = ConvTower(channels, kernel)
        self.classifier = nn.Linear(2 * self.tower1.out_features, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        first = self.tower1(x[:, 0:1])
        second = self.tower2(x[:, 1:2])
        return self.classifier(torch.cat([first, second], dim=1)), None


class Shared(nn.Module):
    """Fig. 2: one tower applied to both digits (the very same parameters), one linear layer."""

    def __init__(self, channels: tuple[int, ...], kernel: int):
        super().__init__()
        self.tower = ConvTower(channels, kernel)
        self.classifier = nn.Linear(2 * self.tower.out_features, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        features = _shared_features(self.tower, x)
        return self.classifier(features.flatten(1)), None


class SharedAux(nn.Module):
    """Fig. 3: shared tower -> shared linear to 10 digit logits per image -> linear head on 20."""

    def __init__(self, channels: tuple[int, ...], kernel: int):
        super().__init__()
        self.tower = ConvTower(channels, kernel)
        self.digit = nn.Linear(self.tower.out_features, NUM_CLASSES)
        self.head = nn.Linear(2 * NUM_CLASSES, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        digits = self.digit(_shared_features(self.tower, x))  # (n, 2, 10)
        return self.head(digits.flatten(1)), digits


def _shared_features(tower: ConvTower, x: torch.Tensor) -> torch.Tensor:
    """Run both images through one tower in a single batch: (n, 2, features)."""
    n = x.shape[0]
    return tower(x.reshape(2 * n, 1, IMAGE_SIZE, IMAGE_SIZE)).reshape(n, 2, -1)


MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "independent": Independent,
    "shared": Shared,
    "shared-aux": SharedAux,
}


def build_model(config: RunConfig) -> nn.Module:
    """The model of a configuration, freshly initialised from torch's current RNG."""
    return MODEL_CLASSES[config.structure](config.channels, config.kernel)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_catalog() -> list[dict]:
    """Every structure x architecture x kernel with its parameter count."""
    rows = []
    for structure in STRUCTURES:
        for arch, channels in ARCHITECTURES.items():
            for kernel in KERNELS:
                model = MODEL_CLASSES[structure](channels, kernel)
                rows.append(
                    {
                        "structure": structure,
                        "arch": arch,
                        "kernel": kernel,
                        "channels": "-".join(map(str, channels)),
                        "parameters": parameter_count(model),
                    }
                )
    return rows
