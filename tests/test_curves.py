"""Figs 4-6: per-epoch mean/std curves from a fixture database, the plot command and figures."""

import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from core.config import ConfigError
from core.curves import epoch_curves, find_config
from tests.conftest import tiny
from tests.report_fixtures import add_known_curves, add_runs, curve_values
from tui.cli import app

runner = CliRunner()


@pytest.fixture
def curves_db(store):
    config = tiny(structure="shared", arch="A1", kernel=3, epochs=3)
    add_known_curves(store, config)
    return store, config


def test_epoch_curves_mean_and_sample_std(curves_db):
    store, config = curves_db
    curves = epoch_curves(store, config.id)
    assert curves["epochs"] == [1, 2, 3] and curves["reps"] == [0, 1, 2] and curves["done"] == 3
    assert curves["label"] == "shared A1 k3"
    for metric, std in (("train_loss", 0.1), ("val_loss", 0.2), ("val_acc", 0.02)):
        data = curves["metrics"][metric]
        assert data["n"] == [3, 3, 3]
        assert data["series"][2] == pytest.approx([curve_values(e, 2)[metric] for e in (1, 2, 3)])
        assert data["mean"] == pytest.approx([curve_values(e, 1)[metric] for e in (1, 2, 3)])
        assert data["std"] == pytest.approx([std] * 3)  # ddof=1 over the 3 reps


def test_unequal_lengths_and_failed_runs(store):
    config = tiny(epochs=3)
    add_runs(store, config, [{1: curve_values(1, 0), 2: curve_values(2, 0)}, {1: curve_values(1, 1)}], status="running")
    other = tiny(epochs=3, seed=5)
    add_runs(store, other, [{1: curve_values(1, 0)}], status="failed")
    curves = epoch_curves(store, config.id)
    assert curves["epochs"] == [1, 2] and curves["done"] == 0
    assert curves["metrics"]["val_acc"]["n"] == [2, 1]
    assert math.isnan(curves["metrics"]["val_acc"]["std"][1])
    assert epoch_curves(store, config.id, done_only=True)["epochs"] == []
    assert epoch_curves(store, other.id)["reps"] == []


def test_find_config_prefers_most_done_runs(store):
    a, b = tiny(epochs=3), tiny(epochs=3, lr=0.05)
    add_known_curves(store, a, reps=2)
    add_known_curves(store, b, reps=3)
    assert find_config(store, "SHARED", "a1", "3") == b.id
    with pytest.raises(ConfigError, match="no runs of shared A2 k5 in .*pairs run"):
        find_config(store, "shared", "A2", 5)
    with pytest.raises(ConfigError, match="unknown kernel 7"):
        find_config(store, "shared", "A1", 7)


def test_plot_in_terminal(curves_db, tmp_path):
    store, _ = curves_db
    result = runner.invoke(
        app, ["plot", "--structure", "shared", "--arch", "A1", "--kernel", "3", "--db", str(store.path)]
    )
    assert result.exit_code == 0, result.output
    for title in ("Train loss", "Validation loss", "Validation accuracy (%)", "mean", "± std"):
        assert title in result.output
    assert "shared A1 k3: mean ± std over 3 run(s), 3 done" in result.output


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_writes_a_figure(curves_db, tmp_path, suffix, magic):
    store, _ = curves_db
    path = tmp_path / f"fig{suffix}"
    result = runner.invoke(
        app,
        [
            "plot",
            "--structure",
            "shared",
            "--arch",
            "A1",
            "--kernel",
            "3",
            "--output",
            str(path),
            "--db",
            str(store.path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert path.read_bytes().startswith(magic) and path.stat().st_size > 1000


@pytest.mark.slow
def test_plot_bad_input_is_one_line_error(curves_db, tmp_path):
    store, _ = curves_db
    result = runner.invoke(app, ["plot", "--arch", "A6", "--db", str(store.path)])
    assert isinstance(result.exception, ConfigError)
    result = runner.invoke(
        app, ["plot", "--arch", "A1", "--kernel", "3", "--output", str(tmp_path / "fig.jpg"), "--db", str(store.path)]
    )
    assert isinstance(result.exception, ConfigError) and ".png" in str(result.exception)
    done = subprocess.run(
        [sys.executable, "-c", "from tui.cli import main; main()", "plot", "--arch", "A6", "--db", str(store.path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: no runs of shared A6 k5 in {store.path}: queue them with pairs run "
        "--structure shared --arch A6 --kernel 5 (or pairs grid paper)"
    ]


def test_plot_without_database(tmp_path):
    result = runner.invoke(app, ["plot", "--db", str(tmp_path / "none.db")])
    assert type(result.exception).__name__ == "StoreError"


@pytest.mark.slow
def test_curves_and_reports_stay_light():
    code = (
        "import sys, core.curves, core.compare, core.reproduction; "
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert not loaded & {"torch", "matplotlib", "plotext", "textual", "typer", "rich"}
