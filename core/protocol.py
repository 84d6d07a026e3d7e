"""The protocol of a configuration: how its runs were trained, apart from the setup itself.

A configuration is a *setup* (``structure``, ``arch``, ``kernel``) trained under a *protocol*
(every other ``RunConfig`` field: epochs, learning-rate schedule, optimizer, batch size, aux
weight, data source and sizes, seed, precision and every option beyond the paper). Numbers of
two protocols are never averaged, ranked, bolded or tested together: every report works on one
protocol at a time (``group_rows``, ``select``).

A protocol has an ``id`` (16 hex digits of sha256 of the canonical JSON of its fields; options
beyond the paper left out at their default, so adding one never changes an existing id) and a
short ``label``: ``paper`` for the paper's defaults, else the schedule
(``2ep adam b32 lr .001/30x.1``) followed by every other field that differs from the paper's.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.config import (
    EXTENSION_FIELDS,
    ConfigError,
    RunConfig,
    options_label,
    params,
    split_values,
)

#: Every RunConfig field but the setup (structure, arch, kernel), in RunConfig's order: the
#: fields whose ``Param`` says ``protocol``.
PROTOCOL_PARAMS = {hp.name: hp for hp in params() if hp.param.protocol}
PROTOCOL_FIELDS: tuple[str, ...] = tuple(PROTOCOL_PARAMS)
_DEFAULTS = {name: hp.default for name, hp in PROTOCOL_PARAMS.items()}
PAPER_LABEL = "paper"


def _canonical(name: str, value):
    """One spelling per value: a float field holds a float (10 and 10.0 are one value), -0.0 is
    0.0, booleans stored as 0/1 (SQLite, JSON) are booleans."""
    default = _DEFAULTS[name]
    if isinstance(default, bool):
        return bool(value) if isinstance(value, (bool, int)) else value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) + 0.0  # -0.0 + 0.0 == +0.0
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _number(value: float) -> str:
    """``0.01`` -> ``.01``, ``1.0`` -> ``1``, ``1e-05`` -> ``1e-05``: short and exact enough."""
    text = f"{value:g}"
    if text.startswith("0."):
        return text[1:]
    return text


@dataclass(frozen=True)
class Protocol:
    """The values of every protocol field (see the module docstring)."""

    values: tuple[tuple[str, object], ...]

    @classmethod
    def of(cls, values: Mapping | RunConfig) -> Protocol:
        """From a RunConfig, or a mapping of fields (a ``configs`` row: its ``options`` JSON
        supplies the options beyond the paper; a missing field takes the paper's value)."""
        if isinstance(values, RunConfig):
            mapping = values.to_dict()
        else:
            mapping = dict(values)
            options = mapping.get("options")
            if isinstance(options, str) and options:
                try:
                    mapping.update(json.loads(options))
                except ValueError:
                    pass
        return cls(
            tuple(
                (name, _canonical(name, _DEFAULTS[name] if mapping.get(name) is None else mapping[name]))
                for name in PROTOCOL_FIELDS
            )
        )

    @classmethod
    def paper(cls) -> Protocol:
        return cls.of(RunConfig())

    def get(self, name: str):
        return dict(self.values)[name]

    def as_dict(self) -> dict:
        return dict(self.values)

    def canonical_json(self) -> str:
        values = {
            name: value for name, value in self.values if not (name in EXTENSION_FIELDS and value == _DEFAULTS[name])
        }
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    @functools.cached_property
    def id(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @functools.cached_property
    def is_paper(self) -> bool:
        return self.as_dict() == _DEFAULTS

    @functools.cached_property
    def description(self) -> str:
        """Every field in short: ``30ep sgd b4 lr .01/15x.1`` then what differs from the
        paper's other values (``aux 0.5 mnist pairs 500/50/500 seed 1 bf16 bn drop 0.3``)."""
        v = self.as_dict()
        parts = [
            f"{v['epochs']}ep {v['optimizer']} b{v['batch_size']} "
            f"lr {_number(v['lr'])}/{v['lr_step']}x{_number(v['lr_gamma'])}"
        ]
        if v["aux_weight"] != _DEFAULTS["aux_weight"]:
            parts.append(f"aux {_number(v['aux_weight'])}")
        if v["data"] != _DEFAULTS["data"]:
            parts.append(str(v["data"]))
        sizes = ("train_pairs", "val_pairs", "test_pairs")
        if any(v[name] != _DEFAULTS[name] for name in sizes):
            parts.append("pairs " + "/".join(str(v[name]) for name in sizes))
        if v["seed"] != _DEFAULTS["seed"]:
            parts.append(f"seed {v['seed']}")
        if v["precision"] != _DEFAULTS["precision"]:
            parts.append(str(v["precision"]))
        options = options_label({name: v[name] for name in EXTENSION_FIELDS})
        if options:
            parts.append(options)
        return " ".join(parts)

    @property
    def label(self) -> str:
        """``paper`` for the paper's protocol, else :attr:`description`."""
        return PAPER_LABEL if self.is_paper else self.description

    @property
    def heading(self) -> str:
        """``Protocol paper (30ep sgd b4 lr .01/15x.1), id 1a2b3c4d``: a table group's title."""
        if self.is_paper:
            return f"Protocol paper ({self.description}, the paper's), id {self.id[:8]}"
        return f"Protocol {self.label}, id {self.id[:8]}"

    def sort_key(self) -> tuple:
        """The paper's first, then by label."""
        return (not self.is_paper, self.label, self.id)


def protocol_of(config: RunConfig) -> Protocol:
    return Protocol.of(config)


def ordered(protocols: Iterable[Protocol]) -> list[Protocol]:
    """Distinct protocols, the paper's first, then by label."""
    unique = {p.id: p for p in protocols}
    return sorted(unique.values(), key=Protocol.sort_key)


def group_by_protocol(items: Sequence, key=lambda item: item.protocol) -> list[tuple[Protocol, list]]:
    """``items`` (each with a protocol) grouped per protocol, the paper's first; the order of
    ``items`` is kept inside each group."""
    groups: dict[str, list] = {}
    protocols: dict[str, Protocol] = {}
    for item in items:
        protocol = key(item)
        groups.setdefault(protocol.id, []).append(item)
        protocols[protocol.id] = protocol
    return [(p, groups[p.id]) for p in ordered(protocols.values())]


def available_line(protocols: Iterable[Protocol]) -> str:
    """``paper (id 1a2b3c4d); 2ep sgd b4 lr .01/15x.1 (id 9f8e7d6c)``: for error messages."""
    listed = ordered(protocols)
    if not listed:
        return "none (no configurations in this database)"
    return "; ".join(f"{p.label} (id {p.id[:8]})" for p in listed)


@dataclass(frozen=True)
class ProtocolChoice:
    """Which protocols a report shows: ``--protocol LABEL|ID`` and/or the protocol flags of
    ``pairs queue`` (each given field keeps the protocols with one of its values). Empty: all."""

    protocol: str | None = None
    fields: tuple[tuple[str, tuple], ...] = ()

    @classmethod
    def from_options(
        cls, protocol: str | None = None, options: Mapping[str, Iterable[str] | str | None] | None = None
    ) -> ProtocolChoice:
        """From command-line text; ConfigError names a bad value."""
        fields = []
        for name, raw in (options or {}).items():
            if name not in PROTOCOL_FIELDS:
                raise ConfigError(f"--{name.replace('_', '-')} is not a protocol option")
            texts = split_values(raw, name)
            if not texts:
                continue
            parsed = []
            hp = PROTOCOL_PARAMS[name]
            for text in texts:
                try:
                    value = hp.parse(text)
                except ValueError:
                    raise ConfigError(f"--{name.replace('_', '-')} must be {hp.kind}, got {text!r}") from None
                if isinstance(value, str):
                    value = value.lower()
                parsed.append(_canonical(name, value))
            fields.append((name, tuple(parsed)))
        chosen = protocol.strip() if isinstance(protocol, str) else None
        return cls(chosen or None, tuple(fields))

    @property
    def empty(self) -> bool:
        return self.protocol is None and not self.fields

    def matches(self, protocol: Protocol) -> bool:
        if self.protocol is not None and not _names(self.protocol, protocol):
            return False
        values = protocol.as_dict()
        return all(values[name] in allowed for name, allowed in self.fields)

    def describe(self) -> str:
        """The choice as flags, for messages (control characters shown escaped)."""
        parts = [f"--protocol {self.protocol}"] if self.protocol else []
        parts += [f"--{name.replace('_', '-')} {','.join(str(v) for v in values)}" for name, values in self.fields]
        return "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in " ".join(parts)
        )

    def select(self, protocols: Iterable[Protocol]) -> list[Protocol]:
        """The chosen protocols among ``protocols`` (all when the choice is empty), the paper's
        first. ConfigError naming the available ones when none matches."""
        available = ordered(protocols)
        if self.empty:
            return available
        chosen = [p for p in available if self.matches(p)]
        if (
            self.protocol is not None
            and len([p for p in chosen if p.id.startswith(self.protocol.lower())]) > 1
            and not any(_names_exactly(self.protocol, p) for p in chosen)
        ):
            raise ConfigError(
                f"--protocol {self.protocol} is the start of several protocol ids: "
                f"give more of it; available: {available_line(available)}"
            )
        if not chosen:
            raise ConfigError(
                f"no protocol in this database matches {self.describe()}: available: {available_line(available)}"
            )
        return chosen


def _names_exactly(text: str, protocol: Protocol) -> bool:
    lowered = text.strip().lower()
    return lowered in (protocol.label.lower(), protocol.description.lower(), protocol.id)


def _names(text: str, protocol: Protocol) -> bool:
    """Whether ``--protocol TEXT`` names ``protocol``: its label, its description, its id or the
    start of its id (at least 4 hex digits)."""
    lowered = text.strip().lower()
    if _names_exactly(text, protocol):
        return True
    return len(lowered) >= 4 and protocol.id.startswith(lowered)
