"""Time cross-configuration fusion against one configuration at a time, side by side in one run.

    python bench/fusion.py                                # A1 k5 and A5 k5, 10 reps, 3 epochs
    python bench/fusion.py --setups A3:5 --reps 10 --epochs 10
    python bench/fusion.py --paper --epochs 1             # the whole paper grid, both ways
    python bench/fusion.py --in-process --setups A4:5,A6:5 --epochs 1   # the engine alone

For each architecture:kernel, the paper's three structures (``--structures``) x ``--reps``
repetitions x ``--epochs`` epochs are timed twice each way:

- *in process* (one torch thread, no scheduler): ``core.fused.run_fused`` over the three
  configurations against ``core.vectorized.run_group`` for each in turn, so the figure is the
  engine's alone;
- *pairs work* (``core.scheduler.work`` on a temporary database, worker processes sized to the
  cores): ``fuse=True`` against ``fuse=False`` (``fuse=True`` fuses only the towers
  ``core.families.FUSE_MAX_WEIGHTS`` admits, unless ``PAIRS_FUSE=all`` is set), which also
  counts how the claims spread over the processes (a family of three splits its repetitions
  over two processes; three configurations on two processes leave one idle for the last).

``--paper`` times the whole paper grid (36 setups) through ``pairs work`` only, both ways, with
its FLOP floor (``bench/grid.py``'s count and matmul peak).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from core.api import open_store, queue, work
from core.config import RunConfig, parse_grid
from core.data import draw_run_pairs
from core.families import FUSE_ENV, family_key
from core.fused import run_fused
from core.vectorized import run_group

try:
    from bench.grid import matmul_peak, run_flops
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path
    from grid import matmul_peak, run_flops

PAPER = ("independent", "shared", "shared-aux")


def in_process(configs: list[RunConfig], reps: int) -> tuple[float, float]:
    """(unfused s, fused s) in this process, one torch thread; fused whatever the tower's size
    (``PAIRS_FUSE=all`` meanwhile)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mode = os.environ.get(FUSE_ENV)
    os.environ[FUSE_ENV] = "all"
    try:
        rep_list = list(range(reps))
        data = [[draw_run_pairs(c, rep) for rep in rep_list] for c in configs]
        warm = [c.replace(epochs=1, train_pairs=40, val_pairs=10, test_pairs=10) for c in configs]
        run_fused([(c, [0, 1], [None, None]) for c in warm])  # imports and first calls, untimed
        for config in warm:
            run_group(config, [0, 1])
        started = time.perf_counter()
        for config, own in zip(configs, data):
            run_group(config, rep_list, data=own)
        unfused = time.perf_counter() - started
        started = time.perf_counter()
        run_fused([(c, rep_list, [None] * reps) for c in configs], data=data)
        return unfused, time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
        if mode is None:
            os.environ.pop(FUSE_ENV)
        else:
            os.environ[FUSE_ENV] = mode


def through_work(configs: list[RunConfig], reps: int, fuse: bool, workers: int | None) -> float:
    with tempfile.TemporaryDirectory() as folder, open_store(Path(folder) / "bench.db") as store:
        queue(store, configs, reps)
        started = time.perf_counter()
        summary = work(store, workers=workers, fuse=fuse)
        elapsed = time.perf_counter() - started
        assert summary.done == len(configs) * reps and not summary.failed, summary
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default="A1:5,A5:5", help="comma-separated arch:kernel")
    parser.add_argument("--structures", default=",".join(PAPER))
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--paper", action="store_true", help="the whole paper grid through pairs work")
    parser.add_argument("--in-process", action="store_true", help="only the in-process comparison")
    args = parser.parse_args()
    base = RunConfig(epochs=args.epochs)
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__}; {args.reps} reps x {args.epochs} epochs per setup"
    )
    if args.paper:
        configs = parse_grid({"structure": ",".join(PAPER), "arch": "A1,A2,A3,A4,A5,A6", "kernel": "3,5"}, base)
        for config in configs:
            draw_run_pairs(config, 0)
        peak = matmul_peak()
        floor = sum(run_flops(c) for c in configs) * args.reps / peak
        print(f"paper grid: {len(configs)} setups; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s, floor {floor:.1f} s")
        for fuse in (False, True):
            seconds = through_work(configs, args.reps, fuse, args.workers)
            print(f"pairs work, fuse={fuse}: {seconds:.1f} s = {seconds / floor:.2f} x floor", flush=True)
        return
    structures = args.structures.split(",")
    for setup in args.setups.split(","):
        arch, kernel = setup.split(":")
        configs = [base.replace(structure=s, arch=arch, kernel=int(kernel)) for s in structures]
        unfused, fused = in_process(configs, args.reps)
        print(
            f"{arch} k{kernel} {'+'.join(structures)}: in process, one thread: unfused {unfused:.1f} s, "
            f"fused {fused:.1f} s: {unfused / fused:.2f}x",
            flush=True,
        )
        if args.in_process:
            continue
        if family_key(configs[0]) is None:
            print(
                f"{arch} k{kernel}: its tower is too large to fuse by default (core.families."
                "FUSE_MAX_WEIGHTS): pairs work trains it unfused either way (PAIRS_FUSE=all forces it)"
            )
        apart = through_work(configs, args.reps, False, args.workers)
        together = through_work(configs, args.reps, True, args.workers)
        print(
            f"{arch} k{kernel} {'+'.join(structures)}: pairs work: unfused {apart:.1f} s, "
            f"fused {together:.1f} s: {apart / together:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
