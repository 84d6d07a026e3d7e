"""What the registries (``core.structures``, ``core.sources``) share: live name lists and
import-path resolution, so a registry's module never imports torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class LiveNames(Sequence[str]):
    """A live, read-only tuple of names (``names()`` is asked each time): ``in``, ``index``,
    iteration and ``==`` with a tuple see later registrations."""

    def __init__(self, names: Callable[[], tuple[str, ...]]):
        self._source = names

    def _names(self) -> tuple[str, ...]:
        return self._source()

    def __getitem__(self, index):  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __eq__(self, other: object) -> bool:
        return self._names() == (tuple(other) if isinstance(other, (tuple, list, LiveNames)) else other)

    def __hash__(self) -> int:
        return hash(self._names())

    def __add__(self, other):
        return self._names() + tuple(other)

    def __repr__(self) -> str:
        return repr(self._names())


def resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable, or the attribute that "module:attribute" names (imported now)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
