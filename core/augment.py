"""Training-time augmentation beyond the paper, drawn anew for every run and epoch.

``augment_split(split, config, generator)`` returns the epoch's training pairs:

- ``repair``: the 2n training digits are shuffled and paired anew (same digits, new pairs);
- ``swap``: the two images of each pair are swapped with probability 1/2;
- ``shift`` / ``rotate``: each image is moved by up to ``shift`` whole pixels in x and y and
  rotated by up to ``rotate`` degrees (one affine resampling, the background kept).

Labels are always recomputed from the classes (target = first > second), so a swapped pair of
different digits has its label flipped and a pair of equal digits keeps label 0 both ways. The
random draws come from ``generator`` only (on the CPU), so both training paths (one at a time and
vectorised) see the very same pairs, and a resumed run the same as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from core.config import RunConfig
from core.data import PairSplit


def augment_generator(run_seed: int, epoch: int) -> torch.Generator:
    """The generator of a run's augmentation in 1-based ``epoch`` (independent of shuffling)."""
    digest = hashlib.sha256(f"augment:{run_seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:7], "big"))


def targets(classes: torch.Tensor) -> torch.Tensor:
    """1 where the first digit is greater than the second, else 0 (equal digits: 0)."""
    return (classes[:, 0] > classes[:, 1]).long()


def repair(x: torch.Tensor, classes: torch.Tensor, generator: torch.Generator):
    """The same 2n digits in new pairs: a random permutation of all images with their classes."""
    n = x.shape[0]
    order = torch.randperm(2 * n, generator=generator).to(x.device)
    images = x.reshape(2 * n, *x.shape[2:])[order].reshape(x.shape)
    return images, classes.reshape(2 * n)[order].reshape(n, 2)


def swap(x: torch.Tensor, classes: torch.Tensor, generator: torch.Generator, probability: float = 0.5):
    """Swap the two images (and classes) of each pair with ``probability``."""
    chosen = (torch.rand(x.shape[0], generator=generator) < probability).to(x.device)
    images = torch.where(chosen[:, None, None, None], x.flip(1), x)
    return images, torch.where(chosen[:, None], classes.flip(1), classes)


def transform(
    images: torch.Tensor, shift: int, rotate: float, generator: torch.Generator, background: float
) -> torch.Tensor:
    """Each image of (m, H, W) shifted by whole pixels in [-shift, shift] and rotated by an angle
    in [-rotate, rotate] degrees about its centre; uncovered pixels take ``background``."""
    m, height, width = images.shape
    dx = torch.randint(-shift, shift + 1, (m,), generator=generator).float()
    dy = torch.randint(-shift, shift + 1, (m,), generator=generator).float()
    angle = (torch.rand(m, generator=generator) * 2 - 1) * math.radians(rotate)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates to input ones, in units of half the image size:
    # a whole-pixel shift lands exactly on pixel centres (align_corners=False).
    theta = torch.stack(
        [
            torch.stack([cos, -sin, -2 * dx / width], dim=1),
            torch.stack([sin, cos, -2 * dy / height], dim=1),
        ],
        dim=1,
    ).to(images.device, images.dtype)
    grid = F.affine_grid(theta, [m, 1, height, width], align_corners=False)
    moved = F.grid_sample(
        (images - background)[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return moved[:, 0] + background


def augment_split(split: PairSplit, config: RunConfig, generator: torch.Generator) -> PairSplit:
    """The training pairs of one epoch under ``config``'s augmentations (``split`` unchanged)."""
    if not config.augments:
        return split
    x, classes = split.x, split.classes
    if config.repair:
        x, classes = repair(x, classes, generator)
    if config.swap:
        x, classes = swap(x, classes, generator)
    if config.shift or config.rotate:
        background = float(split.x.min())  # pixel value 0 after normalisation
        n = x.shape[0]
        flat = x.reshape(2 * n, *x.shape[2:])
        x = transform(flat, config.shift, config.rotate, generator, background).reshape(x.shape)
    return PairSplit(x.contiguous(), targets(classes), classes.contiguous())
