"""The plain PyTorch loop a user would write instead of pairs, as the PyTorch MNIST example does.

    python bench/plain_loop.py --configs shared:A1:5 --reps 10 --epochs 10

One run at a time, all cores, the same models (``core.models``, plain ``nn.Module``s) and the same
protocol (SGD, batch size 4, lr 0.01 then 0.001 after 15 epochs, eq. 2 for the digit structures),
a ``DataLoader`` over a ``TensorDataset``, ``StepLR``, and a validation pass after every epoch and
a test pass at the end, each summing the loss over batches. No tricks: no vectorisation, no
channels-last, no worker processes. ``bench/grid.py --plain`` times it beside the engine in one run.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from core.config import RunConfig, run_seed
from core.data import draw_run_pairs
from core.models import build_model


def loss_of(output, digits, target, classes, aux_weight: float):
    loss = F.cross_entropy(output, target)
    if digits is not None:
        loss = loss + aux_weight * (
            F.cross_entropy(digits[:, 0], classes[:, 0]) + F.cross_entropy(digits[:, 1], classes[:, 1])
        )
    return loss


def train(model, loader, optimizer, aux_weight: float) -> None:
    model.train()
    for x, target, classes in loader:
        optimizer.zero_grad()
        output, digits = model(x)
        loss = loss_of(output, digits, target, classes, aux_weight)
        loss.backward()
        optimizer.step()


def test(model, loader, aux_weight: float) -> tuple[float, float]:
    model.eval()
    total = correct = 0.0
    with torch.no_grad():
        for x, target, classes in loader:
            output, digits = model(x)
            total += loss_of(output, digits, target, classes, aux_weight).item() * len(x)
            correct += (output.argmax(1) == target).sum().item()
    n = len(loader.dataset)
    return total / n, correct / n


def plain_run(config: RunConfig, rep: int) -> float:
    """Train one run of ``config`` the plain way; returns its test accuracy."""
    data = draw_run_pairs(config, rep)
    torch.manual_seed(run_seed(config, rep))
    model = build_model(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    train_loader = DataLoader(
        TensorDataset(data.train.x, data.train.target, data.train.classes), batch_size=config.batch_size, shuffle=True
    )
    val_loader = DataLoader(TensorDataset(data.val.x, data.val.target, data.val.classes), batch_size=1000)
    test_loader = DataLoader(TensorDataset(data.test.x, data.test.target, data.test.classes), batch_size=1000)
    for _ in range(config.epochs):
        train(model, train_loader, optimizer, config.aux_weight)
        test(model, val_loader, config.aux_weight)
        scheduler.step()
    return test(model, test_loader, config.aux_weight)[1]


def plain_loop(configs: list[RunConfig], reps: int) -> float:
    """Seconds to train ``reps`` runs of every configuration one after another."""
    started = time.perf_counter()
    for config in configs:
        for rep in range(reps):
            plain_run(config, rep)
    return time.perf_counter() - started


def parse_configs(text: str, base: RunConfig) -> list[RunConfig]:
    """``structure:arch:kernel,...`` over ``base``."""
    configs = []
    for item in text.split(","):
        structure, arch, kernel = item.split(":")
        configs.append(base.replace(structure=structure, arch=arch, kernel=int(kernel)))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="shared:A1:5")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    configs = parse_configs(args.configs, RunConfig(epochs=args.epochs))
    seconds = plain_loop(configs, args.reps)
    print(
        f"plain loop: {len(configs)} setup(s) x {args.reps} reps x {args.epochs} epochs: {seconds:.1f} s "
        f"({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
