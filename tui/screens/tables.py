"""Tables II-IV (mean ± std over repetitions, best in bold) and the test comparison, of one
protocol at a time (``p`` / ``P`` step through the database's protocols, the paper's first)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from core import api
from core.compare import compare_records
from core.config import STRUCTURES
from core.protocol import Protocol, group_by_protocol
from core.report import TABLE_NUMBERS, Table, setup_records, to_csv, to_latex, to_markdown
from core.stats import BestComparison, SetupRow, best_setups
from tui.literal import clean, literal, literal_block
from tui.screens.base import PairsScreen
from tui.screens.tables_paper import paper_line, paper_tables
from tui.widgets.banner import DbBanner

#: Tabs: one per structure (Tables II-IV) and the best-setup comparison.
TABS = (*STRUCTURES, "best")
EXPORTS = {"markdown": "md", "latex": "tex", "csv": "csv"}


@dataclass
class ProtocolData:
    """What the screen shows of one protocol."""

    protocol: Protocol
    rows: list[SetupRow]
    tables: dict[str, Table]  # tab -> table
    comparison: BestComparison
    #: tab -> table with the paper's numbers beside ours (``v``; tui/screens/tables_paper.py)
    paper: dict[str, Table] | None = None


@dataclass
class TableData:
    protocols: list[ProtocolData]  # the paper's first
    index: int = 0  # the protocol on screen

    @property
    def current(self) -> ProtocolData | None:
        return self.protocols[self.index] if self.protocols else None

    @property
    def rows(self) -> list[SetupRow]:
        return self.current.rows if self.current else []

    @property
    def tables(self) -> dict[str, Table]:
        return self.current.tables if self.current else {}

    @property
    def comparison(self) -> BestComparison:
        return self.current.comparison if self.current else BestComparison([], {})


def protocol_indicator(data: TableData) -> Text:
    """``Protocol 1 of 3: paper (30ep ...) · p / P: next / previous``."""
    if not data.protocols:
        return Text("Protocol: none yet", style="bold")
    current = data.current.protocol
    text = Text()
    text.append(f"Protocol {data.index + 1} of {len(data.protocols)}: ", style="bold")
    text.append(clean(current.heading.removeprefix("Protocol ")), style="bold reverse")
    if len(data.protocols) > 1:
        text.append("  ·  p / P: next / previous protocol (tables never mix protocols)")
    return text


def tab_title(tab: str) -> str:
    return "Best (test)" if tab == "best" else f"{TABLE_NUMBERS.get(tab, '')} {tab}".strip()


def export_name(tab: str, fmt: str, protocol: Protocol | None = None) -> str:
    stem = "pairs-best" if tab == "best" else f"pairs-table-{TABLE_NUMBERS.get(tab, '')}-{tab}"
    if protocol is not None and not protocol.is_paper:
        stem += f"-{protocol.id[:8]}"
    return f"{stem}.{EXPORTS[fmt]}"


def table_cells(row: list) -> list[Text]:
    """Bold best cells; the n column of an unfinished setup in the warning colour."""
    cells = []
    for cell in row:
        style = "bold" if cell.bold else ""
        if "unfinished" in cell.text:
            style = "italic yellow"
        cells.append(Text(clean(cell.text), style=style, justify="right" if "±" in cell.text else "left"))
    return cells


class TablesScreen(PairsScreen):
    """The paper's tables, filled in as runs finish; export the one on screen."""

    BINDINGS = [
        # One footer entry for the three exports, and p / P said on the protocol line: the
        # footer fits 80 columns.
        Binding("m", "export('markdown')", "Export", key_display="m/l/c"),
        Binding("l", "export('latex')", "LaTeX", show=False),
        Binding("c", "export('csv')", "CSV", show=False),
        Binding("p", "protocol(1)", "Protocol", show=False),
        Binding("P", "protocol(-1)", "Prev. protocol", show=False),
        Binding("v", "toggle_paper", "Paper"),
    ]

    def __init__(self) -> None:
        super().__init__(id="tables")
        self.data: TableData | None = None
        #: the protocol on screen (kept across reloads), None: the first (the paper's)
        self.protocol_id: str | None = None
        #: the paper's mean ± std and Δ beside each cell (``v``)
        self.with_paper = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield DbBanner()
        yield Static("", id="tables-protocol", classes="table-title")
        yield Static("", id="tables-paper")
        with TabbedContent(id="tables-tabs"):
            for tab in TABS:
                with TabPane(tab_title(tab), id=f"tab-{tab}"):
                    with VerticalScroll():
                        yield Static("", id=f"title-{tab}", classes="table-title")
                        yield DataTable(id=f"table-{tab}", cursor_type="row", zebra_stripes=True)
                        yield Static("", id=f"notes-{tab}", classes="table-notes")
        yield Footer(compact=True, show_command_palette=False)  # ^p still opens it

    def on_mount(self) -> None:
        super().on_mount()
        self.reload()

    @property
    def active_tab(self) -> str:
        active = self.query_one("#tables-tabs", TabbedContent).active or "tab-shared"
        return active.removeprefix("tab-")

    # -- data --------------------------------------------------------------------------------
    def query_db(self) -> TableData:
        def read(store):
            rows = api.table_rows(store)
            return [(protocol, group, best_setups(store, group)) for protocol, group in group_by_protocol(rows)]

        protocols = []
        for protocol, rows, comparison in self.app.db.read(read):
            tables = {t_rows[0].structure: table for t_rows, table in self._by_structure(rows)}
            tables["best"] = api.best_table(comparison)
            protocols.append(ProtocolData(protocol, rows, tables, comparison, paper_tables(rows, comparison)))
        ids = [p.protocol.id for p in protocols]
        return TableData(protocols, ids.index(self.protocol_id) if self.protocol_id in ids else 0)

    @staticmethod
    def _by_structure(rows: list[SetupRow]):
        for structure in dict.fromkeys(r.structure for r in rows):
            group = [r for r in rows if r.structure == structure]
            yield group, api.paper_tables(group)[0]

    def action_protocol(self, step: int) -> None:
        """Show the next (``step`` 1) or previous (-1) protocol of the database."""
        if self.data is None or len(self.data.protocols) < 2:
            self.notify("this database holds one protocol", severity="information")
            return
        self.data.index = (self.data.index + step) % len(self.data.protocols)
        self.protocol_id = self.data.current.protocol.id
        self.show_data(self.data)

    def show_data(self, data: TableData) -> None:
        self.data = data
        if data.current is not None:
            self.protocol_id = data.current.protocol.id
        indicator = protocol_indicator(data)
        indicator.append(
            "  ·  v: " + ("without" if self.with_paper else "beside") + " the paper's numbers", style="dim"
        )
        self.query_one("#tables-protocol", Static).update(indicator)
        paper = self.query_one("#tables-paper", Static)
        paper.display = self.with_paper and data.current is not None
        if paper.display:
            paper.update(paper_line(data.current.protocol, data.rows))
        for tab in TABS:
            table = self.shown_tables().get(tab)
            widget = self.query_one(f"#table-{tab}", DataTable)
            title = self.query_one(f"#title-{tab}", Static)
            notes = self.query_one(f"#notes-{tab}", Static)
            widget.clear(columns=True)
            if table is None:
                title.update(f"{tab_title(tab)}: no configurations of this structure yet")
                notes.update("")
                continue
            title.update(literal(table.title, "bold"))
            for index, column in enumerate(table.columns):  # "Paper" and "Δ" come thrice
                widget.add_column(literal(column), key=str(index))
            for index, row in enumerate(table.rows):
                widget.add_row(*table_cells(row), key=str(index))
            lines = list(table.notes)
            if any("unfinished" in c.text for row in table.rows for c in row):
                lines.append("n = done / queued runs; (unfinished) rows may still change.")
            if tab != "best":
                lines.append("Bold: best mean validation loss and accuracy of this structure under this protocol.")
            notes.update(literal_block("\n".join(lines)))

    def shown_tables(self) -> dict[str, Table]:
        """The tables on screen: with the paper's numbers when ``v`` is on."""
        if self.data is None or self.data.current is None:
            return {}
        if self.with_paper and self.data.current.paper is not None:
            return self.data.current.paper
        return self.data.tables

    def action_toggle_paper(self) -> None:
        """The paper's mean ± std and Δ in paper σ beside each cell, or not."""
        self.with_paper = not self.with_paper
        if self.data is not None:
            self.show_data(self.data)

    # -- export ------------------------------------------------------------------------------
    def export_text(self, tab: str, fmt: str) -> str:
        assert self.data is not None
        table = self.shown_tables()[tab]
        if fmt == "markdown":
            return to_markdown([table])
        if fmt == "latex":
            return to_latex([table])
        if tab == "best":
            return api.render_best(self.data.comparison, "csv")
        rows = [r for r in self.data.rows if r.structure == tab]
        if self.with_paper:
            return to_csv(compare_records(rows))
        return to_csv(setup_records(rows))

    def action_export(self, fmt: str) -> None:
        tab = self.active_tab
        if self.data is None or tab not in self.data.tables:
            self.notify(f"nothing to export on {tab_title(tab)} yet", severity="warning")
            return
        several = len(self.data.protocols) > 1  # then the file name says which protocol
        path = Path.cwd() / export_name(tab, fmt, self.data.current.protocol if several else None)
        try:
            path.write_text(self.export_text(tab, fmt), encoding="utf-8")
        except OSError as exc:
            self.notify(clean(f"cannot write {path}: {exc.strerror}"), severity="error", markup=False)
            return
        self.notify(clean(f"wrote {path}"), title=f"Exported {fmt}", markup=False)
