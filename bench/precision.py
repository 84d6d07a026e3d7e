"""bf16 against fp32 on the paper's best setups: wall time, compute time and accuracy.

    python bench/precision.py                                   # the 3 best setups, 10 reps x 30 epochs
    python bench/precision.py --configs shared:A6:5 --reps 4 --epochs 5

Each precision trains the same runs (same seeds, same data) with ``pairs work`` on its own
temporary database. Printed per setup: the training seconds summed over its runs' epochs (what
the epochs table records, so the worker start-up is left out), the bf16 speed-up, and the
validation and test accuracy (mean +- std over the repetitions) with bf16's difference in points.
The default setups are the three of the paper's test comparison (the best of each structure:
independent A4 k5, shared A5 k5, shared-aux A6 k5), all in the A4-A6 range of the bf16 goal.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch
from grid import timed_work  # bench/grid.py, beside this script

from core.api import open_store
from core.config import RunConfig
from core.data import draw_run_pairs
from core.stats import MeanStd

DEFAULT_CONFIGS = "independent:A4:5,shared:A5:5,shared-aux:A6:5"
PRECISIONS = ("fp32", "bf16")


def train(configs: list[RunConfig], reps: int, workers: int | None) -> tuple[float, dict]:
    """Wall seconds of ``pairs work`` and, per setup label, the training seconds and each
    repetition's final validation and test accuracy (in repetition order)."""
    with tempfile.TemporaryDirectory() as folder, open_store(Path(folder) / "bench.db") as store:
        wall = timed_work(store, configs, reps, workers)
        results = {}
        for config in configs:
            runs = list(
                store.db.query("SELECT final_val_acc, test_acc FROM runs WHERE config_id = ? ORDER BY rep", [config.id])
            )
            seconds = store.db.execute(
                "SELECT SUM(seconds) FROM epochs WHERE run_id IN (SELECT id FROM runs WHERE config_id = ?)", [config.id]
            ).fetchone()[0]
            results[f"{config.structure} {config.arch} k{config.kernel}"] = {
                "seconds": seconds,
                "val": [r["final_val_acc"] for r in runs],
                "test": [r["test_acc"] for r in runs],
            }
    return wall, results


def _pct(values: list[float]) -> str:
    stat = MeanStd.of(values)
    return f"{100 * stat.mean:5.2f} +- {100 * (stat.std or 0):4.2f}"


def _paired(full: list[float], half: list[float]) -> str:
    """bf16 minus fp32 in points, with the standard error of the mean of the paired differences
    (the two precisions train the same repetitions: same seeds, same data)."""
    diff = MeanStd.of([b - a for a, b in zip(full, half)])
    return f"{100 * diff.mean:+6.2f} +- {100 * (diff.std or 0) / math.sqrt(diff.n):4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated structure:arch:kernel")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    items = [item.split(":") for item in args.configs.split(",")]
    runs = {
        precision: [
            RunConfig(structure=s, arch=a, kernel=int(k), epochs=args.epochs, precision=precision) for s, a, k in items
        ]
        for precision in PRECISIONS
    }
    for config in runs["fp32"]:  # warm the data cache so neither precision pays for loading
        draw_run_pairs(config, 0)
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"{args.reps} reps x {args.epochs} epochs per setup"
    )
    measured = {precision: train(runs[precision], args.reps, args.workers) for precision in PRECISIONS}
    for precision, (wall, _) in measured.items():
        print(f"{precision}: pairs work {wall:.1f} s wall")
    (_, fp32), (_, bf16) = measured["fp32"], measured["bf16"]
    print(
        "training seconds (summed over the runs' epochs) and accuracy in % (mean +- std; bf16 - fp32: "
        "mean +- standard error of the paired differences)"
    )
    for label, full in fp32.items():
        half = bf16[label]
        print(
            f"{label}: fp32 {full['seconds']:.1f} s, bf16 {half['seconds']:.1f} s, "
            f"speed-up {full['seconds'] / half['seconds']:.2f}x"
        )
        for metric in ("val", "test"):
            print(
                f"  {metric:4} fp32 {_pct(full[metric])}  bf16 {_pct(half[metric])}  "
                f"bf16 - fp32 {_paired(full[metric], half[metric])}"
            )


if __name__ == "__main__":
    main()
