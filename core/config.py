"""Run configuration: every hyperparameter that changes the numbers, Table I and grid expansion."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

STRUCTURES: tuple[str, ...] = ("independent", "shared", "shared-aux")
#: Table I of the paper: channels of each convolutional layer.
ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "A1": (16,),
    "A2": (32,),
    "A3": (16, 32),
    "A4": (32, 64),
    "A5": (16, 32, 64),
    "A6": (32, 64, 128),
}
KERNELS: tuple[int, ...] = (3, 5)
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
DATA_SOURCES: tuple[str, ...] = ("sample", "mnist")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
DEFAULT_REPS = 10

#: Fields a grid may vary; everything else in RunConfig is a scalar.
GRID_FIELDS: tuple[str, ...] = ("structure", "arch", "kernel")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the problem and the fix."""


@dataclass(frozen=True)
class RunConfig:
    """One setup of the study. Its ``id`` is a hash of these fields, so equal setups share it."""

    structure: str = "shared"
    arch: str = "A5"
    kernel: int = 5
    epochs: int = 30
    lr: float = 0.01
    lr_step: int = 15
    lr_gamma: float = 0.1
    optimizer: str = "sgd"
    batch_size: int = 4
    aux_weight: float = 1.0
    data: str = "sample"
    train_pairs: int = 1000
    val_pairs: int = 100
    test_pairs: int = 1000
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on the first invalid field."""
        _choice("structure", self.structure, STRUCTURES)
        _choice("arch", self.arch, tuple(ARCHITECTURES))
        _choice("kernel", self.kernel, KERNELS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("data", self.data, DATA_SOURCES)
        _choice("precision", self.precision, PRECISIONS)
        _positive_int("epochs", self.epochs)
        _positive_int("lr_step", self.lr_step)
        _positive_int("batch_size", self.batch_size)
        _positive_int("train_pairs", self.train_pairs)
        _positive_int("test_pairs", self.test_pairs)
        if not isinstance(self.val_pairs, int) or isinstance(self.val_pairs, bool):
            raise ConfigError(f"val-pairs must be an integer, got {self.val_pairs!r}")
        if not 0 < self.val_pairs < self.train_pairs:
            raise ConfigError(
                f"val-pairs must be between 1 and train-pairs - 1 ({self.train_pairs - 1}), "
                f"got {self.val_pairs}"
            )
        _positive_float("lr", self.lr)
        _positive_float("lr_gamma", self.lr_gamma)
        if not (isinstance(self.aux_weight, (int, float)) and 0 <= self.aux_weight < 1e6):
            raise ConfigError(f"aux-weight must be a number >= 0, got {self.aux_weight!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def id(self) -> str:
        """Stable 16-hex-digit hash of the canonical JSON of every field."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @property
    def channels(self) -> tuple[int, ...]:
        return ARCHITECTURES[self.arch]

    @property
    def label(self) -> str:
        return f"{self.structure} {self.arch} k{self.kernel}"

    def canonical_json(self) -> str:
        """Every field, except extension fields left at their default (so ids never change)."""
        values = self.to_dict()
        for name, value in self.extension_values().items():
            if value == _DEFAULTS[name]:
                del values[name]
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def extension_values(self) -> dict:
        """The fields added after the paper's protocol (stored as JSON in ``configs.options``)."""
        return {name: getattr(self, name) for name in EXTENSION_FIELDS}

    @classmethod
    def from_dict(cls, values: Mapping) -> RunConfig:
        """From a dict of fields; an ``options`` JSON text (a database row) supplies extensions."""
        names = {f.name for f in dataclasses.fields(cls)}
        merged = dict(values)
        if merged.get("options"):
            merged.update(json.loads(merged["options"]))
        return cls(**{k: v for k, v in merged.items() if k in names})

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)


def run_seed(config: RunConfig, rep: int) -> int:
    """Initialisation/shuffling seed of a run: depends on (base seed, rep, configuration)."""
    digest = hashlib.sha256(f"{config.seed}:{rep}:{config.id}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


#: Fields added after the paper's protocol: not columns of ``configs`` but its ``options`` JSON,
#: and left out of the id at their default, so adding one never changes an existing id.
EXTENSION_FIELDS: tuple[str, ...] = ()
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def lr_at(config: RunConfig, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``: ``lr`` times ``lr_gamma`` every ``lr_step`` epochs."""
    return config.lr * config.lr_gamma ** ((epoch - 1) // config.lr_step)


@dataclass(frozen=True)
class GridSpec:
    """A product of values; ``expand`` gives its configurations."""

    structures: Sequence[str] = STRUCTURES
    archs: Sequence[str] = tuple(ARCHITECTURES)
    kernels: Sequence[int] = KERNELS
    scalars: Mapping[str, Sequence] = field(default_factory=dict)

    def expand(self, base: RunConfig | None = None) -> list[RunConfig]:
        """Every configuration in the product, in a stable order, without duplicates."""
        base = base or RunConfig()
        scalar_names = sorted(self.scalars)
        axes = [
            _unique(self.structures),
            _unique(self.archs),
            _unique(self.kernels),
            *(_unique(self.scalars[name]) for name in scalar_names),
        ]
        configs = []
        for values in itertools.product(*axes):
            structure, arch, kernel, *rest = values
            changes = dict(zip(scalar_names, rest))
            configs.append(base.replace(structure=structure, arch=arch, kernel=kernel, **changes))
        return configs


#: Named grids for ``pairs grid NAME``.
PRESETS: dict[str, str] = {
    "paper": "the paper's grid: 3 structures x 6 architectures x 2 kernels (Tables II-IV)",
}


def preset(name: str) -> GridSpec:
    """The grid of a named preset."""
    if name == "paper":
        return GridSpec()
    raise ConfigError(f"unknown grid preset {name!r}: choose one of {', '.join(PRESETS)}")


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        listed = ", ".join(str(a) for a in allowed)
        raise ConfigError(f"unknown {name} {value!r}: choose one of {listed}")


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name.replace('_', '-')} must be an integer >= 1, got {value!r}")


def _positive_float(name: str, value) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0 < value < float("inf")):
        raise ConfigError(f"{name.replace('_', '-')} must be a number > 0, got {value!r}")


#: Options whose values a grid may vary, with how to read one value from the command line.
GRID_PARSERS: dict[str, type] = {
    "structure": str, "arch": str, "kernel": int, "epochs": int, "lr": float, "lr_step": int,
    "lr_gamma": float, "optimizer": str, "batch_size": int, "aux_weight": float, "seed": int,
    "precision": str,
}


def split_values(values: Iterable[str] | str | None) -> list[str]:
    """Repeated and comma-separated option values, flattened: ["A1,A2", "A3"] -> [A1, A2, A3]."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def parse_grid(options: Mapping[str, Iterable[str] | str | None], base: RunConfig | None = None) -> list[RunConfig]:
    """Configurations of a product of option values given as text (CLI flags, TUI form).

    ``options`` maps field names (``structure``, ``arch``, ``kernel``, ``lr`` ...) to one or more
    values; missing or empty fields take ``base``'s value. Raises ConfigError naming a bad value.
    """
    base = base or RunConfig()
    axes: dict[str, list] = {}
    for name, raw in options.items():
        if name not in GRID_PARSERS:
            raise ConfigError(f"unknown option {name!r}")
        parsed = []
        for text in split_values(raw):
            try:
                value = GRID_PARSERS[name](text)
            except ValueError:
                kind = "an integer" if GRID_PARSERS[name] is int else "a number"
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} must be {kind}, got {text!r}") from None
            if name == "structure":
                value = value.lower()
            elif name == "arch":
                value = value.upper()
            parsed.append(value)
        if parsed:
            axes[name] = parsed
    spec = GridSpec(
        structures=axes.pop("structure", [base.structure]),
        archs=axes.pop("arch", [base.arch]),
        kernels=axes.pop("kernel", [base.kernel]),
        scalars=axes,
    )
    return spec.expand(base)
