"""``--compare paper``: the shipped paper numbers and a fixture with known differences."""

import csv
import io
import json
from pathlib import Path

import pytest

from core.compare import (
    compare_best_table,
    compare_records,
    compare_tables,
    format_sigma,
    paper_test,
    paper_validation,
    render_comparison,
    summary_line,
)
from core.config import ARCHITECTURES, KERNELS, PAPER_STRUCTURES, ConfigError
from core.report import render as render_rows
from core.report import to_markdown
from core.stats import best_setups, setup_rows
from tests.conftest import tiny
from tests.report_fixtures import add_final, add_runs, at_sigma

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _one_epoch(structure, arch, kernel):
    return tiny(structure=structure, arch=arch, kernel=kernel, epochs=1)


@pytest.fixture
def known(store):
    """shared A1 k3: val acc +1σ, val loss -2.5σ; shared A1 k5: val acc -3σ;
    independent A1 k3: val acc +0.5σ, train loss +4σ."""
    for (structure, arch, kernel), z in {
        ("shared", "A1", 3): {"val_acc": 1.0, "val_loss": -2.5},
        ("shared", "A1", 5): {"val_acc": -3.0},
        ("independent", "A1", 3): {"val_acc": 0.5, "train_loss": 4.0},
    }.items():
        add_final(store, _one_epoch(structure, arch, kernel), at_sigma(structure, arch, kernel, z))
    return store


def test_shipped_numbers_are_the_papers():
    setups = paper_validation()
    assert len(setups) == 36
    assert {s.key for s in setups.values()} == {
        (s, a, k) for s in PAPER_STRUCTURES for a in ARCHITECTURES for k in KERNELS
    }
    shared_a5 = setups[("shared", "A5", 5)]
    assert shared_a5.table == "III"
    assert shared_a5.metrics["val_acc"].mean == pytest.approx(0.846)
    assert shared_a5.metrics["val_acc"].std == pytest.approx(0.0222)
    assert shared_a5.metrics["val_loss"].mean == pytest.approx(0.6079)
    best = paper_test()
    assert (best["shared-aux"].arch, best["shared-aux"].kernel) == ("A6", 5)
    assert best["independent"].metrics["test_acc"].mean == pytest.approx(0.8349)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/reference is not beside the repository")
def test_shipped_csvs_equal_the_reference():
    shipped = Path(__file__).resolve().parents[1] / "core" / "reference"
    for name in ("paper_validation.csv", "paper_test.csv"):
        ours = list(csv.DictReader(io.StringIO((shipped / name).read_text())))
        reference = list(csv.DictReader(io.StringIO((SHARED / name).read_text())))
        assert ours == reference, name


def test_format_sigma():
    assert format_sigma(1.26) == "+1.3σ"
    assert format_sigma(-0.04) == "+0.0σ"
    assert format_sigma(-2.5) == "-2.5σ"
    assert format_sigma(float("nan")) == "-"


def test_summary_counts_paper_cells_of_the_compared_structures(known):
    rows = setup_rows(known)
    line = summary_line(rows)
    # only cells with done runs count; the 21 others are named, not counted as misses
    assert line.startswith(
        "2 of 3 cells with done runs within 2σ of the paper on mean validation accuracy; "
        "21 of the paper's 24 cells have no done runs here: independent A1 k5, A2 k3, A2 k5, "
    )
    assert "; shared A2 k3, A2 k5, " in line and "A1 k3" not in line.split(": ", 1)[1]


def test_summary_of_a_full_grid(store):
    far = {
        ("shared", "A2", 3),
        ("independent", "A6", 5),
        ("shared-aux", "A1", 3),
        ("shared-aux", "A4", 5),
        ("shared", "A5", 5),
    }
    for key in paper_validation():
        add_final(store, _one_epoch(*key), at_sigma(*key, {"val_acc": 3.0 if key in far else -1.9}))
    line = summary_line(setup_rows(store))
    assert line == "31 of 36 cells with done runs within 2σ of the paper on mean validation accuracy"


def test_tables_show_the_papers_numbers_and_sigmas(known):
    tables = compare_tables(setup_rows(known))
    assert [t.title for t in tables] == [
        "Table II: Training performance using two independent CNNs, compared with the paper",
        "Table III: Training performance using weight sharing, compared with the paper",
    ]
    text = to_markdown(tables)
    # shared A1 k3: train loss on the paper's mean, val loss -2.5σ, val acc +1σ (79.70 + 3.13)
    assert (
        "| A1 | 3 | 0.1481 ± 0.0014 | 0.1481 ± 0.1239 | +0.0σ | **0.2071 ± 0.0014** | "
        "0.5176 ± 0.1242 | -2.5σ | **82.83 ± 0.14** | 79.70 ± 3.13 | +1.0σ | 2/2 |"
    ) in text
    assert "| A1 | 5 |" in text and "| -3.0σ |" in text and "| +4.0σ |" in text
    assert "validation accuracy: 1 of 2 with done runs within 2σ" in text
    assert (
        "- Overall: 2 of 3 cells with done runs within 2σ of the paper on mean validation "
        "accuracy; 21 of the paper's 24 cells have no done runs here: " in text
    )
    # these 1-epoch runs are not of the paper's protocol: the comparison says so
    assert text.rstrip().endswith("differences from the paper's numbers may come from the protocol.")


def test_records_csv_and_json(known):
    rows = setup_rows(known)
    records = {(r["structure"], r["kernel"]): r for r in compare_records(rows)}
    shared = records[("shared", 3)]
    assert shared["paper_table"] == "III"
    assert shared["paper_val_acc_mean"] == pytest.approx(0.797)
    assert shared["val_acc_sigma"] == pytest.approx(1.0)
    assert shared["val_loss_sigma"] == pytest.approx(-2.5)
    assert shared["val_acc_within_2sigma"] is True
    assert records[("shared", 5)]["val_acc_within_2sigma"] is False
    header = render_comparison(rows, "csv").splitlines()[0].split(",")
    expected = {"val_acc_mean", "paper_val_acc_mean", "paper_val_acc_std", "val_acc_sigma"}
    assert expected <= set(header)
    data = json.loads(render_comparison(rows, "json"))
    # the shape of plain --format json (a list of records) plus the comparison fields
    plain = json.loads(render_rows(rows, "json"))
    assert isinstance(data, list) and len(data) == len(plain) == 3
    for ours, record in zip(data, plain):
        assert {k: ours[k] for k in record} == record
        assert {"paper_val_acc_mean", "val_acc_sigma", "val_acc_within_2sigma"} <= set(ours)


def test_latex_and_bad_format(known):
    rows = setup_rows(known)
    latex = render_comparison(rows, "latex")
    assert r"79.70 $\pm$ 3.13" in latex and "+1.0σ" in latex
    with pytest.raises(ConfigError, match="markdown, latex, csv, json"):
        render_comparison(rows, "rich")


def test_unfinished_and_empty_rows(store):
    config = _one_epoch("shared", "A1", 3)
    store.queue([config], 2)
    text = render_comparison(setup_rows(store), "markdown")
    assert "| - | 0.1481 ± 0.1239 | - |" in text and "0/2 (unfinished)" in text
    assert "0 of 0 cells with done runs" in text
    assert "12 of the paper's 12 cells have no done runs here: shared A1 k3, A1 k5, " in text


def test_best_setups_beside_the_papers_test_numbers(store):
    for structure, arch, acc in (
        ("independent", "A4", [0.80, 0.82]),
        ("shared", "A5", [0.84, 0.86]),
        ("shared-aux", "A6", [0.87, 0.89]),
    ):
        config = _one_epoch(structure, arch, 5)
        add_runs(store, config, [{1: {"train_loss": 0.1, "val_loss": 0.5, "val_acc": 0.8}}] * 2, test_acc=acc)
    table = compare_best_table(best_setups(store))
    text = to_markdown([table])
    # shared: ours 85.00 ± 1.41 vs the paper's 85.46 ± 0.71 -> -0.6σ
    assert "| shared | A5 k5 |" in text and "85.00 ± 1.41 | A5 k5 |" in text
    assert "| 85.46 ± 0.71 | -0.6σ |" in text
    assert any("Welch's t-test on test accuracy, independent vs shared: p = " in n for n in table.notes)
    assert table.notes[-1].startswith(
        "Paper's ordering of the best test accuracies (independent < shared < shared-aux) holds"
    )
