"""Fixture databases with known epoch values for the plot, comparison and report tests."""

from __future__ import annotations

from core.compare import paper_validation
from core.config import RunConfig
from core.store import Store, run_id

EPOCH_DEFAULTS = dict(
    train_main_loss=None, train_acc=0.9, val_main_loss=None, val_digit_acc=None, lr=0.01, seconds=0.5, recorded_at=0.0
)


def curve_values(epoch: int, rep: int) -> dict:
    """Known per-epoch metrics: over reps 0..2 the std is 0.1, 0.2 and 0.02 at every epoch."""
    return {
        "train_loss": 1.0 / epoch + 0.1 * rep,
        "val_loss": 0.5 + 0.1 * epoch + 0.2 * rep,
        "val_acc": 0.70 + 0.01 * epoch + 0.02 * rep,
    }


def add_runs(
    store: Store,
    config: RunConfig,
    per_rep: list[dict[int, dict]],
    test_acc: list[float] | None = None,
    status: str = "done",
) -> None:
    """Queue ``len(per_rep)`` runs of ``config`` and record their epochs ({epoch: metrics})."""
    store.queue([config], len(per_rep))
    rows = [
        {"run_id": run_id(config, rep), "epoch": epoch, **EPOCH_DEFAULTS, **metrics}
        for rep, epochs in enumerate(per_rep)
        for epoch, metrics in epochs.items()
    ]
    store.db["epochs"].insert_all(rows)
    for rep in range(len(per_rep)):
        acc = test_acc[rep] if test_acc else 0.8
        store.db["runs"].update(
            run_id(config, rep),
            {
                "status": status,
                "test_acc": acc,
                "test_loss": 0.4 + rep * 0.01,
                "started_at": 1000.0 + rep * 100,
                "finished_at": 1060.0 + rep * 100,
                "seconds": 60.0,
                "device": "cpu",
                "torch_version": "2.9.0+test",
                "code_version": "0.1.0",
                "host": "fixture-host",
            },
        )


def add_known_curves(store: Store, config: RunConfig, reps: int = 3, test_acc: list[float] | None = None) -> None:
    add_runs(
        store, config, [{e: curve_values(e, r) for e in range(1, config.epochs + 1)} for r in range(reps)], test_acc
    )


def add_final(store: Store, config: RunConfig, means: dict[str, float], spread: float = 0.001) -> None:
    """Two done runs whose final-epoch means are exactly ``means`` (one epoch per config)."""
    low = {m: v - spread for m, v in means.items()}
    high = {m: v + spread for m, v in means.items()}
    add_runs(store, config, [{config.epochs: low}, {config.epochs: high}])


def at_sigma(structure: str, arch: str, kernel: int, z: dict[str, float]) -> dict[str, float]:
    """Final-epoch means sitting ``z[metric]`` paper-σ from the paper's mean (0 when absent)."""
    setup = paper_validation()[(structure, arch, kernel)]
    return {m: v.mean + z.get(m, 0.0) * v.std for m, v in setup.metrics.items()}
