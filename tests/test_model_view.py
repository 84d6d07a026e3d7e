"""The layer walk of core.config.model_layers against the torch models, the CLI and the Model
screen."""

from __future__ import annotations

import pytest
import torch

from core.config import ARCHITECTURES, KERNELS, STRUCTURES, RunConfig, model_layers
from core.models import build_model, parameter_count

SETUPS = [(s, a, k) for s in STRUCTURES for a in ARCHITECTURES for k in KERNELS]


@pytest.mark.parametrize(("structure", "arch", "kernel"), SETUPS)
def test_layer_parameters_add_up_to_the_torch_model(structure, arch, kernel):
    config = RunConfig(structure=structure, arch=arch, kernel=kernel)
    layers = model_layers(config)
    assert sum(layer.params for layer in layers) == parameter_count(build_model(config))
    assert layers[-1].shape == (2,)


@pytest.mark.parametrize(
    "options", [dict(batch_norm=True), dict(hidden=50, dropout=0.3), dict(hidden=20, batch_norm=True, pooling="avg")]
)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_options_beyond_the_paper_add_up_too(structure, options):
    config = RunConfig(structure=structure, arch="A3", kernel=3, **options)
    assert sum(layer.params for layer in model_layers(config)) == parameter_count(build_model(config))


@pytest.mark.parametrize("structure", STRUCTURES)
def test_shapes_follow_the_torch_tower(structure):
    config = RunConfig(structure=structure, arch="A5", kernel=5)
    model = build_model(config)
    tower = model.tower1 if structure == "independent" else model.tower
    image = torch.zeros(1, 1, 14, 14)
    shapes = []
    for module in tower.layers:
        image = module(image)
        shapes.append(tuple(image.shape[1:]))
    part = "tower 1" if structure == "independent" else "tower"
    assert [layer.shape for layer in model_layers(config) if layer.part == part] == shapes


def test_models_layers_command_draws_the_layers_and_the_catalog_total():
    from typer.testing import CliRunner

    from core.models import model_catalog
    from tui.cli import app

    total = next(
        r["parameters"] for r in model_catalog() if (r["structure"], r["arch"], r["kernel"]) == ("shared-aux", "A5", 3)
    )
    result = CliRunner().invoke(app, ["models", "--layers", "shared-aux", "a5", "3"])
    assert result.exit_code == 0, result.output
    for part in (
        "shared tower",
        "digit head",
        "comparison head",
        "conv 3x3 16->32",
        f"total {total:,} trainable parameters",
    ):
        assert part in result.output
    result = CliRunner().invoke(app, ["models", "--layers", "independent", "A1", "5"])
    assert "tower 1" in result.output and "tower 2" in result.output


@pytest.mark.slow
def test_models_layers_bad_setup_is_one_line_error():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "models", "--layers", "shared", "A9", "3"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: unknown arch 'A9': choose one of A1, A2, A3, A4, A5, A6"]


async def test_model_view_opens_from_experiments_with_m(tmp_path):
    from test_tui_support import AUX_A1, build_fixture_db, settle, wait_for

    from core.models import build_model, parameter_count
    from tui.app import make_app
    from tui.screens.experiments import ExperimentsScreen
    from tui.screens.model import ModelScreen

    db = build_fixture_db(tmp_path / "runs.db")
    app = make_app(db, workers=2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, ExperimentsScreen)
        app.selected_config = AUX_A1.id
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelScreen))
        text = str(app.screen.query_one("#model-diagram").render())
        total = parameter_count(build_model(AUX_A1))
        assert "shared-aux A1 k3" in text and "digit head" in text
        assert f"total {total:,} trainable parameters" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen))


def _model_view():
    from test_tui_snapshots import shown
    from test_tui_support import AUX_A1, wait_for

    async def run_before(pilot) -> None:
        await shown(None)(pilot)
        pilot.app.selected_config = AUX_A1.id
        await pilot.press("m")
        await wait_for(pilot, lambda: pilot.app.screen.id == "model")
        await pilot.pause(0.2)

    return run_before


def test_model_view_at_80x24(snap_compare, tmp_path, monkeypatch):
    from test_tui_support import build_fixture_db

    from tui.app import make_app

    monkeypatch.chdir(tmp_path)
    build_fixture_db(tmp_path / "runs.db")
    assert snap_compare(make_app("runs.db", workers=2), terminal_size=(80, 24), run_before=_model_view())


def test_model_view_of_two_towers_at_160x50(snap_compare, tmp_path, monkeypatch):
    from test_tui_snapshots import shown
    from test_tui_support import INDEPENDENT_A1, build_fixture_db, wait_for

    from tui.app import make_app

    monkeypatch.chdir(tmp_path)
    build_fixture_db(tmp_path / "runs.db")

    async def run_before(pilot) -> None:
        await shown(None)(pilot)
        pilot.app.selected_config = INDEPENDENT_A1.id
        await pilot.press("m")
        await wait_for(pilot, lambda: pilot.app.screen.id == "model")
        await pilot.pause(0.2)

    assert snap_compare(make_app("runs.db", workers=2), terminal_size=(160, 50), run_before=run_before)
