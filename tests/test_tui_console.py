"""The Experiments table's result columns, its keys and header, the Queue screen's focus and
boxes, and footers that fit 80 columns; snapshots of Experiments with results."""

from __future__ import annotations

import pytest
from rich.text import Text
from test_tui_snapshots import app, shown  # noqa: F401  (the app fixture)
from test_tui_support import INDEPENDENT_A1, SHARED_A2, build_fixture_db, settle, wait_for
from textual.widgets import DataTable, SelectionList

from tui.app import make_app
from tui.screens.experiments import ExperimentsScreen
from tui.screens.plots import PlotsScreen
from tui.screens.queue import QueueScreen
from tui.screens.tables import TablesScreen


def plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def column(table: DataTable, key: str) -> list[str]:
    return [plain(table.get_cell(row, key)) for row in table.rows]


async def test_result_columns_show_mean_std_of_done_runs_and_sort(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    console = make_app(db, workers=2)
    async with console.run_test(size=(160, 40)) as pilot:
        screen = await settle(pilot, ExperimentsScreen)
        table = screen.query_one("#exp-table", DataTable)
        rows = {row.value: i for i, row in enumerate(table.rows)}
        val, test = column(table, "val_acc"), column(table, "test_acc")
        # shared A2: final val acc 0.90/0.92/0.94, test 0.91/0.93/0.95 (3 done)
        assert val[rows[SHARED_A2.id]] == "92.0±2.0" and test[rows[SHARED_A2.id]] == "93.0±2.0"
        # independent A1: 2 of 3 done (the running one is left out)
        assert val[rows[INDEPENDENT_A1.id]] == "71.0±1.4"
        screen.sort_key, screen.sort_reverse = "test_acc", True
        screen.fill_table()
        await pilot.pause()
        assert column(table, "test_acc") == ["93.0±2.0", "87.0±1.4", "83.0±2.0", "72.0±1.4"]
        assert plain(table.columns["test_acc"].label).endswith("▼")


async def test_sort_arrow_fits_every_header_and_end_goes_to_the_last_row(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    console = make_app(db, workers=2)
    async with console.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot, ExperimentsScreen)
        table = screen.query_one("#exp-table", DataTable)
        for _ in range(3):  # the narrow Run column
            await pilot.press("s")
        await pilot.pause()
        key = screen.sort_key
        label = plain(table.columns[key].label)
        assert label.endswith(("▲", "▼"))
        assert table.columns[key].get_render_width(table) >= len(label) + 2 * table.cell_padding
        await pilot.press("home")
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == table.row_count - 1
        assert table.scroll_x == 0 and table.fixed_columns == 1


async def test_queue_has_the_focus_on_entry_and_boxes_differ_by_glyph(tmp_path):
    db = build_fixture_db(tmp_path / "runs.db")
    console = make_app(db, workers=2)
    async with console.run_test(size=(80, 24)) as pilot:
        await settle(pilot, ExperimentsScreen)
        await pilot.press("2")
        screen = await settle(pilot, QueueScreen)
        await wait_for(pilot, lambda: console.focused is not None)
        structures = screen.query_one("#q-structure", SelectionList)
        assert console.focused is structures
        await pilot.press("space")  # toggles the first structure, not a scroll
        await pilot.pause()
        assert "independent" in structures.selected
        boxes = [structures.render_line(y).text[:3] for y in range(4)]
        assert boxes == ["▐✓▌", "▐✓▌", "▐ ▌", "▐ ▌"]  # independent, shared chosen

        def background(widget, y: int):
            return list(widget.render_line(y))[-1].style.bgcolor

        archs = screen.query_one("#q-arch", SelectionList)  # not focused: no row stands out
        assert background(archs, 0) == background(archs, 1)
        assert background(structures, 0) != background(structures, 1)  # the cursor, focused


@pytest.mark.parametrize("key", ["1", "2", "3", "4"])
async def test_footers_fit_80_columns(tmp_path, key):
    screen_type = {"1": ExperimentsScreen, "2": QueueScreen, "3": PlotsScreen, "4": TablesScreen}[key]
    db = build_fixture_db(tmp_path / "runs.db")
    console = make_app(db, workers=2)
    async with console.run_test(size=(80, 24)) as pilot:
        await settle(pilot, ExperimentsScreen)
        await pilot.press(key)
        await settle(pilot, screen_type)

        def footer_keys():
            return list(console.screen.query_one("Footer").query("FooterKey"))

        # laid out (a busy machine may take longer than any fixed pause)
        await wait_for(pilot, lambda: footer_keys() and all(k.region.width > 0 for k in footer_keys()))
        keys = footer_keys()
        assert keys and sum(k.outer_size.width for k in keys) <= 80
        assert keys[-1].region.right <= 80 and keys[-1].region.width > 0


def test_experiments_with_results_at_80x24(snap_compare, app):  # noqa: F811
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown(None))


def test_experiments_with_results_at_160x50(snap_compare, app):  # noqa: F811
    assert snap_compare(app, terminal_size=(160, 50), run_before=shown(None))
