"""Shared fixtures: a fresh database and tiny configurations (2 epochs, 100 pairs)."""

from __future__ import annotations

import pytest

from core.api import open_store
from core.config import RunConfig

TINY = dict(epochs=2, train_pairs=100, val_pairs=10, test_pairs=100, arch="A1", kernel=3)


def tiny(**changes) -> RunConfig:
    """A configuration small enough to train in well under a second."""
    return RunConfig(**{**TINY, **changes})


@pytest.fixture
def fresh_db(tmp_path):
    """Path of a new, empty pairs database."""
    path = tmp_path / "runs.db"
    open_store(path).close()
    return path


@pytest.fixture
def store(fresh_db):
    with open_store(fresh_db) as s:
        yield s
