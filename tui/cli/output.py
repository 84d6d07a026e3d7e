"""Where the ``pairs`` commands write: stdout and stderr consoles, and Rich tables of reports."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from core.report import Table
from tui.literal import literal

# Lines wrap at the terminal's width only on a terminal: piped or redirected, a line stays whole
# (never cut mid-number at Rich's default 80 columns). Tables keep their layout either way.
out = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, highlight=False, soft_wrap=True)


def notes(caveats: list[str], mixed: str | None, fmt: str) -> None:
    """Caveats and the mixed-code-version mark: under a rich table on stdout; on stderr for
    the text formats (their stdout stays parseable)."""
    console = out if fmt == "rich" else err
    for line in [*caveats, *([mixed] if mixed else [])]:
        console.print(literal(line, "bold yellow" if fmt == "rich" else ""))


def print_tables(tables: list[Table]) -> None:
    """Rich tables, each protocol's under a heading with its label."""
    last = None
    for t in tables:
        if t.protocol is not None and t.protocol.id != last:
            last = t.protocol.id
            out.print(literal(t.protocol.heading, "bold underline"))
        out.print(rich_table(t))


def rich_table(t: Table) -> RichTable:
    table = RichTable(
        title=literal(t.title) if t.title else None,
        caption=Text("\n").join(map(literal, t.notes)) if t.notes else None,
        min_width=len(t.title) + 2,
    )  # the title on one line (Table IV's is long)
    for column in t.columns:
        table.add_column(literal(column))
    for row in t.rows:
        table.add_row(*(literal(c.text, "bold" if c.bold else "") for c in row))
    return table
