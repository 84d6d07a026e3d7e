"""Summary statistics over repetitions: mean ± std (ddof=1), best setups, Welch tests.

Aggregation happens in SQL (sums and sums of squares, ``Store.setup_aggregates``), so tables of
very large grids are fast.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field

from core.config import ARCHITECTURES, EXTENSION_FIELDS, STRUCTURES, options_label
from core.protocol import PROTOCOL_FIELDS, Protocol, group_by_protocol
from core.store import Store

METRICS = ("train_loss", "val_loss", "val_acc")
TEST_METRICS = ("test_loss", "test_acc")


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float | None  # None when n < 2
    n: int

    @classmethod
    def from_sums(cls, n: int, total: float, squares: float) -> MeanStd:
        if not n:
            return cls(math.nan, None, 0)
        mean = total / n
        if n < 2:
            return cls(mean, None, n)
        variance = max(squares - total * total / n, 0.0) / (n - 1)
        return cls(mean, math.sqrt(variance), n)

    @classmethod
    def of(cls, values: list[float]) -> MeanStd:
        return cls.from_sums(len(values), sum(values), sum(v * v for v in values))


@dataclass
class SetupRow:
    """One row of Tables II-IV: a configuration's final-epoch metrics over its done runs."""

    config_id: str
    structure: str
    arch: str
    kernel: int
    done: int
    total: int
    metrics: dict[str, MeanStd]
    bold: set[str] = field(default_factory=set)
    #: the options beyond the paper that differ from their default (``bn drop 0.3``), or ""
    options: str = ""
    #: runs that failed (neither done nor to be trained without ``pairs retry``)
    failed: int = 0
    #: how the configuration was trained (every field but the setup); reports never mix two
    protocol: Protocol = field(default_factory=Protocol.paper)

    @property
    def complete(self) -> bool:
        return self.done == self.total and self.total > 0


def setup_rows(store: Store, structures: list[str] | None = None) -> list[SetupRow]:
    """Every configuration (optionally of some structures) with mean ± std of its done runs.

    Configurations differing in other hyperparameters (epochs, lr, ...) are separate rows, each
    with its ``protocol``; rows come the paper's protocol first, then per protocol in the
    paper's order. Within each protocol and structure, the best mean validation loss and
    accuracy are marked bold (never across protocols).
    """
    rows = []
    protocols: dict[tuple, Protocol] = {}  # many configurations share a protocol: build it once
    for raw in store.setup_aggregates(METRICS):
        if structures and raw["structure"] not in structures:
            continue
        n = raw["n"] or 0
        metrics = {m: MeanStd.from_sums(n, raw[f"{m}_sum"] or 0.0, raw[f"{m}_sq"] or 0.0) for m in METRICS}
        rows.append(
            SetupRow(
                raw["id"],
                raw["structure"],
                raw["arch"],
                raw["kernel"],
                raw["done"] or 0,
                raw["total"],
                metrics,
                options=options_label(json.loads(raw["options"])) if raw["options"] else "",
                failed=raw["failed"] or 0,
                protocol=_protocol(raw, protocols),
            )
        )
    rows = [row for _, group in group_by_protocol(sorted(rows, key=_paper_order)) for row in group]
    _mark_best(rows)
    return rows


def _protocol(raw: dict, cache: dict[tuple, Protocol]) -> Protocol:
    key = tuple(raw.get(name) for name in PROTOCOL_FIELDS if name not in EXTENSION_FIELDS) + (raw.get("options"),)
    protocol = cache.get(key)
    if protocol is None:
        protocol = cache[key] = Protocol.of(raw)
    return protocol


def _paper_order(row: SetupRow) -> tuple:
    structure = STRUCTURES.index(row.structure) if row.structure in STRUCTURES else 99
    arch = list(ARCHITECTURES).index(row.arch) if row.arch in ARCHITECTURES else 99
    return structure, arch, row.kernel, row.config_id


def _mark_best(rows: list[SetupRow]) -> None:
    """Bold the best of each (protocol, structure): rows of two protocols never compete."""
    groups: dict[tuple[str, str], list[SetupRow]] = {}
    for r in rows:
        if r.metrics["val_acc"].n:
            groups.setdefault((r.protocol.id, r.structure), []).append(r)
    for group in groups.values():
        if not group:
            continue
        min(group, key=lambda r: r.metrics["val_loss"].mean).bold.add("val_loss")
        max(group, key=lambda r: r.metrics["val_acc"].mean).bold.add("val_acc")


@dataclass
class BestSetup:
    structure: str
    row: SetupRow
    test: dict[str, MeanStd]
    test_acc_values: list[float]


@dataclass
class BestComparison:
    best: list[BestSetup]
    #: (structure a, structure b) -> Welch's t-test two-sided p-value on test accuracy
    p_values: dict[tuple[str, str], float]
    #: the one protocol of every setup compared (None: no rows)
    protocol: Protocol | None = None


def best_per_protocol(store: Store, rows: list[SetupRow] | None = None) -> list[BestComparison]:
    """:func:`best_setups` of each protocol of ``rows``, the paper's first."""
    rows = rows if rows is not None else setup_rows(store)
    return [best_setups(store, group) for _, group in group_by_protocol(rows)]


def best_setups(store: Store, rows: list[SetupRow] | None = None) -> BestComparison:
    """Per structure, the setup with the best mean validation accuracy and its test metrics,
    with Welch's p-values between the structures' best setups.

    ``rows`` must all be of one protocol (ValueError otherwise: a best setup is never chosen,
    nor tested, across protocols); see :func:`best_per_protocol`.
    """
    rows = rows if rows is not None else setup_rows(store)
    protocols = {r.protocol.id: r.protocol for r in rows}
    if len(protocols) > 1:
        raise ValueError(f"best_setups got rows of {len(protocols)} protocols: use best_per_protocol")
    best = []
    for structure in sorted({r.structure for r in rows}, key=lambda s: _paper_order_structure(s)):
        group = [r for r in rows if r.structure == structure and r.metrics["val_acc"].n]
        if not group:
            continue
        top = max(group, key=lambda r: r.metrics["val_acc"].mean)
        tests = store.done_tests(top.config_id)
        acc = [t["test_acc"] for t in tests]
        best.append(
            BestSetup(
                structure,
                top,
                {"test_loss": MeanStd.of([t["test_loss"] for t in tests]), "test_acc": MeanStd.of(acc)},
                acc,
            )
        )
    p_values = {}
    for i, a in enumerate(best):
        for b in best[i + 1 :]:
            p_values[(a.structure, b.structure)] = welch_p(a.test_acc_values, b.test_acc_values)
    return BestComparison(best, p_values, next(iter(protocols.values()), None))


def _paper_order_structure(structure: str) -> int:
    return STRUCTURES.index(structure) if structure in STRUCTURES else 99


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test; NaN when either side has fewer than 2 values."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return _p_value("ttest_ind", a, b, equal_var=False)


def paired_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the paired t-test (a[i] and b[i] share repetition i, hence its data);
    NaN with fewer than 2 pairs or unequal lengths, 1.0 when every pair is equal."""
    if len(a) < 2 or len(a) != len(b):
        return math.nan
    if all(x == y for x, y in zip(a, b)):
        return 1.0
    return _p_value("ttest_rel", a, b)


def _p_value(test: str, a: list[float], b: list[float], **options) -> float:
    from scipy import stats as scipy_stats

    with warnings.catch_warnings():  # near-identical samples: scipy warns, the NaN p-value says it
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(getattr(scipy_stats, test)(a, b, **options).pvalue)
