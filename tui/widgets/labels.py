"""Short text for configurations: the setup and the protocol fields that differ from defaults."""

from __future__ import annotations

from collections.abc import Mapping

from core.protocol import Protocol


def setup_label(row: Mapping) -> str:
    return f"{row['structure']} {row['arch']} k{row['kernel']}"


def protocol_label(row: Mapping) -> str:
    """The protocol's one label (``core.protocol``): ``paper``, or ``2ep sgd b4 lr .01/15x.1``
    and whatever else differs from the paper's protocol."""
    return Protocol.of(row).label
