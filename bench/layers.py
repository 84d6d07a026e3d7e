"""The paper grid's convolutions, each timed alone at its best, against the FLOP floor.

    python bench/layers.py                      # fp32
    python bench/layers.py --precision bf16     # bf16 autocast (fp32 where that is faster)

A lower bound for any engine built on PyTorch's CPU kernels on this machine. Every convolution of
every Table I tower runs as the engine runs it: the R repetitions as one grouped convolution over
a training batch (4 pairs = 8 images per repetition), forward and backward (no input gradient for
the first layer), in its faster memory layout (NCHW or channels-last), alone in one thread, the
median of 30 steps. Nothing else of a step is counted (pooling, ReLU, the linear layers, the
optimiser, evaluation), and every structure is charged the shared tower's time (independent's
two towers of 4 images each are slower), so the paper grid cannot train faster than the sum of
these times x 225 steps x 30 epochs x 3 structures, spread perfectly over the cores. Printed:
each layer's time, its FLOP floor and their ratio; then that bound against the grid's FLOP floor
(bench/grid.py's count and peak).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from grid import matmul_peak, run_flops  # bench/grid.py, beside this script
from torch.utils.flop_counter import FlopCounterMode

from core.config import ARCHITECTURES, KERNELS, PAPER_STRUCTURES, RunConfig, conv_layers

LAYOUTS = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}


def conv_step(shape: tuple[int, int, int], kernel: int, reps: int, images: int, layout, dtype):
    """A closure running one forward and backward pass of the grouped convolution."""
    in_channels, out_channels, size = shape
    x = torch.randn(images, reps * in_channels, size, size).contiguous(memory_format=layout)
    x.requires_grad_(in_channels > 1)  # the first layer's input is the data
    weight = torch.randn(reps * out_channels, in_channels, kernel, kernel, requires_grad=True)
    bias = torch.randn(reps * out_channels, requires_grad=True)
    grad = torch.randn(images, reps * out_channels, size, size, dtype=dtype).contiguous(memory_format=layout)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = F.conv2d(x, weight, bias, padding=kernel // 2, groups=reps)
        out.backward(grad)

    return step


def median_seconds(step, repeats: int = 30) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_flops(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    config = RunConfig(precision=args.precision)
    images = 2 * config.batch_size
    steps = -(-(config.train_pairs - config.val_pairs) // config.batch_size) * config.epochs
    dtypes = [torch.float32] + ([torch.bfloat16] if args.precision == "bf16" else [])

    cores = os.cpu_count() or 1
    grid_peak = matmul_peak()
    torch.set_num_threads(1)
    peak = matmul_peak(1024)
    print(
        f"{args.precision}, 1 thread, matmul peak {peak / 1e9:.0f} GFLOP/s; {args.reps} repetitions "
        f"grouped, {images} images each; the median of 30 forward+backward passes"
    )
    tower_seconds = 0.0
    for arch in ARCHITECTURES:
        for kernel in KERNELS:
            for shape in conv_layers(arch):
                timed = {
                    (name, dtype): median_seconds(conv_step(shape, kernel, args.reps, images, layout, dtype))
                    for name, layout in LAYOUTS.items()
                    for dtype in dtypes
                }
                (name, dtype), best = min(timed.items(), key=lambda item: item[1])
                # One repetition's FLOPs x R: FlopCounterMode counts a grouped convolution's input
                # gradient as if it were not grouped (groups x too many).
                one = conv_step(shape, kernel, 1, images, torch.contiguous_format, torch.float32)
                floor = step_flops(one) * args.reps / peak
                tower_seconds += best
                in_channels, out_channels, size = shape
                print(
                    f"{arch} k{kernel}  {in_channels:>3}->{out_channels:<3} on {size:>2}x{size:<2}  "
                    f"{name:>13} {str(dtype).removeprefix('torch.'):>8}  {best * 1e3:6.2f} ms  "
                    f"floor {floor * 1e3:5.2f} ms  {best / floor:5.2f}x",
                    flush=True,
                )

    bound = len(PAPER_STRUCTURES) * tower_seconds * steps / cores
    configs = [
        config.replace(structure=s, arch=a, kernel=k) for s in PAPER_STRUCTURES for a in ARCHITECTURES for k in KERNELS
    ]
    grid_floor = sum(run_flops(c) for c in configs) * args.reps / grid_peak
    print(
        f"paper grid ({len(configs)} setups x {args.reps} reps x {config.epochs} epochs): its "
        f"convolutions alone, each at its best, take {bound:.0f} s on {cores} cores = "
        f"{bound / grid_floor:.2f}x the grid's FLOP floor ({grid_floor:.0f} s at "
        f"{grid_peak / 1e9:.0f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
