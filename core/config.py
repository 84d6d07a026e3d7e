"""Run configuration: every hyperparameter that changes the numbers, Table I and grid expansion."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from core import sources as _sources
from core import structures as _structures
from core.errors import ConfigError, DataError

#: The paper's three structures (Figs 1-3): the paper grid and the tables' order.
PAPER_STRUCTURES: Sequence[str] = _structures.Names(lambda s: s.paper)
#: Every structure (``core.structures``, live: a structure registered later is in it): the
#: paper's, then ``digits`` (beyond the paper: the comparison from the two digit posteriors).
STRUCTURES: Sequence[str] = _structures.Names()
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
#: Side of an input image: 28x28 MNIST average-pooled by 2.
IMAGE_SIZE = 14
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
#: Every data source (``core.sources``, live: a source registered later is in it).
DATA_SOURCES: Sequence[str] = _sources.NAMES
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
POOLINGS: tuple[str, ...] = ("max", "avg")
DEFAULT_REPS = 10
#: Limits of one queue command, far above any study (the paper: 36 setups x 10 repetitions) and
#: low enough that a typo (``--reps 100000000``) is refused at once instead of filling the disk.
MAX_REPS = 1000
MAX_SETUPS = 10_000
MAX_QUEUED_RUNS = 100_000
#: Worker processes (or Ray tasks at once) one driver may be asked for: a typo beyond that.
MAX_WORKERS = 256
#: Upper bounds of the integer fields of a RunConfig: far above any sensible run, far below
#: SQLite's 64-bit integers (a larger value would overflow the database or a loop).
MAX_EPOCHS = 10_000
MAX_LR_STEP = 10_000
MAX_BATCH_SIZE = 100_000
MAX_PAIRS = 1_000_000
MAX_SEED = 2**32 - 1
#: Times a lost run may be tried again (--max-retries).
MAX_RETRIES = 100

#: Fields a grid may vary; everything else in RunConfig is a scalar.
GRID_FIELDS: tuple[str, ...] = ("structure", "arch", "kernel")


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
    # -- beyond the paper (EXTENSION_FIELDS: left out of the id at their default) -------------
    #: batch normalisation after each convolution (and the hidden layer)
    batch_norm: bool = False
    #: dropout probability before each fully-connected layer
    dropout: float = 0.0
    #: the tower's pooling: max (the paper's) or avg
    pooling: str = "max"
    #: units of a hidden fully-connected layer before the output layer(s); 0: none (the paper's)
    hidden: int = 0
    #: SGD momentum (sgd only)
    momentum: float = 0.0
    #: L2 weight decay of the optimiser
    weight_decay: float = 0.0
    #: training-time augmentation, drawn anew each epoch: re-pair the training digits
    repair: bool = False
    #: ... shift each training image by up to this many pixels in x and y
    shift: int = 0
    #: ... rotate each training image by up to this many degrees
    rotate: float = 0.0
    #: ... swap the two images of half the training pairs (label recomputed from the classes)
    swap: bool = False

    def __post_init__(self) -> None:
        # One setup, one id: a number field holds a float whatever the spelling (10 and 10.0,
        # -0.0 and 0.0, 1e-2 and 0.01 hash alike); a bool is never taken for a number.
        for name in FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # validate() names it
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float: validate() refuses inf
                value = math.inf
            object.__setattr__(self, name, 0.0 if value == 0 else value)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on the first invalid field."""
        _choice("structure", self.structure, tuple(STRUCTURES))
        _choice("arch", self.arch, tuple(ARCHITECTURES))
        for name in INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name.replace('_', '-')} must be an integer, got {value!r}")
        _choice("kernel", self.kernel, KERNELS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("data", self.data, tuple(DATA_SOURCES))
        _choice("precision", self.precision, PRECISIONS)
        _choice("pooling", self.pooling, POOLINGS)
        for name in ("batch_norm", "repair", "swap"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name.replace('_', '-')} must be true or false, "
                                  f"got {getattr(self, name)!r}")
        _number_in("dropout", self.dropout, 0.0, 1.0, "a number >= 0 and < 1", upper_open=True)
        _number_in("momentum", self.momentum, 0.0, 1.0, "a number >= 0 and < 1", upper_open=True)
        _number_in("weight_decay", self.weight_decay, 0.0, 1.0, "a number >= 0 and <= 1")
        _number_in("rotate", self.rotate, 0.0, 180.0, "a number of degrees >= 0 and <= 180")
        for name, top in (("hidden", 100_000), ("shift", 7)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise ConfigError(f"{name} must be an integer between 0 and {top}, got {_shown(value)}")
        if self.momentum and self.optimizer != "sgd":
            raise ConfigError("momentum is for --optimizer sgd: leave --momentum at 0 with adam")
        _positive_int("epochs", self.epochs, MAX_EPOCHS)
        _positive_int("lr_step", self.lr_step, MAX_LR_STEP)
        _positive_int("batch_size", self.batch_size, MAX_BATCH_SIZE)
        _positive_int("train_pairs", self.train_pairs, MAX_PAIRS)
        _positive_int("test_pairs", self.test_pairs, MAX_PAIRS)
        if not isinstance(self.val_pairs, int) or isinstance(self.val_pairs, bool):
            raise ConfigError(f"val-pairs must be an integer, got {self.val_pairs!r}")
        if not 0 < self.val_pairs < self.train_pairs:
            raise ConfigError(
                f"val-pairs must be between 1 and train-pairs - 1 ({self.train_pairs - 1}), "
                f"got {self.val_pairs}"
            )
        _positive_float("lr", self.lr)
        _positive_float("lr_gamma", self.lr_gamma)
        if isinstance(self.aux_weight, bool) or not (
                isinstance(self.aux_weight, (int, float)) and 0 <= self.aux_weight < 1e6):
            raise ConfigError(f"aux-weight must be a number >= 0, got {self.aux_weight!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer >= 0 and <= {MAX_SEED:,}, got {_shown(self.seed)}")

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

    @property
    def augments(self) -> bool:
        """Whether training data is augmented (re-pairing, shifts, rotations, swap-and-flip)."""
        return self.repair or bool(self.shift) or bool(self.rotate) or self.swap

    def options_label(self) -> str:
        """The extension fields that differ from their default, e.g. ``bn drop 0.3 shift 1``."""
        return options_label(self.extension_values())

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
EXTENSION_FIELDS: tuple[str, ...] = (
    "batch_norm", "dropout", "pooling", "hidden", "momentum", "weight_decay",
    "repair", "shift", "rotate", "swap",
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}
#: The number fields (floats) and the integer fields, by their type in RunConfig.
FLOAT_FIELDS: tuple[str, ...] = tuple(n for n, v in _DEFAULTS.items() if type(v) is float)
INT_FIELDS: tuple[str, ...] = tuple(n for n, v in _DEFAULTS.items() if type(v) is int)
#: Short names of the extension fields in labels.
_SHORT = {"batch_norm": "bn", "dropout": "drop", "pooling": "pool", "hidden": "fc",
          "momentum": "mom", "weight_decay": "wd", "repair": "repair", "shift": "shift",
          "rotate": "rot", "swap": "swap"}


def options_label(values: Mapping) -> str:
    """Extension values that differ from their default, shortly: ``bn drop 0.3 shift 1``."""
    parts = []
    for name in EXTENSION_FIELDS:
        value = values.get(name, _DEFAULTS[name])
        if value == _DEFAULTS[name]:
            continue
        parts.append(_SHORT[name] if value is True else f"{_SHORT[name]} {value:g}"
                     if isinstance(value, float) else f"{_SHORT[name]} {value}")
    return " ".join(parts)


def vectorizable(config: RunConfig) -> bool:
    """Whether ``core.vectorized`` trains this configuration with the very numbers of the
    one-at-a-time path. Batch normalisation (running statistics) and dropout (random masks)
    would not match the one-at-a-time path, so those configurations train one run at a time.
    Augmentation is drawn per run and epoch before the batches, identically in both paths.
    A structure without a grouped forward (``core.structures``) trains one run at a time too."""
    return not_vectorizable_reason(config) is None


def not_vectorizable_reason(config: RunConfig) -> str | None:
    """Why ``config``'s runs train one at a time, or None when they can be vectorised."""
    if _structures.get(config.structure).grouped is None:
        return f"structure {config.structure} has no grouped forward"
    if config.batch_norm or config.dropout:
        return "batch norm or dropout"
    return None


def conv_layers(arch: str) -> list[tuple[int, int, int]]:
    """(in channels, out channels, map side) of each convolution of a Table I tower (each layer
    max-pools by 2); empty for an unknown architecture."""
    layers, in_channels, size = [], 1, IMAGE_SIZE
    for out_channels in ARCHITECTURES.get(arch, ()):
        layers.append((in_channels, out_channels, size))
        in_channels, size = out_channels, size // 2
    return layers


def parameter_count(structure: str, arch: str, kernel: int) -> int:
    """Parameters of the paper's model of a setup (options beyond the paper at their default),
    from Table I alone, without torch: the sum of ``model_layers`` (``core.models`` builds the
    very modules counted here)."""
    _structures.get(structure)  # ConfigError names an unknown structure
    return sum(layer.params for layer in
               model_layers(RunConfig(structure=structure, arch=arch, kernel=kernel)))


def model_catalog() -> list[dict]:
    """Every structure x architecture x kernel with its parameter count (no torch)."""
    return [
        {"structure": structure, "arch": arch, "kernel": kernel,
         "channels": "-".join(map(str, channels)),
         "parameters": parameter_count(structure, arch, kernel)}
        for structure in STRUCTURES for arch, channels in ARCHITECTURES.items() for kernel in KERNELS
    ]


def training_cost(arch: str, kernel: int, epochs: int, train_pairs: int, val_pairs: int) -> int:
    """Convolution multiply-adds of one run's training (both images of every training pair, every
    epoch): the scheduler's estimate of a configuration's work, to start the costliest first."""
    macs = sum(cin * cout * kernel * kernel * size * size for cin, cout, size in conv_layers(arch))
    return 2 * macs * max(train_pairs - val_pairs, 0) * epochs


def lr_at(config: RunConfig, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``: ``lr`` times ``lr_gamma`` every ``lr_step`` epochs."""
    return config.lr * config.lr_gamma ** ((epoch - 1) // config.lr_step)


@dataclass(frozen=True)
class GridSpec:
    """A product of values; ``expand`` gives its configurations."""

    structures: Sequence[str] = PAPER_STRUCTURES
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
    "beyond": "the digits structure, adding one ingredient at a time (ablation, docs/beyond)",
}

#: ``pairs grid beyond``: each step adds one ingredient to the step before. First the paper's
#: best structure (shared-aux A6 k5, the paper's protocol); then ``digits`` on the same tower
#: (only the structure changes: the comparison from the digit posteriors); a LeNet-style tower
#: (A4 = conv 32/64, kernel 3, and a hidden layer of 200); the training recipe; then batch norm
#: and the augmentations one by one. The last step is the recipe of docs/beyond (chosen on
#: validation only, bench/beyond_search.py).
BEYOND_STEPS: tuple[tuple[str, dict], ...] = (
    ("the paper's best: shared-aux A6 k5", {"structure": "shared-aux", "arch": "A6", "kernel": 5}),
    ("digits: the comparison from the two digit posteriors", {"structure": "digits"}),
    ("LeNet-style tower: A4 (conv 32/64) k3, hidden layer 200",
     {"arch": "A4", "kernel": 3, "hidden": 200}),
    ("Adam (lr 0.001), batch 32, 40 epochs (lr x0.1 after 30)",
     {"optimizer": "adam", "lr": 0.001, "batch_size": 32, "epochs": 40, "lr_step": 30}),
    ("batch normalisation", {"batch_norm": True}),
    ("re-pairing the training digits each epoch", {"repair": True}),
    ("swap-and-flip", {"swap": True}),
    ("shifts of up to 1 pixel", {"shift": 1}),
    ("rotations of up to 10 degrees", {"rotate": 10.0}),
)


def beyond_steps(base: RunConfig | None = None) -> list[tuple[str, RunConfig]]:
    """The ablation of ``pairs grid beyond``: (what the step adds, its configuration)."""
    base = base or RunConfig()
    steps, changes = [], {}
    for label, step in BEYOND_STEPS:
        changes = {**changes, **step}
        steps.append((label, base.replace(**changes)))
    return steps


def preset(name: str) -> GridSpec:
    """The structure x architecture x kernel grid of a named preset (``paper``)."""
    if name == "paper":
        return GridSpec()
    raise ConfigError(f"unknown grid preset {name!r}: choose one of {', '.join(PRESETS)}")


def preset_configs(name: str, options: Mapping[str, Iterable[str] | str | None],
                   base: RunConfig | None = None) -> list[RunConfig]:
    """The configurations of a named preset. ``options`` (text, as for ``parse_grid``) apply to
    every setup: the paper grid is expanded over them; each step of ``beyond`` takes them over
    its own values (e.g. ``--epochs 2`` for a quick look)."""
    if name == "beyond":
        configs = [c for _, step in beyond_steps(base) for c in parse_grid(options, step)]
    else:
        spec = preset(name)
        configs = [c for scalar in parse_grid(options, base) for c in spec.expand(scalar)]
    return list(dict.fromkeys(configs))


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        listed = ", ".join(str(a) for a in allowed)
        raise ConfigError(f"unknown {name} {value!r}: choose one of {listed}")


def _positive_int(name: str, value, top: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
        raise ConfigError(f"{name.replace('_', '-')} must be an integer >= 1 and <= {top:,}, "
                          f"got {_shown(value)}")


def _shown(value) -> str:
    """A refused value for a message, cut short (a 4,000-digit integer is not repeated)."""
    text = repr(value) if not isinstance(value, int) or isinstance(value, bool) else str(value)
    return text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"


def _number_in(name: str, value, low: float, high: float, what: str, upper_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not low <= value <= high or (upper_open and value == high):
        raise ConfigError(f"{name.replace('_', '-')} must be {what}, got {value!r}")


def _positive_float(name: str, value) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0 < value < float("inf")):
        raise ConfigError(f"{name.replace('_', '-')} must be a number > 0, got {value!r}")


def parse_bool(text: str) -> bool:
    """``true/false``, ``on/off``, ``yes/no`` or ``1/0`` (any case)."""
    value = str(text).strip().lower()
    if value in ("true", "on", "yes", "1"):
        return True
    if value in ("false", "off", "no", "0"):
        return False
    raise ValueError(text)


#: Options whose values a grid may vary, with how to read one value from the command line.
GRID_PARSERS: dict[str, type | Callable[[str], object]] = {
    "structure": str, "arch": str, "kernel": int, "epochs": int, "lr": float, "lr_step": int,
    "lr_gamma": float, "optimizer": str, "batch_size": int, "aux_weight": float, "seed": int,
    "precision": str,
    "batch_norm": parse_bool, "dropout": float, "pooling": str, "hidden": int, "momentum": float,
    "weight_decay": float, "repair": parse_bool, "shift": int, "rotate": float, "swap": parse_bool,
}
_KINDS = {int: "an integer", float: "a number", parse_bool: "true or false (on/off, yes/no, 1/0)"}


def split_values(values: Iterable[str] | str | None, name: str = "") -> list[str]:
    """Repeated and comma-separated option values, flattened: ["A1,A2", "A3"] -> [A1, A2, A3].

    An empty value is nothing (the default); an empty item in a list (``2,,3``) is refused.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    parts = []
    for value in values:
        items = [item.strip() for item in str(value).split(",")]
        if len(items) > 1 and not all(items):
            flag = f"--{name.replace('_', '-')} " if name else ""
            raise ConfigError(f"{flag}has an empty item in {str(value)!r}: remove the extra comma")
        parts.extend(item for item in items if item)
    return parts


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
        for text in split_values(raw, name):
            try:
                value = GRID_PARSERS[name](text)
            except ValueError:
                kind = _KINDS.get(GRID_PARSERS[name], "a number")
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} must be {kind}, got {text!r}") from None
            if name == "structure":
                value = value.lower()
            elif name == "arch":
                value = value.upper()
            elif name == "pooling":
                value = value.lower()
            parsed.append(value)
        if parsed:
            axes[name] = parsed
    sizes = [len(values) for values in axes.values()]
    setups = math.prod(sizes)
    if setups > MAX_SETUPS:
        raise ConfigError(f"the product of the given values is {setups:,} setups, more than "
                          f"{MAX_SETUPS:,}: give fewer values per option (or queue it in parts)")
    spec = GridSpec(
        structures=axes.pop("structure", [base.structure]),
        archs=axes.pop("arch", [base.arch]),
        kernels=axes.pop("kernel", [base.kernel]),
        scalars=axes,
    )
    return spec.expand(base)


def check_pair_counts(source: str, train_pairs: int, test_pairs: int) -> None:
    """Raise DataError when a draw needs more digits than a pool of the source holds."""
    entry = _sources.get(source)
    for name, pairs, size in zip(("train", "test"), (train_pairs, test_pairs), entry.pool_sizes):
        if 2 * pairs > size:
            hint = f" or --data {entry.larger}" if entry.larger else ""
            raise DataError(
                f"--{name}-pairs {pairs} needs {2 * pairs} digits but the {source} {name} pool "
                f"has {size}: use at most {size // 2}{hint}"
            )


@dataclass(frozen=True)
class Layer:
    """One layer of a model as ``model_layers`` lists it (no torch needed)."""

    #: Where it sits: ``tower``, ``tower 1``, ``tower 2``, ``digit head``, ``comparison head``.
    part: str
    name: str
    #: Output shape of one example (one image inside a tower or the digit head).
    shape: tuple[int, ...]
    #: Trainable parameters (a shared tower's are counted once).
    params: int


def model_layers(config: RunConfig) -> list[Layer]:
    """The layers of ``config``'s model (``core.models``, Figs 1-3 and ``digits``) with each
    one's output shape and parameter count, walked from Table I (``conv_layers``) without
    building the model; the parameters add up to ``parameter_count(build_model(config))``."""
    kernel, bn = config.kernel, config.batch_norm

    def tower(part: str) -> list[Layer]:
        layers, channels = [], 1
        pool = "max-pool 2" if config.pooling == "max" else "avg-pool 2"
        for cin, cout, size in conv_layers(config.arch):
            layers.append(Layer(part, f"conv {kernel}x{kernel} {cin}->{cout}", (cout, size, size),
                                cin * cout * kernel * kernel + cout))
            if bn:
                layers.append(Layer(part, "batch norm", (cout, size, size), 2 * cout))
            layers.append(Layer(part, "ReLU", (cout, size, size), 0))
            layers.append(Layer(part, pool, (cout, size // 2, size // 2), 0))
            channels, size = cout, size // 2
        layers.append(Layer(part, "flatten", (channels * size * size,), 0))
        return layers

    def dense(part: str, inputs: int, outputs: int) -> list[Layer]:
        layers = [Layer(part, f"dropout {config.dropout:g}", (inputs,), 0)] if config.dropout \
            else []
        if config.hidden:
            h = config.hidden
            layers.append(Layer(part, f"linear {inputs}->{h}", (h,), inputs * h + h))
            if bn:
                layers.append(Layer(part, "batch norm", (h,), 2 * h))
            layers.append(Layer(part, "ReLU", (h,), 0))
            if config.dropout:
                layers.append(Layer(part, f"dropout {config.dropout:g}", (h,), 0))
            inputs = h
        layers.append(Layer(part, f"linear {inputs}->{outputs}", (outputs,),
                            inputs * outputs + outputs))
        return layers

    kit = _LayerKit(tower, dense, Layer)
    return _structures.get(config.structure).layers(kit)


@dataclass(frozen=True)
class _LayerKit:
    """What a structure's layer walk builds from (``core.structures.Structure.layers``)."""

    tower: Callable[[str], list[Layer]]
    dense: Callable[[str, int, int], list[Layer]]
    Layer: type[Layer]
