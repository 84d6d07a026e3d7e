"""Curves worth reading: 1-2-5 ticks, the shared plotext drawing (TUI and ``pairs plot``), the
log-scale toggle, the learning-rate step, and snapshots of the Plots screen."""

from __future__ import annotations

import math

import pytest
from test_tui_snapshots import app, shown  # noqa: F401  (the app fixture)
from test_tui_support import SHARED_A1, build_fixture_db, settle, wait_for
from typer.testing import CliRunner

from core.curves import (
    epoch_curves,
    legend,
    log_ticks,
    nice_ticks,
    terminal_plot,
    tick_labels,
    y_axis,
)
from tests.conftest import tiny
from tests.report_fixtures import add_known_curves
from tui.app import make_app
from tui.cli import app as cli_app
from tui.screens.plots import PlotsScreen
from tui.widgets.curves import CurvePlot


def steps(ticks: list[float]) -> set[float]:
    return {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}


@pytest.mark.parametrize(
    ("low", "high"), [(51.9, 88.4), (0.31, 0.72), (0.05, 2.3), (70, 70), (0.0012, 0.0019), (-3, 250)]
)
def test_ticks_are_even_1_2_5_steps_covering_the_data(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    (step,) = steps(ticks)  # one step: evenly spaced
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5)
    assert 3 <= len(ticks) <= 8
    labels = tick_labels(ticks)
    assert len(set(labels)) == len(labels)  # enough decimals to tell them apart


def test_uneven_ticks_of_the_issue_become_even():
    assert tick_labels(nice_ticks(51.9, 88.4)) == ["50", "60", "70", "80", "90"]


def test_log_ticks_are_1_2_5_per_decade():
    assert log_ticks(0.05, 2.3) == pytest.approx([0.05, 0.1, 0.2, 0.5, 1, 2, 5])
    wide = log_ticks(1e-4, 3)
    assert wide[0] <= 1e-4 and wide[-1] >= 3 and len(wide) <= 8


@pytest.mark.parametrize(("low", "high"), [(51.9, 88.4), (0.31, 0.95), (0.002, 2.3), (70, 70), (-3, 250)])
@pytest.mark.parametrize("log", [False, True])
def test_y_axis_puts_at_most_one_tick_every_other_row(low, high, log):
    """The one y axis of ``pairs plot``, the Plots and the Compare screens: from 3 rows up the
    ticks cover the data, never on consecutive rows, evenly apart on a linear axis."""
    for rows in range(3, 45):
        axis = y_axis([low, high], rows, log=log and low > 0)
        n = len(axis.positions)
        assert 2 <= n <= 6 and len(axis.labels) == n and len(set(axis.labels)) == n
        assert axis.low <= axis.place([low])[0] + 1e-9 and axis.high >= axis.place([high])[0] - 1e-9
        if not axis.floor:
            assert len(steps(axis.positions)) == 1
            assert (rows - 1) // (n - 1) >= 2


@pytest.fixture
def stepped(store):
    """Three runs of 6 epochs, the learning rate divided by 10 after epoch 3."""
    config = tiny(epochs=6, lr_step=3)
    add_known_curves(store, config)
    return store, config


def test_terminal_plot_has_its_legend_below_and_marks_the_lr_step(stepped):
    store, config = stepped
    text = terminal_plot(epoch_curves(store, config.id), width=100, height=45, color=False)
    lines = text.rstrip("\n").splitlines()
    assert lines[-1].startswith("━━ mean of 3 run(s)")
    assert "lr ×0.1 after epoch 3" in lines[-1]
    plot_lines = lines[1:-1]
    assert not any("mean" in line for line in plot_lines)  # nothing over the curves
    assert any("⠉" in line or "⣀" in line for line in plot_lines)  # braille lines, not blocks
    assert not any("█" in line or "▄" in line for line in plot_lines)
    # the lr step: a vertical line inside each panel's frame, between epochs 3 and 4
    inside = [line for line in plot_lines if line.count("│") + line.count("┤") >= 3]
    assert len(inside) >= 9


def test_legend_omits_the_lr_step_when_there_is_none(stepped):
    store, _ = stepped
    other = tiny(epochs=2)
    add_known_curves(store, other)
    words = [w for _, w, _ in legend(epoch_curves(store, other.id))]
    assert words == ["mean of 3 run(s)", "mean ± std", "each run"]


def test_plot_log_option_labels_the_log_panels(stepped):
    store, _ = stepped
    args = ["plot", "--structure", "shared", "--arch", "A1", "--kernel", "3", "--db", str(store.path)]
    result = CliRunner().invoke(cli_app, [*args, "--log"])
    assert result.exit_code == 0, result.output
    assert "Train loss (log)" in result.output and "Validation loss (log)" in result.output
    assert "Validation accuracy (%) (log)" not in result.output
    assert "(log)" not in CliRunner().invoke(cli_app, args).output


async def test_l_toggles_the_losses_log_scale(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    console = make_app(db, workers=2)
    async with console.run_test(size=(120, 40)) as pilot:
        console.selected_config = SHARED_A1.id
        await pilot.press("3")
        screen = await settle(pilot, PlotsScreen)
        train = screen.query_one("#plot-train_loss", CurvePlot)
        accuracy = screen.query_one("#plot-val_acc", CurvePlot)
        await wait_for(pilot, lambda: len(train.series) == 3)
        assert "Train loss (log)" not in str(train.render())
        await pilot.press("l")
        await pilot.pause()
        assert train.log_scale and screen.query_one("#plot-val_loss", CurvePlot).log_scale
        assert not accuracy.log_scale  # accuracies stay linear
        assert "Train loss (log)" in str(train.render())
        legend_line = str(screen.query_one("#plots-legend").render())
        assert "mean of 3 run(s)" in legend_line and "each run" in legend_line
        await pilot.press("l")
        await pilot.pause()
        assert not train.log_scale and "(log)" not in str(train.render())


def _plots_ready(screen) -> bool:
    return screen.curves is not None


def test_plots_screen_at_80x24(snap_compare, app):  # noqa: F811
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown("3", _plots_ready))


def test_plots_screen_at_160x50(snap_compare, app):  # noqa: F811
    assert snap_compare(app, terminal_size=(160, 50), run_before=shown("3", _plots_ready))
