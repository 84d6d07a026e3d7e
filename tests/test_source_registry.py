"""A data source registered at run time (the recipe of docs/architecture.md, "How to add a data
source") is accepted by validation, checked against its pool sizes and trains on both paths."""

import numpy as np
import pytest

from core import sources
from core.config import DATA_SOURCES, RunConfig, check_pair_counts
from core.data import DigitPool, digit_pools, draw_pairs, load_sample_pools
from core.errors import ConfigError, DataError
from core.train import run_training
from core.vectorized import run_group
from tests.conftest import tiny


# Step 1: the loader (in core/data.py for a real one): (data_dir) -> (training pool, test pool)
# of 28x28 uint8 images and their classes. Here: the embedded sample, mirrored left to right,
# 600 digits per pool.
def load_mirrored(data_dir):
    train, test = load_sample_pools()
    return tuple(DigitPool(np.ascontiguousarray(p.images[:600, :, ::-1]), p.classes[:600]) for p in (train, test))


@pytest.fixture
def mirrored():
    # Step 2: the registry entry (in core/sources.py).
    entry = sources.register(
        sources.DataSource(
            "mirrored",
            load_mirrored,
            pool_sizes=(600, 600),
            description="the sample, mirrored",
            report="the embedded sample mirrored left to right",
            larger="sample",
        )
    )
    yield entry
    sources.unregister(entry.name)


def test_a_registered_source_is_a_source_everywhere(mirrored):
    assert "mirrored" in DATA_SOURCES and DATA_SOURCES[-1] == "mirrored"
    config = RunConfig(data="mirrored", train_pairs=300, val_pairs=30, test_pairs=300)
    assert config.id != config.replace(data="sample").id
    assert "mirrored (the sample, mirrored)" in sources.help_text()
    with pytest.raises(DataError, match="the mirrored train pool has 600: use at most 300 or --data sample"):
        check_pair_counts("mirrored", 301, 10)
    train, test = digit_pools("mirrored")
    assert train.images.shape == (600, 28, 28) and len(test.classes) == 600
    pairs = draw_pairs(0, 0, 100, 10, 100, source="mirrored")
    plain = draw_pairs(0, 0, 100, 10, 100, source="sample")
    assert pairs.train.x.shape == plain.train.x.shape and not np.allclose(pairs.train.x, plain.train.x)


def test_the_registered_source_trains_the_same_on_both_paths(mirrored):
    config = tiny(data="mirrored")
    one: list = []
    tests = [run_training(config, rep, on_epoch=lambda m, _: one.append(m)) for rep in (0, 1)]
    both: dict = {}
    group = run_group(config, [0, 1], on_epoch=lambda rep, m, _: both.setdefault(rep, []).append(m))
    for rep, test in zip((0, 1), tests):
        assert len(both[rep]) == config.epochs
        for a, b in zip(one[rep * config.epochs : (rep + 1) * config.epochs], both[rep]):
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
            assert a.val_acc == pytest.approx(b.val_acc)
        assert test.test_acc == pytest.approx(group[rep].test_acc)


def test_an_unregistered_source_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown data 'mirrored': choose one of sample, mnist"):
        RunConfig(data="mirrored")
    with pytest.raises(DataError, match="unknown data source 'mirrored': choose one of sample, mnist"):
        digit_pools("mirrored")


def test_the_registry_is_torch_free():
    import subprocess
    import sys

    code = "import sys, core.sources, core.config; print('torch' in sys.modules, 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == [
        "False",
        "False",
    ]
