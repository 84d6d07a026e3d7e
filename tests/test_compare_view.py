"""Comparing setups: marks on Experiments (Space), the Compare screen (marked setups or the best
of each structure, one protocol unless asked), ``pairs plot --compare``, and the paper beside
the Tables screen's cells (``v``). Snapshots at 80x24 and 160x50."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from test_tui_support import wait_for
from typer.testing import CliRunner

from core import api
from core.config import ConfigError, RunConfig
from core.overlay import overlay_curves, overlay_legend, resolve_setups
from core.stats import best_setups, setup_rows
from tests.report_fixtures import add_runs
from tui.app import make_app
from tui.cli import app as cli_app
from tui.screens.compare import CompareScreen
from tui.screens.tables import TablesScreen
from tui.widgets.overlay import OverlayPlot

EPOCHS = 30  # the paper's protocol: its numbers are compared without a caveat
#: (structure, arch, kernel) -> (final val accuracy, final val loss, final train loss)
SETUPS = {
    ("independent", "A1", 5): (0.80, 0.46, 0.080),
    ("independent", "A3", 5): (0.77, 0.52, 0.120),
    ("shared", "A5", 5): (0.86, 0.60, 0.006),
    ("shared", "A2", 5): (0.82, 0.55, 0.030),
    ("shared-aux", "A5", 3): (0.90, 0.30, 0.040),
    ("shared-aux", "A1", 3): (0.84, 0.42, 0.090),
}
REPS = 3
#: The best setup of each structure on validation accuracy.
BEST = {"independent": ("A1", 5), "shared": ("A5", 5), "shared-aux": ("A5", 3)}


def curve(epoch: int, rep: int, final: tuple[float, float, float]) -> dict:
    """Smooth made-up curves reaching ``final`` at the last epoch, the reps apart by a known
    spread, the learning-rate step (after epoch 15) visible as a bend."""
    acc, val, train = final
    shape = math.exp(-(epoch - 1) / 6) - math.exp(-(EPOCHS - 1) / 6)
    offset = (rep - 1) * 0.025
    return {
        "val_acc": acc - 0.3 * shape + offset,
        "val_loss": val + 0.4 * shape + offset * 2,
        "train_loss": train + 0.6 * shape + abs(offset),
    }


def build_compare_db(path, other_protocol: bool = False):
    """Six setups of the paper's protocol (two per structure), 3 done runs of 30 epochs each;
    ``other_protocol`` adds shared A5 k5 trained with batch size 32 (another protocol)."""
    with api.open_store(path) as store:
        for (structure, arch, kernel), final in SETUPS.items():
            config = RunConfig(structure=structure, arch=arch, kernel=kernel)
            add_runs(
                store,
                config,
                [{e: curve(e, r, final) for e in range(1, EPOCHS + 1)} for r in range(REPS)],
                [final[0] - 0.01 + 0.01 * r for r in range(REPS)],
            )
        if other_protocol:
            config = RunConfig(structure="shared", arch="A5", kernel=5, batch_size=32)
            add_runs(
                store, config, [{e: curve(e, r, (0.75, 0.7, 0.2)) for e in range(1, EPOCHS + 1)} for r in range(REPS)]
            )
        with store.transaction() as db:
            db.execute("UPDATE configs SET created_at = 1700000000")
            db.execute("UPDATE runs SET queued_at = 1700000000")
    return path


def config_id(structure: str, arch: str, kernel: int, **fields) -> str:
    return RunConfig(structure=structure, arch=arch, kernel=kernel, **fields).id


@pytest.fixture
def compare_db(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return build_compare_db(tmp_path / "runs.db")


async def experiments_ready(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.screen.id == "experiments" and app.screen.loads >= 1)


async def compare_shows(pilot, count: int):
    app = pilot.app
    await wait_for(
        pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loads and len(app.screen.shown) == count
    )
    await pilot.pause(0.1)
    return app.screen


# -- marking and comparing (Pilot) ----------------------------------------------------------


async def test_space_marks_and_unmarks_the_highlighted_row(compare_db):
    console = make_app(compare_db, workers=2)
    async with console.run_test(size=(120, 40)) as pilot:
        await experiments_ready(pilot)
        table = console.screen.query_one("#exp-table")
        first = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        await pilot.press("space")
        assert console.marked_configs == [first]
        assert str(table.get_cell(first, "setup")).endswith(" ●")
        await pilot.press("down", "space")
        second = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        assert console.marked_configs == [first, second]
        await pilot.press("up", "space")  # again: unmarked
        assert console.marked_configs == [second]
        assert "●" not in str(table.get_cell(first, "setup"))
        assert str(table.get_cell(second, "setup")).endswith(" ●")


async def test_compare_shows_the_marked_setups_then_the_best_of_each_structure(compare_db):
    console = make_app(compare_db, workers=2)
    async with console.run_test(size=(160, 50)) as pilot:
        await experiments_ready(pilot)
        await pilot.press("space", "down", "space")
        marked = list(console.marked_configs)
        await pilot.press("c")
        screen = await compare_shows(pilot, 2)
        assert screen.source == "marked"
        assert [c["config_id"] for c in screen.shown] == marked
        plot = screen.query_one("#compare-val_acc", OverlayPlot)
        assert len(plot.overlaid) == 2
        await pilot.press("b")
        screen = await compare_shows(pilot, 3)
        with api.open_store(compare_db, create=False) as store:
            chosen = [b.row.config_id for b in best_setups(store, setup_rows(store)).best]
        assert [c["config_id"] for c in screen.shown] == chosen
        assert chosen == [config_id(s, *BEST[s]) for s in ("independent", "shared", "shared-aux")]
        legend = str(screen.query_one("#compare-legend").render())
        for structure, (arch, kernel) in BEST.items():
            assert f"{structure} {arch} k{kernel}  n=3" in legend
        assert "acc % 90.0±2.5" in legend  # shared-aux A5 k3: the final mean ± std in percent
        top = str(screen.query_one("#compare-top").render())
        assert "Best of each structure" in top and "protocol paper" in top
        await pilot.press("escape")
        await wait_for(pilot, lambda: console.screen.id == "experiments")


async def test_compare_with_no_marks_opens_on_the_best(compare_db):
    console = make_app(compare_db, workers=2)
    async with console.run_test(size=(120, 40)) as pilot:
        await experiments_ready(pilot)
        await pilot.press("c")
        screen = await compare_shows(pilot, 3)
        assert screen.source == "best"
        await pilot.press("b")  # marked: none yet, and the screen says how to mark
        await wait_for(pilot, lambda: screen.source == "marked" and not screen.shown)
        await pilot.pause(0.1)
        assert "Space" in str(screen.query_one("#compare-top").render())


async def test_compare_overlays_one_protocol_unless_asked(tmp_path):
    db = build_compare_db(tmp_path / "runs.db", other_protocol=True)
    console = make_app(db, workers=2)
    other = config_id("shared", "A5", 5, batch_size=32)
    async with console.run_test(size=(160, 50)) as pilot:
        await experiments_ready(pilot)
        console.marked_configs[:] = [config_id("shared", "A5", 5), other, config_id("independent", "A1", 5)]
        await pilot.press("c")
        screen = await compare_shows(pilot, 2)
        assert {c["protocol"].label for c in screen.shown} == {"paper"}
        assert "1 of other protocols not shown" in str(screen.query_one("#compare-top").render())
        await pilot.press("p")  # the next protocol: the batch-32 one alone
        screen = await compare_shows(pilot, 1)
        assert screen.shown[0]["config_id"] == other
        await pilot.press("a")  # every protocol: the legend says which is which
        screen = await compare_shows(pilot, 3)
        legend = str(screen.query_one("#compare-legend").render())
        assert "protocol paper" in legend and "protocol 30ep sgd b32" in legend
        assert "2 protocols overlaid" in str(screen.query_one("#compare-top").render())


async def test_l_puts_the_compared_losses_on_a_log_scale(compare_db):
    console = make_app(compare_db, workers=2)
    async with console.run_test(size=(120, 40)) as pilot:
        await experiments_ready(pilot)
        await pilot.press("c")
        screen = await compare_shows(pilot, 3)
        await pilot.press("l")
        assert screen.query_one("#compare-train_loss", OverlayPlot).log_scale
        assert not screen.query_one("#compare-val_acc", OverlayPlot).log_scale


async def test_compare_footer_fits_80_columns(compare_db):
    console = make_app(compare_db, workers=2)
    async with console.run_test(size=(80, 24)) as pilot:
        await experiments_ready(pilot)
        await pilot.press("5")
        await compare_shows(pilot, 0)
        keys = list(console.screen.query_one("Footer").query("FooterKey"))
        assert keys and keys[-1].region.right <= 80 and keys[-1].region.width > 0
        assert "Quit" in str(keys[-1].render())


# -- the paper on the Tables screen ---------------------------------------------------------


async def test_v_shows_the_paper_beside_each_cell_and_the_best(compare_db):
    console = make_app(compare_db, workers=2)
    async with console.run_test(size=(160, 50)) as pilot:
        await experiments_ready(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(console.screen, TablesScreen) and console.screen.loads >= 1)
        screen = console.screen
        table = screen.query_one("#table-shared")
        assert "Paper" not in [str(c.label) for c in table.columns.values()]
        assert not screen.query_one("#tables-paper").display
        await pilot.press("v")
        await pilot.pause()
        labels = [str(c.label) for c in table.columns.values()]
        assert labels.count("Paper") == 3 and labels.count("Δ") == 3
        row = [str(c) for c in table.get_row_at(0)]  # shared A2 k5 (the paper's order)
        assert row[:2] == ["A2", "5"] and row[3].startswith("0.") and row[4].endswith("σ")
        line = str(screen.query_one("#tables-paper").render())
        assert "of 6 cells with done runs within 2σ" in line
        assert "30 of the paper's 36 cells have no done runs here" in line
        assert "caveat" not in line  # the paper's protocol
        best = [str(c.label) for c in screen.query_one("#table-best").columns.values()]
        assert "Paper's best" in best and "Paper Test Acc. (%)" in best
        await pilot.press("v")
        await pilot.pause()
        assert "Paper" not in [str(c.label) for c in table.columns.values()]


async def test_v_on_another_protocol_carries_the_caveat(tmp_path):
    db = build_compare_db(tmp_path / "runs.db", other_protocol=True)
    console = make_app(db, workers=2)
    async with console.run_test(size=(160, 50)) as pilot:
        await experiments_ready(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(console.screen, TablesScreen) and console.screen.loads >= 1)
        await pilot.press("v", "p")
        await pilot.pause()
        line = str(console.screen.query_one("#tables-paper").render())
        assert "caveat: these runs use protocol 30ep sgd b32" in line


# -- core and the CLI -----------------------------------------------------------------------


def test_legend_gives_n_and_the_final_mean_and_std(compare_db):
    with api.open_store(compare_db, create=False) as store:
        overlaid = overlay_curves(store, [config_id("shared", "A5", 5)])
    (entry,) = overlay_legend(overlaid)
    assert (entry.label, entry.n, entry.epoch) == ("shared A5 k5", 3, 30)
    assert entry.finals == {"train_loss": "0.023±0.014", "val_loss": "0.600±0.050", "val_acc": "86.0±2.5"}
    assert entry.protocol == ""  # one protocol: not repeated per entry


def plot(*args):
    return CliRunner().invoke(cli_app, ["plot", *map(str, args)])


def test_plot_compare_best_in_the_terminal(compare_db):
    result = plot("--compare", "best", "--db", compare_db)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "3 setups compared (protocol paper): mean ± std over runs"
    legend = [line for line in lines if line.startswith("━━ ")]
    assert [line.split("  ")[0] for line in legend] == [
        "━━ independent A1 k5",
        "━━ shared A5 k5",
        "━━ shared-aux A5 k3",
    ]
    assert "val acc % 90.0±2.5" in legend[2]
    plot_area = lines[1 : lines.index(legend[0])]
    assert not any("━━" in line or "n=3" in line for line in plot_area)  # legend outside
    assert "Train loss" in result.output and "Validation accuracy (%)" in result.output


def test_plot_compare_setups_to_a_png(compare_db, tmp_path):
    out = tmp_path / "compare.png"
    result = plot("--compare", "shared:A5:5", "--compare", "independent:A1:5", "-o", out, "--db", compare_db)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "shared A5 k5, independent A1 k5" in result.output


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("shared", "is not a setup: write STRUCTURE:ARCH:KERNEL"),
        ("shared:A9:5", "--compare shared:A9:5: unknown arch 'A9'"),
        ("shared:A5:x", "--kernel must be an integer"),
        ("shared:A6:3", "no runs of shared A6 k3 in"),
    ],
)
def test_plot_compare_bad_setups_are_one_line_errors(compare_db, spec, words):
    result = plot("--compare", spec, "--db", compare_db)
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert words in message and "\n" not in message


def test_plot_compare_several_protocols_needs_a_choice(tmp_path):
    db = build_compare_db(tmp_path / "runs.db", other_protocol=True)
    result = plot("--compare", "shared:A5:5", "--compare", "independent:A1:5", "--db", db)
    message = str(result.exception)
    assert isinstance(result.exception, ConfigError)
    assert "2 protocols" in message and "--protocol" in message and "--across-protocols" in message
    chosen = plot("--compare", "shared:A5:5", "--batch-size", "32", "--db", db)
    assert chosen.exit_code == 0, chosen.output
    assert chosen.output.startswith("1 setups compared (protocol 30ep sgd b32")
    both = plot("--compare", "shared:A5:5", "--across-protocols", "--db", db)
    assert both.exit_code == 0, both.output
    assert "· protocol paper" in both.output and "· protocol 30ep sgd b32" in both.output
    with api.open_store(db, create=False) as store:  # best: per protocol, so two protocols
        with pytest.raises(ConfigError, match="2 protocols"):
            resolve_setups(store, ["best"])
        assert len(resolve_setups(store, ["best"], across_protocols=True)) == 4


def test_across_protocols_needs_compare(compare_db):
    result = plot("--across-protocols", "--db", compare_db)
    assert isinstance(result.exception, ConfigError)
    assert "--across-protocols is for --compare" in str(result.exception)


@pytest.mark.slow
def test_the_compare_screen_never_imports_torch():
    code = "import sys, tui.app, tui.screens.compare, tui.screens.tables, core.overlay; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.slow
def test_plot_compare_error_is_one_line_on_stderr(compare_db):
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "plot", "--compare", "shared:A6:3", "--db", str(compare_db)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --compare shared:A6:3")
    assert "Traceback" not in done.stderr


# -- snapshots ------------------------------------------------------------------------------


def _compare_best(pilot_size):
    async def run_before(pilot) -> None:
        await experiments_ready(pilot)
        await pilot.press("c")
        await compare_shows(pilot, 3)
        await pilot.pause(0.3)

    return run_before


async def _tables_with_paper(pilot) -> None:
    app = pilot.app
    await experiments_ready(pilot)
    await pilot.press("4")
    await wait_for(pilot, lambda: isinstance(app.screen, TablesScreen) and app.screen.loads >= 1)
    app.screen.query_one("#tables-tabs").active = "tab-shared"
    await pilot.press("v")
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_compare_three_structures_snapshot(snap_compare, compare_db, size):
    assert snap_compare(make_app("runs.db", workers=2), terminal_size=size, run_before=_compare_best(size))


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_tables_with_the_paper_snapshot(snap_compare, compare_db, size):
    assert snap_compare(make_app("runs.db", workers=2), terminal_size=size, run_before=_tables_with_paper)
