"""Tables II-IV and the best-setup comparison as data, Markdown, LaTeX, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field

from core.protocol import Protocol, group_by_protocol
from core.stats import BestComparison, MeanStd, SetupRow

TABLE_NUMBERS = {"independent": "II", "shared": "III", "shared-aux": "IV"}
TABLE_TITLES = {
    "independent": "Training performance using two independent CNNs",
    "shared": "Training performance using weight sharing",
    "shared-aux": "Training performance using weight sharing and auxiliary losses",
    "digits": "Beyond the paper (digits): the comparison from the two digit posteriors",
}
FORMATS = ("rich", "markdown", "latex", "csv", "json")


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    #: the protocol of every row (text outputs head each protocol's tables with it)
    protocol: Protocol | None = None


def format_mean_std(value: MeanStd, percent: bool = False) -> str:
    if not value.n:
        return "-"
    scale, digits = (100.0, 2) if percent else (1.0, 4)
    mean = f"{value.mean * scale:.{digits}f}"
    if value.std is None:
        return mean
    return f"{mean} ± {value.std * scale:.{digits}f}"


def format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def progress_label(row: SetupRow) -> str:
    """``n``: done / queued runs, ``(unfinished)`` and the failures when there are some."""
    marks = [] if row.complete else ["unfinished"]
    if row.failed:
        marks.append(f"{row.failed} failed")
    return f"{row.done}/{row.total}" + (f" ({', '.join(marks)})" if marks else "")


def paper_tables(rows: list[SetupRow]) -> list[Table]:
    """Per protocol (the paper's first), one table per structure in the layout of Tables II-IV
    (n = done runs / queued runs). Bold marks the best of its protocol and structure."""
    tables = []
    for protocol, rows_of_protocol in group_by_protocol(rows):
        for structure in dict.fromkeys(r.structure for r in rows_of_protocol):
            group = [r for r in rows_of_protocol if r.structure == structure]
            tables.append(_structure_table(structure, group, protocol))
    return tables


def _structure_table(structure: str, group: list[SetupRow], protocol: Protocol) -> Table:
    number = TABLE_NUMBERS.get(structure, "")
    title = f"Table {number}: {TABLE_TITLES.get(structure, structure)}".replace("Table : ", "")
    body = []
    for r in group:
        body.append(
            [
                Cell(r.arch),
                Cell(str(r.kernel)),
                Cell(format_mean_std(r.metrics["train_loss"])),
                Cell(format_mean_std(r.metrics["val_loss"]), "val_loss" in r.bold),
                Cell(format_mean_std(r.metrics["val_acc"], percent=True), "val_acc" in r.bold),
                Cell(progress_label(r)),
            ]
        )
    duplicates = len({(r.arch, r.kernel) for r in group}) < len(group)
    notes = (
        ["Some setups appear more than once: they differ in other hyperparameters."] if duplicates else []
    )  # only from rows built by hand: a protocol has one per setup
    columns = ["A", "K", "Train Loss", "Val. Loss", "Val. Acc. (%)", "n"]
    return Table(title, columns, body, notes, protocol)


def best_table(comparison: BestComparison) -> Table:
    """The paper's final comparison: the best setup of each structure on the test set."""
    body = [
        [
            Cell(b.structure),
            Cell(b.row.arch),
            Cell(str(b.row.kernel)),
            Cell(format_mean_std(b.row.metrics["val_acc"], percent=True)),
            Cell(format_mean_std(b.test["test_loss"])),
            Cell(format_mean_std(b.test["test_acc"], percent=True)),
            Cell(progress_label(b.row)),
        ]
        for b in comparison.best
    ]
    notes = [
        f"Welch's t-test on test accuracy, {a} vs {b}: p = {format_p(p)}" for (a, b), p in comparison.p_values.items()
    ]
    columns = ["Structure", "A", "K", "Val. Acc. (%)", "Test Loss", "Test Acc. (%)", "n"]
    return Table(
        "Best setup of each structure (by validation accuracy), on the test set",
        columns,
        body,
        notes,
        comparison.protocol,
    )


def protocol_heading(protocol: Protocol | None) -> str | None:
    return protocol.heading if protocol is not None else None


def _headed(tables: list[Table]):
    """(heading or None, table): the heading where the protocol changes."""
    last = None
    for table in tables:
        heading = None
        if table.protocol is not None and (last is None or table.protocol.id != last):
            heading = table.protocol.heading
            last = table.protocol.id
        yield heading, table


def to_markdown(tables: list[Table]) -> str:
    parts = []
    for heading, table in _headed(tables):
        if heading:
            parts.append(f"## {heading}")
        lines = [
            f"### {table.title}",
            "",
            "| " + " | ".join(table.columns) + " |",
            "|" + "|".join("---" for _ in table.columns) + "|",
        ]
        for row in table.rows:
            lines.append("| " + " | ".join(f"**{c.text}**" if c.bold else c.text for c in row) + " |")
        if table.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in table.notes)
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _latex_escape(text: str) -> str:
    return (
        text.replace("\\", r"\textbackslash{}")
        .replace("%", r"\%")
        .replace("&", r"\&")
        .replace("_", r"\_")
        .replace("#", r"\#")
        .replace("±", r"$\pm$")
    )


def to_latex(tables: list[Table]) -> str:
    parts = []
    for heading, table in _headed(tables):
        if heading:
            parts.append(rf"\section*{{{_latex_escape(heading)}}}")
        spec = "l" * len(table.columns)
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_latex_escape(table.title)}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\hline",
            " & ".join(_latex_escape(c) for c in table.columns) + r" \\",
            r"\hline",
        ]
        for row in table.rows:
            cells = [rf"\textbf{{{_latex_escape(c.text)}}}" if c.bold else _latex_escape(c.text) for c in row]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\hline", r"\end{tabular}"]
        lines += [rf"\\ \footnotesize {_latex_escape(note)}" for note in table.notes]
        lines.append(r"\end{table}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def setup_records(rows: list[SetupRow]) -> list[dict]:
    """Machine-readable rows: raw means and standard deviations (accuracies as fractions)."""
    records = []
    for r in rows:
        record = {
            "protocol": r.protocol.label,
            "protocol_id": r.protocol.id,
            "structure": r.structure,
            "arch": r.arch,
            "kernel": r.kernel,
            "config_id": r.config_id,
            "done": r.done,
            "total": r.total,
        }
        for name, value in r.metrics.items():
            record[f"{name}_mean"] = None if not value.n else value.mean
            record[f"{name}_std"] = value.std
        record["best"] = ",".join(sorted(r.bold))
        record["options"] = r.options  # beyond the paper: non-default options, or ""
        records.append(record)
    return records


def to_csv(records: list[dict]) -> str:
    if not records:
        return ""
    buffer = io.StringIO()
    fields = list(dict.fromkeys(name for record in records for name in record))
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def to_json(records: list[dict]) -> str:
    return json.dumps(records, indent=2) + "\n"


def render(rows: list[SetupRow], fmt: str) -> str:
    """Tables II-IV in a text format (markdown, latex, csv or json)."""
    if fmt == "markdown":
        return to_markdown(paper_tables(rows))
    if fmt == "latex":
        return to_latex(paper_tables(rows))
    if fmt == "csv":
        return to_csv(setup_records(rows))
    if fmt == "json":
        return to_json(setup_records(rows))
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
