"""The three structures of the paper (Figs 1-3) over the Table I convolutional towers, and
``digits`` (beyond the paper: the comparison decided from the two digit posteriors).

Every model maps x (n, 2, 14, 14) to (comparison logits (n, 2), digit logits): the digit logits
are (n, 2, 10) for ``shared-aux`` and ``digits``, and None otherwise.

The options beyond the paper (batch normalisation, dropout, average pooling, a hidden layer) are
keyword arguments; at their defaults every model is module for module the paper's, so its
initialisation and checkpoints are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from core import structures
from core.config import ARCHITECTURES, IMAGE_SIZE, KERNELS, STRUCTURES, RunConfig

NUM_CLASSES = 10


class ConvTower(nn.Module):
    """Conv(k, same padding) [-> BatchNorm] -> ReLU -> MaxPool(2) (or AvgPool) per Table I
    layer, then flatten."""

    def __init__(self, channels: tuple[int, ...], kernel: int, *, batch_norm: bool = False, pooling: str = "max"):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, size = 1, IMAGE_SIZE
        pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pooling]
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
                *([nn.BatchNorm2d(out_channels)] if batch_norm else []),
                nn.ReLU(),
                pool(2),
            ]
            in_channels, size = out_channels, size // 2
        layers.append(nn.Flatten())
        self.layers = nn.Sequential(*layers)
        self.out_features = in_channels * size * size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


def dense(
    in_features: int, out_features: int, *, hidden: int = 0, dropout: float = 0.0, batch_norm: bool = False
) -> nn.Module:
    """The fully-connected end of a structure: one linear layer (the paper's, a plain
    ``nn.Linear``), optionally after dropout and a hidden layer [-> BatchNorm] -> ReLU."""
    drop = [nn.Dropout(dropout)] if dropout else []
    if not hidden:
        return (
            nn.Sequential(*drop, nn.Linear(in_features, out_features)) if drop else nn.Linear(in_features, out_features)
        )
    return nn.Sequential(
        *drop,
        nn.Linear(in_features, hidden),
        *([nn.BatchNorm1d(hidden)] if batch_norm else []),
        nn.ReLU(),
        *drop,
        nn.Linear(hidden, out_features),
    )


class PairModel(nn.Module):
    """What every structure's module is built from: a Table I tower's (channels, kernel) and the
    options beyond the paper, with ``new_tower()`` and ``new_dense(inputs, outputs)`` making its
    parts (a subclass creates them in its ``__init__``, in the order they initialise)."""

    def __init__(
        self,
        channels: tuple[int, ...],
        kernel: int,
        *,
        batch_norm: bool = False,
        pooling: str = "max",
        hidden: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.channels, self.kernel = tuple(channels), kernel
        self.batch_norm, self.pooling, self.hidden, self.dropout = batch_norm, pooling, hidden, dropout

    def new_tower(self) -> ConvTower:
        return ConvTower(self.channels, self.kernel, batch_norm=self.batch_norm, pooling=self.pooling)

    def new_dense(self, in_features: int, out_features: int) -> nn.Module:
        return dense(in_features, out_features, hidden=self.hidden, dropout=self.dropout, batch_norm=self.batch_norm)


class Independent(PairModel):
    """Fig. 1: two distinct towers, flatten, concatenate, one linear layer."""

    def __init__(self, channels: tuple[int, ...], kernel: int, **options):
        super().__init__(channels, kernel, **options)
        self.tower1 = self.new_tower()
        self.tower2 = self.new_tower()
        self.classifier = self.new_dense(2 * self.tower1.out_features, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        first = self.tower1(x[:, 0:1])
        second = self.tower2(x[:, 1:2])
        return self.classifier(torch.cat([first, second], dim=1)), None


class Shared(PairModel):
    """Fig. 2: one tower applied to both digits (the very same parameters), one linear layer."""

    def __init__(self, channels: tuple[int, ...], kernel: int, **options):
        super().__init__(channels, kernel, **options)
        self.tower = self.new_tower()
        self.classifier = self.new_dense(2 * self.tower.out_features, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        features = _shared_features(self.tower, x)
        return self.classifier(features.flatten(1)), None


class SharedAux(PairModel):
    """Fig. 3: shared tower -> shared linear to 10 digit logits per image -> linear head on 20."""

    def __init__(self, channels: tuple[int, ...], kernel: int, **options):
        super().__init__(channels, kernel, **options)
        self.tower = self.new_tower()
        self.digit = self.new_dense(self.tower.out_features, NUM_CLASSES)
        self.head = nn.Linear(2 * NUM_CLASSES, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        digits = _per_image(self.digit, _shared_features(self.tower, x))  # (n, 2, 10)
        return self.head(digits.flatten(1)), digits


class Digits(PairModel):
    """Beyond the paper: the shared tower classifies each image into 10 digit logits, and the
    comparison is decided from the two digit posteriors, P(first > second) =
    sum_{i>j} p1(i) p2(j) (:func:`comparison_logits`). No parameter decides the comparison:
    the main loss (eq. 1 on that posterior) and the digit losses (eq. 2) both train the tower."""

    def __init__(self, channels: tuple[int, ...], kernel: int, **options):
        super().__init__(channels, kernel, **options)
        self.tower = self.new_tower()
        self.digit = self.new_dense(self.tower.out_features, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        features = self.tower(x.reshape(2 * n, 1, IMAGE_SIZE, IMAGE_SIZE))
        digits = self.digit(features).reshape(n, 2, NUM_CLASSES)
        return comparison_logits(digits), digits


def comparison_logits(digit_logits: torch.Tensor) -> torch.Tensor:
    """(n, 2) logits [log(1 - P), log P] with P = P(first > second) = sum_{i>j} p1(i) p2(j),
    the digits independent given the images; p = softmax of ``digit_logits`` (n, 2, 10).

    Computed in log space (logsumexp over the 45 pairs i > j and the 55 pairs i <= j), so
    softmax of the result is exactly (1 - P, P), cross-entropy on it is the negative log
    likelihood of the comparison, and its argmax decides P > 1/2.
    """
    log_p = digit_logits.float().log_softmax(-1)
    joint = log_p[:, 0, :, None] + log_p[:, 1, None, :]  # (n, 10, 10): log p1(i) + log p2(j)
    classes = torch.arange(NUM_CLASSES, device=digit_logits.device)
    greater = classes[:, None] > classes[None, :]
    log_greater = joint.masked_fill(~greater, float("-inf")).logsumexp((1, 2))
    log_not_greater = joint.masked_fill(greater, float("-inf")).logsumexp((1, 2))
    return torch.stack([log_not_greater, log_greater], dim=1)


def _per_image(module: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """A dense module on (n, 2, features) per image (batch norm needs the images as rows)."""
    if isinstance(module, nn.Linear):
        return module(features)
    n = features.shape[0]
    return module(features.reshape(2 * n, -1)).reshape(n, 2, -1)


def _shared_features(tower: ConvTower, x: torch.Tensor) -> torch.Tensor:
    """Run both images through one tower in a single batch: (n, 2, features)."""
    n = x.shape[0]
    return tower(x.reshape(2 * n, 1, IMAGE_SIZE, IMAGE_SIZE)).reshape(n, 2, -1)


#: Structures whose models also return digit logits (trained with the digit losses of eq. 2):
#: a live view of ``core.structures``' entries that declare them.
DIGIT_STRUCTURES = structures.Names(lambda s: s.digit_logits)


def model_options(config: RunConfig) -> dict:
    """The model keyword arguments of a configuration (the options beyond the paper)."""
    return {
        "batch_norm": config.batch_norm,
        "pooling": config.pooling,
        "hidden": config.hidden,
        "dropout": config.dropout,
    }


def build_model(config: RunConfig) -> nn.Module:
    """The model of a configuration (its ``core.structures`` entry's builder), freshly
    initialised from torch's current RNG."""
    entry = structures.get(config.structure)
    model = entry.build(config.channels, config.kernel, **model_options(config))
    model.structure = entry.name  # a plain attribute: what core.grouped dispatches on
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_catalog() -> list[dict]:
    """Every structure x architecture x kernel with its parameter count."""
    rows = []
    for structure in STRUCTURES:
        for arch, channels in ARCHITECTURES.items():
            for kernel in KERNELS:
                model = structures.get(structure).build(channels, kernel)
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
