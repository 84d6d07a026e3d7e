"""The registry of data sources: each source of digits declared once, without torch or numpy.

An entry names its loader by import path (``"core.data:load_sample_pools"``) or as the callable
itself, so this module, ``core.config`` and the CLI never import numpy or torch. Everything that
lists or checks sources reads it: ``core.config.DATA_SOURCES`` and validation, the pair-count
check (``pool_sizes``), ``core.data.digit_pools``, the CLI's ``--data`` help and the
reproduction report's description of the digits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.registry import LiveNames, resolve


@dataclass(frozen=True)
class DataSource:
    name: str
    #: ``loader(data_dir: str | None) -> (training DigitPool, test DigitPool)``: a callable or
    #: "module:attribute". ``data_dir`` is ``--data-dir`` (None: the source's default place).
    loader: str | Callable[[str | None], Any]
    #: Digits in the (training pool, test pool): how many pairs a repetition may draw.
    pool_sizes: tuple[int, int]
    #: One line for the CLI help.
    description: str
    #: How the reproduction report describes the digits.
    report: str
    #: A source with larger pools, suggested when a draw needs more digits than this one holds.
    larger: str | None = None

    def load(self, data_dir: str | None) -> Any:
        return resolve(self.loader)(data_dir)


_REGISTRY: dict[str, DataSource] = {}


def register(source: DataSource) -> DataSource:
    """Add (or replace) a data source; ``--data`` and validation accept it at once."""
    if len(source.pool_sizes) != 2 or min(source.pool_sizes) < 2:
        raise ValueError(f"data source {source.name!r}: pool_sizes must be (train, test) >= 2")
    _REGISTRY[source.name] = source
    return source


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> DataSource:
    try:
        return _REGISTRY[name]
    except KeyError:
        from core.errors import DataError

        raise DataError(f"unknown data source {name!r}: choose one of {', '.join(_REGISTRY)}") from None


def entries() -> list[DataSource]:
    return list(_REGISTRY.values())


#: The registered names, live (a source registered later is in it).
NAMES = LiveNames(lambda: tuple(_REGISTRY))


def help_text() -> str:
    """The sources for ``--data``'s help: ``name (description)``."""
    return "; ".join(f"{s.name} ({s.description})" for s in _REGISTRY.values()) + "."


register(
    DataSource(
        "sample",
        "core.data:sample_source",
        (2500, 2500),
        "the embedded 5000 MNIST digits, offline",
        "the embedded sample of 5000 MNIST digits (pairs drawn from it per repetition)",
        larger="mnist",
    )
)
register(
    DataSource(
        "mnist",
        "core.data:mnist_source",
        (60000, 10000),
        "full MNIST through torchvision",
        "full MNIST (torchvision), pairs drawn per repetition",
    )
)
