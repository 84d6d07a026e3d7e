"""The registry of structures: each structure declared once, without torch.

An entry names its ``nn.Module`` builder and its grouped (vectorised) forward by import path
(``"core.models:Shared"``) or as the callables themselves, so this module, ``core.config``, the
TUI and ``pairs models`` never import torch. Everything that lists structures reads it:
``core.config.STRUCTURES`` and validation, the CLI's help and completion, the queue form, the
Model diagram, the layer walk and parameter counts (``layers``), and ``config.vectorizable``
(a structure without a grouped forward trains one run at a time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.registry import LiveNames, resolve


@dataclass(frozen=True)
class Structure:
    name: str
    #: ``(channels, kernel, **options) -> nn.Module``: a class or "module:attribute".
    builder: str | Callable[..., Any]
    #: Whether the model also returns (n, 2, 10) digit logits (trained with eq. 2's losses).
    digit_logits: bool
    #: 2 for two towers with their own weights (Fig. 1), 1 for one shared tower.
    towers: int
    #: One line for the CLI help and the Model diagram's title.
    description: str
    #: The torch-free layer walk: ``layers(kit) -> list[Layer]`` with ``kit.tower(part)``,
    #: ``kit.dense(part, inputs, outputs)`` and ``kit.Layer`` (see ``core.config.model_layers``);
    #: parameter counts without torch are its sum.
    layers: Callable[[Any], list]
    #: ``grouped(model, params, x) -> (logits, digits)`` for R stacked parameter sets
    #: (``core.grouped``), or None: the structure then trains one run at a time.
    grouped: str | Callable[..., Any] | None = None
    #: One of the paper's three (the paper grid, Tables II-IV).
    paper: bool = False

    def build(self, channels: tuple[int, ...], kernel: int, **options: Any) -> Any:
        return resolve(self.builder)(channels, kernel, **options)

    def grouped_forward(self) -> Callable[..., Any] | None:
        return None if self.grouped is None else resolve(self.grouped)


_REGISTRY: dict[str, Structure] = {}
_LISTENERS: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every (un)registration (the CLI refreshes its help with it)."""
    _LISTENERS.append(listener)


def _changed() -> None:
    for listener in _LISTENERS:
        listener()


def register(structure: Structure) -> Structure:
    """Add (or replace) a structure; every list of structures sees it at once."""
    if structure.towers not in (1, 2):
        raise ValueError(f"structure {structure.name!r}: towers must be 1 or 2")
    _REGISTRY[structure.name] = structure
    _changed()
    return structure


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _changed()


def get(name: str) -> Structure:
    try:
        return _REGISTRY[name]
    except KeyError:
        from core.errors import ConfigError

        raise ConfigError(f"unknown structure {name!r}: choose one of {', '.join(_REGISTRY)}") from None


def entries() -> list[Structure]:
    return list(_REGISTRY.values())


class Names(LiveNames):
    """A live, read-only tuple of the registered names that pass ``keep`` (in registration
    order): ``in``, ``index``, iteration and ``==`` with a tuple see later registrations."""

    def __init__(self, keep: Callable[[Structure], bool] = lambda s: True):
        super().__init__(lambda: tuple(s.name for s in _REGISTRY.values() if keep(s)))


def help_text() -> str:
    """The structures for ``--structure``'s help: ``name (description)``, the paper's first."""
    parts = []
    for s in _REGISTRY.values():
        slow = "" if s.grouped is not None else ", one run at a time"
        parts.append(f"{s.name} ({s.description}{slow})")
    return "; ".join(parts) + "."


# The layer walks of the four structures (their modules are in core.models).


def _independent_layers(kit) -> list:
    first, second = kit.tower("tower 1"), kit.tower("tower 2")
    features = first[-1].shape[0]
    return [
        *first,
        *second,
        kit.Layer("comparison head", f"concat 2x{features}", (2 * features,), 0),
        *kit.dense("comparison head", 2 * features, 2),
    ]


def _shared_layers(kit) -> list:
    shared = kit.tower("tower")
    features = shared[-1].shape[0]
    return [
        *shared,
        kit.Layer("comparison head", f"concat 2x{features}", (2 * features,), 0),
        *kit.dense("comparison head", 2 * features, 2),
    ]


def _shared_aux_layers(kit) -> list:
    shared = kit.tower("tower")
    return [
        *shared,
        *kit.dense("digit head", shared[-1].shape[0], 10),
        kit.Layer("comparison head", "concat 2x10", (20,), 0),
        kit.Layer("comparison head", "linear 20->2", (2,), 20 * 2 + 2),
    ]


def _digits_layers(kit) -> list:
    shared = kit.tower("tower")
    return [
        *shared,
        *kit.dense("digit head", shared[-1].shape[0], 10),
        kit.Layer("comparison head", "P(1st > 2nd)", (2,), 0),
    ]


register(
    Structure(
        "independent",
        "core.models:Independent",
        False,
        2,
        "Fig. 1, two towers with their own weights",
        _independent_layers,
        "core.grouped:independent_forward",
        paper=True,
    )
)
register(
    Structure(
        "shared",
        "core.models:Shared",
        False,
        1,
        "Fig. 2, one tower shared by both images",
        _shared_layers,
        "core.grouped:shared_forward",
        paper=True,
    )
)
register(
    Structure(
        "shared-aux",
        "core.models:SharedAux",
        True,
        1,
        "Fig. 3, shared tower, digit head (aux. loss)",
        _shared_aux_layers,
        "core.grouped:shared_aux_forward",
        paper=True,
    )
)
register(
    Structure(
        "digits",
        "core.models:Digits",
        True,
        1,
        "shared tower, comparison from the digits",
        _digits_layers,
        "core.grouped:digits_forward",
    )
)
