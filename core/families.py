"""Which configurations train together as one fused model (``core.fused``), without torch.

The scheduler reads it to claim a family's runs together; the workers to fuse them.
"""

from __future__ import annotations

import os

from core import structures
from core.config import RunConfig, conv_layers, vectorizable

#: ``PAIRS_FUSE=0`` (or ``false``/``no``/``off``) in the environment turns cross-configuration
#: fusion off: each configuration's runs then train as their own vectorised group (benchmarks
#: compare the two this way; ``--no-vectorize`` turns both off). ``PAIRS_FUSE=all`` fuses towers
#: of every size (see ``FUSE_MAX_WEIGHTS``).
FUSE_ENV = "PAIRS_FUSE"

#: Towers whose largest convolution has more weights than this per repetition do not fuse:
#: measured on 2 contended CPU cores (one torch thread, 10 reps of the paper's three structures,
#: one training epoch), fusion is 1.08-1.09x faster for A1/A2 k5, 1.2-1.5x for A3 k5, A4 k3 and
#: A5 k3 (at most 18 432 weights), about even for A6 k3 (73 728: 1.02x), and slower or even for
#: A4 k5 (51 200: 0.81-1.08x) and A6 k5 (204 800: 0.72-0.85x), where oneDNN's grouped convolution
#: backward grows faster than its groups (1.37x the time for twice the groups, A6 k5).
FUSE_MAX_WEIGHTS = 32_768

#: The grouped forwards that ``core.grouped.fused_parts`` cuts into towers and a head.
FUSABLE_FORWARDS = frozenset(
    {
        "core.grouped:independent_forward",
        "core.grouped:shared_forward",
        "core.grouped:shared_aux_forward",
        "core.grouped:digits_forward",
    }
)


def fusion_mode() -> str:
    """``off``, ``on`` (the default: towers up to ``FUSE_MAX_WEIGHTS``) or ``all``, from ``PAIRS_FUSE``."""
    value = os.environ.get(FUSE_ENV, "1").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    return "all" if value == "all" else "on"


def fusion_enabled() -> bool:
    """Whether fusion is on: the default, unless ``PAIRS_FUSE`` says 0/false/no/off."""
    return fusion_mode() != "off"


def largest_conv_weights(config: RunConfig) -> int:
    """Weights of the largest convolution of one repetition's tower."""
    return max((cin * cout * config.kernel**2 for cin, cout, _ in conv_layers(config.arch)), default=0)


def family_key(config: RunConfig) -> tuple | None:
    """Configurations with equal keys train as one fused model; None: this one does not fuse.

    The key is what the towers' shapes depend on (architecture, kernel, pooling) and what keeps
    the runs' batches in lockstep (batch size, epochs, pair counts, data source, precision), so
    configurations with another batch size or number of epochs are simply other families.
    Structure, learning rate and schedule, optimiser, momentum, weight decay, aux weight, hidden
    layer, augmentation and seed may differ. None when the configuration is not vectorisable
    (batch norm, dropout), its structure's grouped forward has no fused form, or (unless
    ``PAIRS_FUSE=all``) its tower is too large for fusion to pay (``FUSE_MAX_WEIGHTS``)."""
    if not vectorizable(config) or structures.get(config.structure).grouped not in FUSABLE_FORWARDS:
        return None
    if fusion_mode() != "all" and largest_conv_weights(config) > FUSE_MAX_WEIGHTS:
        return None
    return (
        config.arch,
        config.kernel,
        config.pooling,
        config.batch_size,
        config.epochs,
        config.train_pairs,
        config.val_pairs,
        config.test_pairs,
        config.data,
        config.precision,
    )
