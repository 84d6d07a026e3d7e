import csv
import io
import math
import warnings

import pytest

from core.api import best, open_store, queue, render_best, render_rows, table_rows
from core.report import paper_tables
from core.stats import MeanStd, welch_p
from tests.conftest import tiny


def _finish(store, config, rep, val_acc, val_loss, train_loss, test_acc, test_loss=0.4):
    rid = f"{config.id}-r{rep:03d}"
    store.db["epochs"].insert(
        {
            "run_id": rid,
            "epoch": config.epochs,
            "train_loss": train_loss,
            "train_main_loss": train_loss,
            "train_acc": 1.0,
            "val_loss": val_loss,
            "val_main_loss": val_loss,
            "val_acc": val_acc,
            "lr": 0.001,
            "seconds": 1.0,
        },
    )
    store.db["runs"].update(rid, {"status": "done", "test_acc": test_acc, "test_loss": test_loss})


@pytest.fixture
def known(store):
    a, b = tiny(structure="shared", arch="A1"), tiny(structure="shared", arch="A2")
    c = tiny(structure="independent", arch="A1")
    queue(store, [a, b, c], 3)
    for rep, acc in enumerate([0.80, 0.82, 0.84]):
        _finish(store, a, rep, acc, 0.5 + rep * 0.1, 0.01, 0.85 + rep * 0.01)
    for rep, acc in enumerate([0.70, 0.90]):
        _finish(store, b, rep, acc, 0.3, 0.02, 0.80)
    for rep, acc in enumerate([0.75, 0.77, 0.79]):
        _finish(store, c, rep, acc, 0.4, 0.03, 0.70 + rep * 0.02)
    return store, a, b, c


def test_mean_std_uses_the_sample_std():
    value = MeanStd.of([0.80, 0.82, 0.84])
    assert value.mean == pytest.approx(0.82)
    assert value.std == pytest.approx(0.02)
    assert MeanStd.of([1.0]).std is None


def test_known_rows_give_known_mean_std_and_bold(known):
    store, a, b, c = known
    rows = {r.config_id: r for r in table_rows(store)}
    assert rows[a.id].metrics["val_acc"].mean == pytest.approx(0.82)
    assert rows[a.id].metrics["val_acc"].std == pytest.approx(0.02)
    assert rows[a.id].metrics["val_loss"].mean == pytest.approx(0.6)
    assert rows[b.id].done == 2 and rows[b.id].total == 3 and not rows[b.id].complete
    # within "shared": A1 has the best accuracy (0.82 > 0.80), A2 the best loss (0.3 < 0.6)
    assert rows[a.id].bold == {"val_acc"}
    assert rows[b.id].bold == {"val_loss"}
    assert rows[c.id].bold == {"val_loss", "val_acc"}


def test_markdown_layout(known):
    store, *_ = known
    text = render_rows(table_rows(store), "markdown")
    assert "### Table II: Training performance using two independent CNNs" in text
    assert "### Table III: Training performance using weight sharing" in text
    assert "| A1 | 3 | 0.0100 ± 0.0000 | 0.6000 ± 0.1000 | **82.00 ± 2.00** | 3/3 |" in text
    assert "2/3 (unfinished)" in text


def test_latex_csv_json(known):
    store, *_ = known
    rows = table_rows(store)
    assert r"\textbf{82.00 $\pm$ 2.00}" in render_rows(rows, "latex")
    csv_text = render_rows(rows, "csv")
    assert csv_text.splitlines()[0].startswith("protocol,protocol_id,structure,arch,kernel,config_id,done,total")
    assert '"val_acc_mean": 0.82' in render_rows(rows, "json").replace("0.8200000000000001", "0.82")


def test_best_setups_and_welch(known):
    store, a, b, c = known
    comparison = best(store)
    by_structure = {x.structure: x for x in comparison.best}
    assert by_structure["shared"].row.config_id == a.id
    assert by_structure["shared"].test["test_acc"].mean == pytest.approx(0.86)
    p = comparison.p_values[("independent", "shared")]
    assert p == pytest.approx(welch_p([0.70, 0.72, 0.74], [0.85, 0.86, 0.87]))
    assert 0 < p < 0.05
    assert math.isnan(welch_p([1.0], [1.0, 2.0]))


def test_identical_accuracies_give_no_p_value_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(welch_p([0.85] * 10, [0.85] * 10))


def test_best_csv_carries_the_p_values(known):
    store, a, b, c = known
    comparison = best(store)
    records = list(csv.DictReader(io.StringIO(render_best(comparison, "csv"))))
    assert {"welch_p_vs_independent", "welch_p_vs_shared"} <= set(records[0])
    independent = records[0]
    assert independent["structure"] == "independent" and independent["welch_p_vs_independent"] == ""
    assert float(independent["welch_p_vs_shared"]) == pytest.approx(comparison.p_values[("independent", "shared")])


def test_rows_alike_but_for_the_protocol_are_told_apart_and_failures_shown(store):
    slow, wild = tiny(structure="shared", arch="A1"), tiny(structure="shared", arch="A1", lr=1e6)
    queue(store, [slow, wild], 2)
    for rep in range(2):
        _finish(store, slow, rep, 0.8, 0.5, 0.1, 0.8)
        store.db["runs"].update(f"{wild.id}-r{rep:03d}", {"status": "failed", "error": "diverged"})
    rows = {r.config_id: r for r in table_rows(store)}
    assert rows[slow.id].protocol.label == "2ep sgd b4 lr .01/15x.1 pairs 100/10/100"
    assert rows[wild.id].protocol.label == "2ep sgd b4 lr 1e+06/15x.1 pairs 100/10/100"
    text = render_rows(list(rows.values()), "markdown")
    # each protocol its own table under its heading; the diverged one shows its failures
    assert text.count("## Protocol ") == 2 and text.count("### Table III") == 2
    assert "## Protocol 2ep sgd b4 lr 1e+06/15x.1 pairs 100/10/100, id " in text
    assert "| A1 | 3 | - | - | - | 0/2 (unfinished, 2 failed) |" in text
    assert "appear more than once" not in text


def test_tables_follow_the_papers_order(known):
    store, *_ = known
    titles = [t.title for t in paper_tables(table_rows(store))]
    assert titles[0].startswith("Table II") and titles[1].startswith("Table III")


def test_empty_database_gives_empty_tables(fresh_db):
    with open_store(fresh_db) as s:
        assert table_rows(s) == []
        assert best(s).best == []


def test_paired_p_matches_the_t_statistic_of_the_differences():
    from core.stats import paired_p

    a, b = [0.80, 0.82, 0.85, 0.81], [0.78, 0.81, 0.82, 0.80]
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    t = mean / (sd / math.sqrt(len(diffs)))
    from scipy import stats

    assert paired_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), len(diffs) - 1))
    assert paired_p(a, a) == 1.0
    assert math.isnan(paired_p([1.0], [1.0])) and math.isnan(paired_p([1.0, 2.0], [1.0]))
