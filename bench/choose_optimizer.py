"""Compare optimizer / batch-size candidates against Tables II-III (docs/reproduction/choices.md).

Usage: python bench/choose_optimizer.py sgd 4 [--reps 3]
Prints, per setup, the final-epoch train loss, validation loss, validation accuracy and seconds per
run, averaged over the repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.config import RunConfig
from core.train import run_training

SETUPS = [("shared", "A5"), ("independent", "A1")]


def measure(optimizer: str, batch_size: int, reps: int) -> None:
    torch.set_num_threads(1)
    for structure, arch in SETUPS:
        results = []
        for rep in range(reps):
            config = RunConfig(structure=structure, arch=arch, kernel=5, optimizer=optimizer, batch_size=batch_size)
            epochs: list = []
            started = time.perf_counter()
            run_training(config, rep, on_epoch=lambda metrics, _state, out=epochs: out.append(metrics))
            last = epochs[-1]
            results.append((last.train_loss, last.val_loss, last.val_acc, time.perf_counter() - started))
        means = [statistics.mean(r[i] for r in results) for i in range(4)]
        print(optimizer, batch_size, structure, arch, " ".join(f"{m:.4f}" for m in means), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("optimizer", choices=["sgd", "adam"])
    parser.add_argument("batch_size", type=int)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    measure(args.optimizer, args.batch_size, args.reps)


if __name__ == "__main__":
    main()
