"""Choose the `digits` recipe on validation only: a few repetitions, the test split never read.

    python bench/beyond_search.py --reps 3 --seed 1 \
        --set "structure=digits arch=A4 kernel=3 hidden=200 optimizer=adam lr=0.001 batch_size=32"

Each ``--set`` is one candidate (space-separated field=value, parsed like the CLI flags). The
candidates train here, in this process (vectorised when the configuration allows it), on the
pairs of base seed ``--seed`` (not the final runs' seed 0), with the validation split standing
in for the test split, so no test pair is ever evaluated. Prints per candidate: mean ± std of
the final validation accuracy, the best epoch's mean, and seconds per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from core.config import RunConfig, parse_grid, vectorizable
from core.data import PairData, draw_run_pairs
from core.train import run_training
from core.vectorized import run_group


def candidate(text: str, seed: int) -> RunConfig:
    options = dict(part.split("=", 1) for part in text.split())
    (config,) = parse_grid({**options, "seed": str(seed)})
    return config


def evaluate(config: RunConfig, reps: list[int], vectorize: bool = True) -> dict:
    data = []
    for rep in reps:
        d = draw_run_pairs(config, rep)
        data.append(PairData(d.train, d.val, d.val))  # the test split is never read
    curves: dict[int, list[float]] = {rep: [] for rep in reps}
    last: dict[int, object] = {}

    def record(rep, metrics):
        curves[rep].append(metrics.val_acc)
        last[rep] = metrics

    started = time.perf_counter()
    if vectorize and vectorizable(config) and len(reps) > 1:
        run_group(config, reps, data=data, on_epoch=lambda rep, m, _: record(rep, m))
    else:
        for rep, d in zip(reps, data):
            run_training(config, rep, data=d, on_epoch=lambda m, _, r=rep: record(r, m))
    seconds = (time.perf_counter() - started) / len(reps)
    finals = [curves[r][-1] for r in reps]
    mean_curve = [statistics.mean(v) for v in zip(*curves.values())]
    return {
        "config": config.label + " " + config.options_label(),
        "seed": config.seed,
        "reps": len(reps),
        "protocol": f"{config.optimizer} lr {config.lr:g}/{config.lr_step}x{config.lr_gamma:g} "
        f"b{config.batch_size} {config.epochs}ep aux {config.aux_weight:g}",
        "val_acc_final": statistics.mean(finals),
        "val_acc_std": statistics.stdev(finals) if len(finals) > 1 else None,
        "val_main_loss": statistics.mean(last[r].val_main_loss for r in reps),
        "val_digit_acc": statistics.mean(last[r].val_digit_acc or 0 for r in reps),
        "train_acc": statistics.mean(last[r].train_acc for r in reps),
        "best_epoch": max(range(len(mean_curve)), key=mean_curve.__getitem__) + 1,
        "val_acc_best_epoch": max(mean_curve),
        "last5": [round(v, 4) for v in mean_curve[-5:]],
        "seconds_per_run": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, dest="candidates")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-vectorize", action="store_true")
    parser.add_argument("--log", default=None, help="append one JSON line per candidate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for text in args.candidates:
        result = evaluate(candidate(text, args.seed), list(range(args.reps)), not args.no_vectorize)
        print(json.dumps(result), flush=True)
        if args.log:
            with open(args.log, "a") as handle:
                handle.write(json.dumps({"set": text, **result}) + "\n")


if __name__ == "__main__":
    main()
