"""A one-paragraph message about the database (missing, corrupted, newer schema, locked)."""

from __future__ import annotations

from textual.widgets import Static

from tui.literal import literal_block


class DbBanner(Static):
    """Shows ``app.db_error``; hidden while the database is fine."""

    DEFAULT_CSS = """
    DbBanner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $error 20%;
        color: $text;
        border-left: thick $error;
    }
    DbBanner.-shown { display: block; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "db_error", self._show, init=True)

    def _show(self, error: str | None) -> None:
        self.set_class(bool(error), "-shown")
        self.update(literal_block(error or ""))
