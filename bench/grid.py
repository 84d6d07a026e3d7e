"""Time the one-at-a-time reference path against the engine, and both against the FLOP floor.

    python bench/grid.py                                  # 3 setups, 10 reps, 3 epochs
    python bench/grid.py --configs shared:A1:5,shared-aux:A6:5 --reps 10 --epochs 30
    python bench/grid.py --precision bf16                 # the engine in bf16 autocast
    python bench/grid.py --configs shared:A1:5 --reps 10 --epochs 10 --plain --skip-reference

Reference: each run trained alone (``core.train.run_training``) in this process with torch's
default threads. Engine: ``pairs work`` on a temporary database (``core.scheduler.work``: worker
processes sized to the cores, repetitions vectorised). The FLOP count is torch's FlopCounterMode
over one training step and one evaluation pass of every setup, scaled to the protocol; the floor
is FLOPs / the measured fp32 matmul peak of this machine. ``--plain`` also times the plain PyTorch
loop a user would write instead (``bench/plain_loop.py``) on the same setups and prints the ratio.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from core.api import open_store, queue, work
from core.config import RunConfig, parse_grid
from core.data import draw_run_pairs
from core.models import build_model
from core.train import run_training
from core.training_common import objective

try:
    from bench.plain_loop import parse_configs, plain_loop
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path
    from plain_loop import parse_configs, plain_loop

DEFAULT_CONFIGS = "independent:A1:5,shared:A5:5,shared-aux:A6:5"


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matmul throughput of this machine in FLOP/s (all threads): the fastest of
    ``repeats`` products, so a moment of contention on a shared machine does not lower the floor."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    fastest = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        fastest = min(fastest, time.perf_counter() - started)
    return 2 * size**3 / fastest


def run_flops(config: RunConfig) -> float:
    """FLOPs of one run of ``config``: every training step, every validation pass, the test pass."""
    model = build_model(config)
    train = config.train_pairs - config.val_pairs
    x = torch.randn(config.batch_size, 2, 14, 14)
    target = torch.zeros(config.batch_size, dtype=torch.long)
    classes = torch.zeros(config.batch_size, 2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        logits, digits = model(x)
        loss, _ = objective(logits, digits, target, classes, config.aux_weight)
        loss.backward()
    step = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 2, 14, 14))
    per_sample_eval = counter.get_total_flops()
    steps = -(-train // config.batch_size)
    return config.epochs * (steps * step + config.val_pairs * per_sample_eval) + config.test_pairs * per_sample_eval


def reference(configs: list[RunConfig], reps: int) -> float:
    started = time.perf_counter()
    for config in configs:
        for rep in range(reps):
            run_training(config, rep)
    return time.perf_counter() - started


def timed_work(store, configs: list[RunConfig], reps: int, workers: int | None) -> float:
    """Queue ``reps`` runs of each configuration in ``store`` and time ``pairs work`` over them."""
    queue(store, configs, reps)
    started = time.perf_counter()
    summary = work(store, workers=workers)
    elapsed = time.perf_counter() - started
    assert summary.done == len(configs) * reps, summary
    return elapsed


def engine(configs: list[RunConfig], reps: int, workers: int | None) -> float:
    with tempfile.TemporaryDirectory() as folder, open_store(Path(folder) / "bench.db") as store:
        return timed_work(store, configs, reps, workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help="comma-separated structure:arch:kernel, or 'paper' for all 36"
    )
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="also time the plain PyTorch loop (bench/plain_loop.py) and print the ratio",
    )
    args = parser.parse_args()

    base = RunConfig(epochs=args.epochs, precision=args.precision)
    if args.configs == "paper":
        configs = parse_grid(
            {"structure": "independent,shared,shared-aux", "arch": "A1,A2,A3,A4,A5,A6", "kernel": "3,5"}, base
        )
    else:
        configs = parse_configs(args.configs, base)
    for config in configs:  # warm the data cache so neither path pays for loading
        draw_run_pairs(config, 0)

    cores = os.cpu_count()
    peak = matmul_peak()
    flops = sum(run_flops(c) for c in configs) * args.reps
    floor = flops / peak
    print(f"machine: {cores} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    print(
        f"setups: {len(configs)} x {args.reps} reps x {args.epochs} epochs ({args.precision}); "
        f"FLOPs {flops / 1e12:.3f} TFLOP; floor {floor:.1f} s"
    )
    engine_s = engine(configs, args.reps, args.workers)
    print(f"engine (pairs work, vectorised): {engine_s:.1f} s = {engine_s / floor:.2f} x floor")
    if not args.skip_reference:
        reference_s = reference(configs, args.reps)
        print(f"reference (one run at a time): {reference_s:.1f} s = {reference_s / floor:.2f} x floor")
        print(f"speed-up engine vs reference: {reference_s / engine_s:.2f} x")
    if args.plain:
        plain_s = plain_loop(configs, args.reps)
        print(f"plain PyTorch loop (one run at a time, all cores): {plain_s:.1f} s = {plain_s / floor:.2f} x floor")
        print(f"speed-up engine vs plain loop: {plain_s / engine_s:.2f} x")


if __name__ == "__main__":
    main()
