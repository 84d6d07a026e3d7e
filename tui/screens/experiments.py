"""The home screen: every configuration with its progress, the worker pool and failures."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from core.config import MAX_WORKERS, STRUCTURES, RunConfig
from core.stats import MeanStd, setup_rows
from tui.literal import clean, clean_block, literal
from tui.screens.base import PairsScreen
from tui.widgets.banner import DbBanner
from tui.widgets.labels import protocol_label, setup_label
from tui.widgets.pool import PoolPanel


def _mean(row: dict, metric: str) -> float:
    value = row.get(metric)
    return value.mean if value is not None and value.n else -1.0


def result_text(value: MeanStd | None) -> str:
    """An accuracy's mean ± std over done runs in percent (``82.0±2.0``), or ``-``."""
    if value is None or not value.n:
        return "-"
    mean = f"{value.mean * 100:.1f}"
    return mean if value.std is None else f"{mean}±{value.std * 100:.1f}"


#: (key, header, sort key of a progress row)
COLUMNS = (
    ("setup", "Setup", lambda r: (r["structure"], r["arch"], r["kernel"])),
    ("done", "Done", lambda r: r["done"] or 0),
    ("val_acc", "Val %", lambda r: _mean(r, "val_acc")),
    ("test_acc", "Test %", lambda r: _mean(r, "test_acc")),
    ("running", "Run", lambda r: r["running"] or 0),
    ("queued", "Queued", lambda r: r["queued"] or 0),
    ("failed", "Failed", lambda r: r["failed"] or 0),
    ("epoch", "Epoch", lambda r: r["current_epoch"] or 0),
    ("hosts", "Host", lambda r: r.get("hosts") or ""),
    ("protocol", "Protocol", lambda r: protocol_label(r)),
)
SORT_KEYS = {key: sort for key, _, sort in COLUMNS}


@dataclass
class Snapshot:
    progress: list[dict]
    failures: list[dict]
    counts: dict[str, int]


def status_words(row: dict) -> str:
    words = []
    for status in ("running", "queued", "failed"):
        if row[status]:
            words.append(status)
    if row["total"] and row["done"] == row["total"]:
        words.append("done complete")
    return " ".join(words)


def matches(row: dict, terms: list[str]) -> bool:
    """Every term is in a word of what the row shows; a structure's name is that structure
    (``shared`` is not ``shared-aux``)."""
    words = f"{setup_label(row)} {protocol_label(row)} {status_words(row)}".lower().split()
    return all(term in words if term in STRUCTURES else any(term in word for word in words) for term in terms)


class SetupTable(DataTable):
    """The configurations: Home and End go to the first and last row (not sideways)."""

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]


class ExperimentsScreen(PairsScreen):
    """Configurations (sortable, filterable), the worker pool and failures."""

    BINDINGS = [
        Binding("slash", "focus_filter", "Find"),
        Binding("s", "cycle_sort", "Sort", show=False),
        Binding("w", "start_workers", "Start"),
        Binding("x", "stop_workers", "Stop"),
        Binding("r", "retry_failed", "Retry failed", show=False),
        Binding("m", "show_model", "Model"),
        Binding("space", "toggle_mark", "Mark", show=False),
        Binding("c", "compare", "Compare", show=False),
        Binding("escape", "leave_filter", "Table", show=False),
    ]

    #: The table has the focus from the start (not the filter box, the first focusable widget).
    AUTO_FOCUS = "#exp-table"
    sort_key = "setup"
    sort_reverse = False

    def __init__(self) -> None:
        super().__init__(id="experiments")
        self.snapshot: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DbBanner()
        with Horizontal(id="exp-top"):
            yield Input(placeholder="filter: e.g. shared A5 k3 running", id="exp-filter", compact=True)
            yield Static("", id="exp-counts")
        # the setup column stays in sight when the table scrolls sideways
        yield SetupTable(id="exp-table", cursor_type="row", zebra_stripes=True, fixed_columns=1)
        with Vertical(id="exp-failures"):
            yield Label("Failures (Enter: the whole error; r: queue them again)", classes="section-title")
            yield DataTable(id="exp-failure-table", cursor_type="row")
        yield PoolPanel(self.app.default_workers, id="pool")
        yield Footer(compact=True, show_command_palette=False)  # ^p still opens it

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#exp-table", DataTable)
        for key, header, _ in COLUMNS:  # room for the sort arrow, so it is never cut off
            table.add_column(Text(header + "  "), key=key)
        failures = self.query_one("#exp-failure-table", DataTable)
        for key, header in (("setup", "Setup"), ("rep", "Rep"), ("tries", "Tries"), ("error", "Error")):
            failures.add_column(header, key=key)
        self.query_one("#exp-failures").display = False  # until failures are read
        self.show_pool()
        self.reload()

    # -- data --------------------------------------------------------------------------------
    def query_db(self) -> Snapshot:
        def read(store) -> Snapshot:
            progress = store.config_progress()
            val = {row.config_id: row.metrics["val_acc"] for row in setup_rows(store)}
            tests: dict[str, list[float]] = {}
            for run in store.run_rows(status="done"):
                if run["test_acc"] is not None:
                    tests.setdefault(run["config_id"], []).append(run["test_acc"])
            for row in progress:  # results at a glance: mean ± std of the done runs
                row["val_acc"] = val.get(row["id"])
                row["test_acc"] = MeanStd.of(tests.get(row["id"], []))
            return Snapshot(progress, store.failures(), store.status_counts())

        return self.app.db.read(read)

    def show_data(self, data: Snapshot) -> None:
        self.snapshot = data
        counts = data.counts
        self.query_one("#exp-counts", Static).update(
            Text.assemble(
                (f"{counts['running']} running", "bold green" if counts["running"] else ""),
                f" · {counts['queued']} queued · {counts['done']} done · ",
                (f"{counts['failed']} failed", "bold red" if counts["failed"] else ""),
            )
        )
        self.fill_table()
        self.fill_failures(data.failures)
        self.show_pool()

    def visible_rows(self) -> list[dict]:
        if self.snapshot is None:
            return []
        terms = self.query_one("#exp-filter", Input).value.lower().split()
        rows = [r for r in self.snapshot.progress if matches(r, terms)]
        rows.sort(key=SORT_KEYS[self.sort_key], reverse=self.sort_reverse)
        return rows

    def fill_table(self) -> None:
        table = self.query_one("#exp-table", DataTable)
        rows = self.visible_rows()
        cells = {r["id"]: self.marked_cells(r) for r in rows}
        current = [key.value for key in table.rows]
        if current == list(cells):
            for row_key, values in cells.items():
                for (column, *_), value in zip(COLUMNS, values):
                    if table.get_cell(row_key, column) != value:
                        table.update_cell(row_key, column, value)
        else:
            selected = self.app.selected_config
            table.clear()
            for row_key, values in cells.items():
                table.add_row(*values, key=row_key)
            if selected in cells:
                table.move_cursor(row=list(cells).index(selected), animate=False)
        if table.row_count and self.app.selected_config not in cells:
            self.app.selected_config = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        for key, header, _ in COLUMNS:
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_key else "  "
            table.columns[key].label = Text(header + arrow)
        table.refresh()

    def marked_cells(self, row: dict) -> tuple:
        """:meth:`cells`, the setup followed by ``●`` when it is marked for Compare (Space)."""
        values = self.cells(row)
        if row["id"] not in getattr(self.app, "marked_configs", ()):
            return values
        return (Text.assemble(values[0], (" ●", "bold magenta")), *values[1:])

    @staticmethod
    def cells(row: dict) -> tuple:
        epoch = ""
        if row["running"]:
            epoch = f"{row['current_epoch'] or 0}/{row['epochs']}"
        done = f"{row['done'] or 0}/{row['total']}"
        return (
            literal(setup_label(row)),
            literal(done, "green" if row["total"] and row["done"] == row["total"] else ""),
            Text(result_text(row.get("val_acc")), justify="right"),
            Text(result_text(row.get("test_acc")), justify="right"),
            literal(row["running"] or "", "bold green"),
            literal(row["queued"] or ""),
            literal(row["failed"] or "", "bold red"),
            literal(epoch),
            literal(row.get("hosts") or ""),
            literal(protocol_label(row)),
        )

    def fill_failures(self, failures: list[dict]) -> None:
        box = self.query_one("#exp-failures")
        box.display = bool(failures)
        table = self.query_one("#exp-failure-table", DataTable)
        table.clear()
        for f in failures:
            error = (f["error"] or "").strip().splitlines()
            table.add_row(
                literal(setup_label(f)),
                literal(f["rep"]),
                literal(f["attempts"]),
                literal(error[-1] if error else ""),
                key=f["id"],
            )

    def show_pool(self) -> None:
        counts = self.snapshot.counts if self.snapshot else {"running": 0, "queued": 0}
        self.query_one(PoolPanel).show(self.app.pool, counts["running"], counts["queued"])

    # -- events ------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "exp-filter":
            self.fill_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "exp-filter":
            self.query_one("#exp-table", DataTable).focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "exp-table" and event.row_key is not None:
            self.app.selected_config = event.row_key.value

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "exp-failure-table" and self.snapshot is not None:
            failure = next((f for f in self.snapshot.failures if f["id"] == event.row_key.value), None)
            if failure is not None:
                self.notify(
                    clean_block(failure["error"] or "no error recorded"),
                    severity="error",
                    title=clean(f"{setup_label(failure)} rep {failure['rep']}"),
                    timeout=20,
                    markup=False,
                )
            return
        if event.data_table.id == "exp-table" and event.row_key is not None:
            self.app.selected_config = event.row_key.value
            self.app.switch_mode("plots")

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id != "exp-table":
            return
        key = event.column_key.value
        self.sort_reverse = not self.sort_reverse if key == self.sort_key else False
        self.sort_key = key
        self.fill_table()

    def on_pool_panel_start_requested(self, event: PoolPanel.StartRequested) -> None:
        self.app.start_workers(event.workers)
        self.action_leave_filter()  # not the count box: the keys would type into it

    def on_pool_panel_stop_requested(self, event: PoolPanel.StopRequested) -> None:
        self.app.stop_workers()
        self.action_leave_filter()

    # -- actions -----------------------------------------------------------------------------
    def action_focus_filter(self) -> None:
        self.query_one("#exp-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one("#exp-table", DataTable).focus()

    def action_cycle_sort(self) -> None:
        keys = [key for key, *_ in COLUMNS]
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self.sort_reverse = self.sort_key not in ("setup", "protocol")
        self.fill_table()

    def action_start_workers(self) -> None:
        n = self.query_one(PoolPanel).requested_workers
        if n is None:
            self.notify(f"workers: enter a whole number from 1 to {MAX_WORKERS}", severity="error")
            return
        self.app.start_workers(n)

    def action_stop_workers(self) -> None:
        self.app.stop_workers()

    def action_retry_failed(self) -> None:
        self.app.retry_failed()

    def action_show_model(self) -> None:
        """The highlighted setup's layers (the Model view)."""
        from tui.screens.model import ModelScreen

        row = next(
            (r for r in (self.snapshot.progress if self.snapshot else ()) if r["id"] == self.app.selected_config), None
        )
        if row is None:
            self.notify("no configuration highlighted: queue some (2)", severity="warning")
            return
        self.app.push_screen(ModelScreen(RunConfig.from_dict(row)))

    def action_toggle_mark(self) -> None:
        """Mark (or unmark) the highlighted configuration for the Compare screen."""
        config_id = self.app.selected_config
        if self.snapshot is None or not any(r["id"] == config_id for r in self.snapshot.progress):
            self.notify("no configuration highlighted: queue some (2)", severity="warning")
            return
        marks = self.app.marked_configs
        if config_id in marks:
            marks.remove(config_id)
        else:
            marks.append(config_id)
        self.fill_table()
        table = self.query_one("#exp-table", DataTable)
        if config_id in table.rows:  # the column widens for the mark
            row = next(r for r in self.snapshot.progress if r["id"] == config_id)
            table.update_cell(config_id, "setup", self.marked_cells(row)[0], update_width=True)

    async def action_compare(self) -> None:
        """The Compare screen: the marked setups, or the best of each structure if none."""
        marked = bool(self.app.marked_configs)
        await self.app.switch_mode("compare")
        self.app.screen.set_source("marked" if marked else "best")
