"""Snapshots (pytest-textual-snapshot) of the main screens on the fixture database.

The fixture's timestamps are fixed and the app is started from the database's folder, so the
pictures do not depend on the day or the temporary path. Update after a deliberate change with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import pytest
from test_tui_support import build_fixture_db, wait_for

from tui.app import make_app

SIZE = (100, 30)


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_fixture_db(tmp_path / "runs.db")
    return make_app("runs.db", workers=2)


def shown(key: str | None, ready=lambda screen: screen.loads >= 1):
    """A run_before: switch screen with ``key`` and wait until it has shown its data."""

    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.screen.id == "experiments" and app.screen.loads >= 1)
        if key:
            await pilot.press(key)
        await wait_for(
            pilot, lambda: getattr(app.screen, "loads", 0) >= 1 and ready(app.screen) and app.focused is not None
        )
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)

    return run_before


def test_experiments_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=SIZE, run_before=shown(None))


def test_experiments_screen_at_80x24(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown(None))


def test_queue_screen(snap_compare, app):
    ready = lambda screen: "adds" in screen.preview_text  # noqa: E731
    assert snap_compare(app, terminal_size=SIZE, run_before=shown("2", ready))


def test_plots_screen(snap_compare, app):
    ready = lambda screen: screen.curves is not None  # noqa: E731
    assert snap_compare(app, terminal_size=SIZE, run_before=shown("3", ready))


def test_tables_screen(snap_compare, app):
    async def run_before(pilot) -> None:
        await shown("4")(pilot)
        pilot.app.screen.query_one("#tables-tabs").active = "tab-shared"
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, app):
    async def run_before(pilot) -> None:
        await shown(None)(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
