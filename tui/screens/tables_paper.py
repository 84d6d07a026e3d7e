"""The paper's numbers on the Tables screen (``v``): as ``pairs table --compare paper``.

Beside each cell of Tables II-IV the published mean ± std and Δ in paper σ; the Best tab with
the paper's test figures beside ours (``core.compare``). Above the tabs, the line "k of N cells
with done runs within 2σ" and, for runs of another protocol than the paper's, the caveat the
CLI prints.
"""

from __future__ import annotations

from rich.text import Text

from core.compare import WITHIN, caveat, compare_best_table, compare_tables, summary
from core.protocol import Protocol
from core.report import Table
from core.stats import BestComparison, SetupRow


def paper_tables(rows: list[SetupRow], comparison: BestComparison) -> dict[str, Table]:
    """Tab -> table with the paper's numbers, for the rows of one protocol. The summary and the
    caveat are left out of the notes: :func:`paper_line` shows them once, above the tabs."""
    tables: dict[str, Table] = {}
    structures = list(dict.fromkeys(r.structure for r in rows))
    for structure, table in zip(structures, compare_tables(rows), strict=True):
        table.notes = [n for n in table.notes if not n.startswith("Overall: ") and not n.lower().startswith("caveat: ")]
        tables[structure] = table
    tables["best"] = compare_best_table(comparison)
    return tables


def paper_line(protocol: Protocol, rows: list[SetupRow]) -> Text:
    """``vs the paper: 20 of 36 cells with done runs within 2σ ...`` and the caveat of a protocol that
    is not the paper's (plain text: never parsed as markup)."""
    text = Text()
    text.append("vs the paper: ", style="bold")
    if rows:
        s = summary(rows)
        text.append(
            f"{s.within} of {s.cells} cells with done runs within {WITHIN:g}σ of the paper on mean validation accuracy"
        )
        if s.missing:
            text.append(
                f" ({len(s.missing)} of the paper's {s.cells + len(s.missing)} cells have no done runs here)",
                style="dim",
            )
    else:
        text.append("no configurations of this protocol")
    line = caveat(protocol)
    if line:
        text.append("\n")
        text.append(line, style="bold yellow")
    return text
