"""A grid's numbers beside the paper's published ones (Tables II-IV and the test comparison).

The paper's numbers ship in ``core/reference`` (package data). Every comparison is stated in
units of the paper's standard deviation: ``z = (ours - paper mean) / paper std``, shown as
``+1.3σ``. A cell is *within 2σ* when ``|z| <= 2``.

Accuracies are fractions here (as in ``core.stats``); the CSV files hold percentages.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from dataclasses import dataclass
from importlib import resources

from core.config import ConfigError
from core.protocol import Protocol, group_by_protocol
from core.report import (
    TABLE_NUMBERS,
    TABLE_TITLES,
    Cell,
    Table,
    format_mean_std,
    format_p,
    progress_label,
    to_csv,
    to_latex,
    to_markdown,
)
from core.stats import METRICS, BestComparison, MeanStd, SetupRow

#: How many repetitions the paper averages over, and its epochs per run.
PAPER_REPS = 10
PAPER_EPOCHS = 30
#: The metric the summary line counts.
SUMMARY_METRIC = "val_acc"
WITHIN = 2.0
#: The paper's ordering of the best test accuracies.
PAPER_ORDER = ("independent", "shared", "shared-aux")
METRIC_LABELS = {
    "train_loss": "train loss",
    "val_loss": "validation loss",
    "val_acc": "validation accuracy",
    "test_loss": "test loss",
    "test_acc": "test accuracy",
}
COMPARE_FORMATS = ("markdown", "latex", "csv", "json")

Key = tuple[str, str, int]  # (structure, arch, kernel)


@dataclass(frozen=True)
class PaperValue:
    mean: float
    std: float

    def z(self, ours: MeanStd) -> float:
        """Difference of our mean from the paper's, in units of the paper's std (NaN: no data)."""
        if not ours.n or math.isnan(ours.mean) or not self.std:
            return math.nan
        return (ours.mean - self.mean) / self.std

    def as_mean_std(self) -> MeanStd:
        return MeanStd(self.mean, self.std, PAPER_REPS)


@dataclass(frozen=True)
class PaperSetup:
    table: str
    structure: str
    arch: str
    kernel: int
    metrics: dict[str, PaperValue]

    @property
    def key(self) -> Key:
        return (self.structure, self.arch, self.kernel)

    @property
    def label(self) -> str:
        return f"{self.structure} {self.arch} k{self.kernel}"


def _read_csv(name: str) -> list[dict]:
    text = resources.files("core.reference").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _value(row: dict, prefix: str, scale: float = 1.0) -> PaperValue:
    return PaperValue(float(row[f"{prefix}_mean"]) / scale, float(row[f"{prefix}_std"]) / scale)


@functools.cache
def paper_validation() -> dict[Key, PaperSetup]:
    """Tables II-IV: final-epoch train loss, val loss and val accuracy (fraction) per setup."""
    setups = {}
    for row in _read_csv("paper_validation.csv"):
        setup = PaperSetup(
            row["table"],
            row["structure"],
            row["arch"],
            int(row["kernel"]),
            {
                "train_loss": _value(row, "train_loss"),
                "val_loss": _value(row, "val_loss"),
                "val_acc": _value(row, "val_acc_pct", 100.0),
            },
        )
        setups[setup.key] = setup
    return setups


@functools.cache
def paper_test() -> dict[str, PaperSetup]:
    """Section III: test loss and accuracy (fraction) of the paper's best setup per structure."""
    best = {}
    for row in _read_csv("paper_test.csv"):
        best[row["structure"]] = PaperSetup(
            TABLE_NUMBERS.get(row["structure"], ""),
            row["structure"],
            row["arch"],
            int(row["kernel"]),
            {"test_loss": _value(row, "test_loss"), "test_acc": _value(row, "test_acc_pct", 100.0)},
        )
    return best


def format_sigma(z: float) -> str:
    """``+1.3σ``; ``-`` when there is nothing to compare."""
    if math.isnan(z):
        return "-"
    text = f"{z:+.1f}σ"
    return "+0.0σ" if text == "-0.0σ" else text


def _key(row: SetupRow) -> Key:
    return (row.structure, row.arch, row.kernel)


def _is_percent(metric: str) -> bool:
    return metric.endswith("_acc")


# -- summary --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    metric: str
    within: int  # cells with done runs whose mean is within 2 paper-σ
    cells: int  # cells (of the structures compared) with done runs here: what ``within`` counts
    missing: tuple[str, ...] = ()  # the paper's cells (of those structures) without done runs

    @property
    def line(self) -> str:
        text = (
            f"{self.within} of {self.cells} cells with done runs within {WITHIN:g}σ of the "
            f"paper on mean {METRIC_LABELS[self.metric]}"
        )
        if self.missing:
            text += (
                f"; {len(self.missing)} of the paper's {self.cells + len(self.missing)} "
                f"cells have no done runs here: {name_cells(self.missing)}"
            )
        return text


def name_cells(labels: tuple[str, ...] | list[str]) -> str:
    """``independent A1 k3, A1 k5; shared A2 k3``: cell labels grouped by structure."""
    by_structure: dict[str, list[str]] = {}
    for label in labels:
        structure, _, rest = label.partition(" ")
        by_structure.setdefault(structure, []).append(rest)
    return "; ".join(f"{structure} {', '.join(rest)}" for structure, rest in by_structure.items())


def representatives(rows: list[SetupRow]) -> dict[Key, SetupRow]:
    """Per paper cell, the row that stands for it: the one with the most done runs (rows of one
    protocol have one row per cell; among rows built by hand the fullest counts)."""
    _one_protocol(rows)
    chosen: dict[Key, SetupRow] = {}
    for row in rows:
        current = chosen.get(_key(row))
        if current is None or (row.done, row.total) > (current.done, current.total):
            chosen[_key(row)] = row
    return chosen


def _one_protocol(rows: list[SetupRow]) -> None:
    if len({r.protocol.id for r in rows}) > 1:
        raise ValueError(
            "rows of several protocols: compare each protocol on its own (core.protocol.group_by_protocol)"
        )


def paper_final(
    structure: str, arch: str, kernel: int, epochs: int = PAPER_EPOCHS
) -> dict[str, tuple[float, float]] | None:
    """The paper's final-epoch (mean, std) per metric of a setup, for marking figures; None when
    the setup is not in the paper or does not run the paper's number of epochs."""
    setup = paper_validation().get((structure, arch, kernel))
    if setup is None or epochs != PAPER_EPOCHS:
        return None
    return {m: (v.mean, v.std) for m, v in setup.metrics.items()}


def summary(rows: list[SetupRow], metric: str = SUMMARY_METRIC, structures: list[str] | None = None) -> Summary:
    """How many of the paper's cells (of the structures in ``rows``) that have done runs here
    sit within 2σ; the cells without done runs are named, never counted as misses.

    ``rows`` must be of one protocol (ValueError otherwise).
    """
    structures = structures or list(dict.fromkeys(r.structure for r in rows)) or list(PAPER_ORDER)
    paper = [p for p in paper_validation().values() if p.structure in structures]
    chosen = representatives(rows)
    within = cells = 0
    missing = []
    for setup in paper:
        row = chosen.get(setup.key)
        if row is None or not row.metrics[metric].n:
            missing.append(setup.label)
            continue
        cells += 1
        if abs(setup.metrics[metric].z(row.metrics[metric])) <= WITHIN:
            within += 1
    return Summary(metric, within, cells, tuple(missing))


def summary_line(rows: list[SetupRow]) -> str:
    """``k of n cells with done runs within 2σ of the paper on mean validation accuracy`` (and
    the cells without done runs, named)."""
    return summary(rows).line


def caveat(protocol: Protocol) -> str | None:
    """The line a comparison with the paper shows when its runs are not of the paper's
    protocol; None for the paper's."""
    if protocol.is_paper:
        return None
    return (
        f"caveat: these runs use protocol {protocol.label}, not the paper's "
        f"({Protocol.paper().description}): differences from the paper's numbers may come "
        "from the protocol"
    )


# -- Tables II-IV with the paper's numbers ---------------------------------------------------

COMPARE_COLUMNS = [
    "A",
    "K",
    "Train Loss",
    "Paper",
    "Δ",
    "Val. Loss",
    "Paper",
    "Δ",
    "Val. Acc. (%)",
    "Paper",
    "Δ",
    "n",
]


def compare_tables(rows: list[SetupRow]) -> list[Table]:
    """Tables II-IV with, beside each cell, the paper's mean ± std and the difference in σ.

    Per protocol (each its own tables and counts): every table's notes count its cells within
    2σ per metric; the protocol's last table ends with its summary line (:func:`summary_line`)
    and, for a protocol other than the paper's, the caveat (:func:`caveat`).
    """
    tables = []
    for protocol, group in group_by_protocol(rows):
        tables += _compare_tables_of(protocol, group)
    return tables


def _compare_tables_of(protocol: Protocol, rows: list[SetupRow]) -> list[Table]:
    paper = paper_validation()
    tables = []
    for structure in dict.fromkeys(r.structure for r in rows):
        group = [r for r in rows if r.structure == structure]
        body = []
        for r in group:
            cells = [Cell(r.arch), Cell(str(r.kernel))]
            setup = paper.get(_key(r))
            for metric in METRICS:
                ours, percent = r.metrics[metric], _is_percent(metric)
                cells.append(Cell(format_mean_std(ours, percent), metric in r.bold))
                if setup is None:
                    cells += [Cell("-"), Cell("-")]
                    continue
                reference = setup.metrics[metric]
                cells.append(Cell(format_mean_std(reference.as_mean_std(), percent)))
                cells.append(Cell(format_sigma(reference.z(ours))))
            cells.append(Cell(progress_label(r)))
            body.append(cells)
        number = TABLE_NUMBERS.get(structure, "")
        title = f"Table {number}: {TABLE_TITLES.get(structure, structure)}, compared with the paper"
        notes = [
            "Paper: the published mean ± std over 10 runs; Δ: (ours - paper mean) / paper std.",
            "; ".join(
                f"{METRIC_LABELS[m]}: {s.within} of {s.cells} with done runs within {WITHIN:g}σ"
                for m in METRICS
                for s in [summary(group, m, [structure])]
            ),
        ]
        if len({_key(r) for r in group}) < len(group):
            notes.append(
                "Some setups appear more than once (other hyperparameters differ); "
                "the counts use the row with the most done runs."
            )
        tables.append(Table(title, list(COMPARE_COLUMNS), body, notes, protocol))
    if tables:
        tables[-1].notes.append(f"Overall: {summary_line(rows)}.")
        line = caveat(protocol)
        if line:
            tables[-1].notes.append(line[0].upper() + line[1:] + ".")
    return tables


def compare_records(rows: list[SetupRow]) -> list[dict]:
    """The records of plain ``--format json`` (``core.report.setup_records``) with, per metric,
    the paper's mean/std and z (fractions) added."""
    from core.report import setup_records

    paper = paper_validation()
    records = []
    for r, record in zip(rows, setup_records(rows), strict=True):
        setup = paper.get(_key(r))
        record["paper_table"] = setup.table if setup else None
        for metric in METRICS:
            ours = r.metrics[metric]
            reference = setup.metrics[metric] if setup else None
            z = reference.z(ours) if reference else math.nan
            record[f"paper_{metric}_mean"] = reference.mean if reference else None
            record[f"paper_{metric}_std"] = reference.std if reference else None
            record[f"{metric}_sigma"] = None if math.isnan(z) else z
        z = record[f"{SUMMARY_METRIC}_sigma"]
        record[f"{SUMMARY_METRIC}_within_2sigma"] = None if z is None else abs(z) <= WITHIN
        records.append(record)
    return records


def render_comparison(rows: list[SetupRow], fmt: str) -> str:
    """Tables II-IV beside the paper's numbers as markdown, latex, csv or json.

    Markdown and LaTeX carry each protocol's summary line in its last table's notes; CSV and
    JSON are the records of plain ``--format csv/json`` plus the comparison fields
    (:func:`compare_records`): JSON a list of records, as without ``--compare``.
    """
    if fmt == "markdown":
        return to_markdown(compare_tables(rows)) if rows else "no configurations yet\n"
    if fmt == "latex":
        return to_latex(compare_tables(rows)) if rows else ""
    if fmt == "csv":
        return to_csv(compare_records(rows))
    if fmt == "json":
        return json.dumps(compare_records(rows), indent=2) + "\n"
    raise ConfigError(
        f"unknown format {fmt!r} for --compare paper: choose one of {', '.join(COMPARE_FORMATS)} "
        "(rich: use compare_tables)"
    )


# -- the best setups on the test set ---------------------------------------------------------


def ordering_holds(comparison: BestComparison) -> bool | None:
    """Whether our best test accuracies follow the paper's independent < shared < shared-aux."""
    means = {b.structure: b.test["test_acc"].mean for b in comparison.best if b.test["test_acc"].n}
    if any(s not in means for s in PAPER_ORDER):
        return None
    return all(means[a] < means[b] for a, b in zip(PAPER_ORDER, PAPER_ORDER[1:], strict=False))


def compare_best_table(comparison: BestComparison) -> Table:
    """Our best setup of each structure on the test set beside the paper's (Section III)."""
    paper = paper_test()
    body = []
    for b in comparison.best:
        reference = paper.get(b.structure)
        row = [
            Cell(b.structure),
            Cell(f"{b.row.arch} k{b.row.kernel}"),
            Cell(format_mean_std(b.test["test_loss"])),
            Cell(format_mean_std(b.test["test_acc"], percent=True)),
        ]
        if reference is None:
            row += [Cell("-")] * 5
        else:
            loss, acc = reference.metrics["test_loss"], reference.metrics["test_acc"]
            row += [
                Cell(f"{reference.arch} k{reference.kernel}"),
                Cell(format_mean_std(loss.as_mean_std())),
                Cell(format_sigma(loss.z(b.test["test_loss"]))),
                Cell(format_mean_std(acc.as_mean_std(), percent=True)),
                Cell(format_sigma(acc.z(b.test["test_acc"]))),
            ]
        row.append(Cell(f"{b.row.done}/{b.row.total}" + ("" if b.row.complete else " (unfinished)")))
        body.append(row)
    notes = [
        f"Welch's t-test on test accuracy, {a} vs {b}: p = {format_p(p)} (two-sided)"
        for (a, b), p in comparison.p_values.items()
    ]
    notes += [
        f"One-sided, in the paper's direction ({a} < {b}): p = {format_p(p)}"
        for (a, b), p in directional_p(comparison).items()
    ]
    notes.append(ordering_line(comparison))
    columns = [
        "Structure",
        "Best setup",
        "Test Loss",
        "Test Acc. (%)",
        "Paper's best",
        "Paper Test Loss",
        "Δ",
        "Paper Test Acc. (%)",
        "Δ",
        "n",
    ]
    return Table(
        "Best setup of each structure (by validation accuracy) on the test set, compared with the paper",
        columns,
        body,
        notes,
        comparison.protocol,
    )


def directional_p(comparison: BestComparison) -> dict[tuple[str, str], float]:
    """One-sided Welch p-values that the later structure of the paper's ordering has the higher
    mean test accuracy (small p: the paper's ordering is supported)."""
    means = {b.structure: b.test["test_acc"].mean for b in comparison.best}
    result = {}
    for (a, b), p in comparison.p_values.items():
        if a not in PAPER_ORDER or b not in PAPER_ORDER or math.isnan(p):
            continue
        low, high = sorted((a, b), key=PAPER_ORDER.index)
        result[(low, high)] = p / 2 if means[high] > means[low] else 1 - p / 2
    return result


def ordering_line(comparison: BestComparison) -> str:
    holds = ordering_holds(comparison)
    paper = " < ".join(PAPER_ORDER)
    if holds is None:
        return (
            f"Paper's ordering of the best test accuracies ({paper}): not checkable here "
            "(a structure has no done runs)."
        )
    means = {b.structure: b.test["test_acc"].mean for b in comparison.best}
    ours = " < ".join(sorted(PAPER_ORDER, key=lambda s: means[s]))
    verdict = "holds" if holds else "does not hold"
    return f"Paper's ordering of the best test accuracies ({paper}) {verdict} here (ours: {ours})."
