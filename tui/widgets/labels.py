"""Short text for configurations: the setup and the protocol fields that differ from defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping

from core.config import RunConfig, options_label

DEFAULTS = RunConfig()


def setup_label(row: Mapping) -> str:
    return f"{row['structure']} {row['arch']} k{row['kernel']}"


def protocol_label(row: Mapping) -> str:
    """Epochs, lr schedule, optimiser and batch always; the rest only when not the default."""
    parts = [
        f"{row['epochs']}ep",
        f"lr {row['lr']:g}/{row['lr_step']}x{row['lr_gamma']:g}",
        f"{row['optimizer']}",
        f"b{row['batch_size']}",
    ]
    if row["structure"] in ("shared-aux", "digits") or row["aux_weight"] != DEFAULTS.aux_weight:
        parts.append(f"aux {row['aux_weight']:g}")
    if row["seed"] != DEFAULTS.seed:
        parts.append(f"seed {row['seed']}")
    if row["data"] != DEFAULTS.data:
        parts.append(row["data"])
    pairs = (row["train_pairs"], row["val_pairs"], row["test_pairs"])
    if pairs != (DEFAULTS.train_pairs, DEFAULTS.val_pairs, DEFAULTS.test_pairs):
        parts.append("pairs {}/{}/{}".format(*pairs))
    if row.get("precision", DEFAULTS.precision) != DEFAULTS.precision:
        parts.append(row["precision"])
    if row.get("options"):  # the options beyond the paper that differ from their default
        extra = options_label(json.loads(row["options"]))
        if extra:
            parts.append(extra)
    return " ".join(parts)
