"""Which configurations train together as one fused model (``core.fused``), without torch.

The scheduler reads it to claim a family's runs together; the workers to fuse them.
"""

from __future__ import annotations

import os

from core import structures
from core.config import RunConfig, vectorizable

#: ``PAIRS_FUSE=0`` (or ``false``/``no``/``off``) in the environment turns cross-configuration
#: fusion off: each configuration's runs then train as their own vectorised group (benchmarks
#: compare the two this way; ``--no-vectorize`` turns both off).
FUSE_ENV = "PAIRS_FUSE"

#: The grouped forwards that ``core.grouped.fused_parts`` cuts into towers and a head.
FUSABLE_FORWARDS = frozenset({
    "core.grouped:independent_forward", "core.grouped:shared_forward",
    "core.grouped:shared_aux_forward", "core.grouped:digits_forward",
})


def fusion_enabled() -> bool:
    """Whether fusion is on: the default, unless ``PAIRS_FUSE`` says 0/false/no/off."""
    return os.environ.get(FUSE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def family_key(config: RunConfig) -> tuple | None:
    """Configurations with equal keys train as one fused model; None: this one does not fuse.

    The key is what the towers' shapes depend on (architecture, kernel, pooling) and what keeps
    the runs' batches in lockstep (batch size, epochs, pair counts, data source, precision), so
    configurations with another batch size or number of epochs are simply other families.
    Structure, learning rate and schedule, optimiser, momentum, weight decay, aux weight, hidden
    layer, augmentation and seed may differ. None when the configuration is not vectorisable
    (batch norm, dropout) or its structure's grouped forward has no fused form."""
    if not vectorizable(config) or structures.get(config.structure).grouped not in FUSABLE_FORWARDS:
        return None
    return (config.arch, config.kernel, config.pooling, config.batch_size, config.epochs,
            config.train_pairs, config.val_pairs, config.test_pairs, config.data, config.precision)
