"""Protocols (issue 15): no report ever aggregates, ranks, bolds or tests across protocols.

One database holds the paper's protocol, a 2-epoch protocol and an Adam protocol for the same
setups; three more databases hold each protocol's runs alone (the very same values). Every
report of the mixed database, for each protocol, must equal the report of that protocol's own
database: the same means, the same bold cells, the same p-values.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_tui_support import settle, wait_for
from textual.widgets import DataTable, Static
from typer.testing import CliRunner

from core import api
from core.compare import summary
from core.config import RunConfig
from core.protocol import Protocol, ProtocolChoice, group_by_protocol
from core.report import paper_tables
from core.reproduction import write_report
from core.stats import MeanStd, best_per_protocol, best_setups, setup_rows
from tests.report_fixtures import add_runs
from tui.app import make_app
from tui.cli import app
from tui.screens.tables import TablesScreen

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = {"paper": {}, "two": {"epochs": 2}, "adam": {"optimizer": "adam"}}
SETUPS = [(s, a, 5) for s in ("independent", "shared", "shared-aux") for a in ("A1", "A2", "A5")]


def _config(name: str, structure: str, arch: str, kernel: int) -> RunConfig:
    return RunConfig(structure=structure, arch=arch, kernel=kernel, **PROTOCOLS[name])


def _values(name: str):
    """Per setup of protocol ``name``: 3 runs of known final metrics and test accuracies
    (each protocol its own numbers, so mixing any two would show)."""
    rnd = random.Random(name)
    for setup in SETUPS:
        config = _config(name, *setup)
        runs = [
            {
                config.epochs: {
                    "train_loss": rnd.uniform(0.01, 0.5),
                    "val_loss": rnd.uniform(0.3, 0.9),
                    "val_acc": rnd.uniform(0.70, 0.92),
                }
            }
            for _ in range(3)
        ]
        yield config, runs, [rnd.uniform(0.70, 0.92) for _ in range(3)]


def _fill(store, names) -> None:
    for name in names:
        for config, runs, test_acc in _values(name):
            add_runs(store, config, runs, test_acc)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    """{"mixed": path, "paper": path, "two": path, "adam": path}."""
    root = tmp_path_factory.mktemp("protocols")
    paths = {"mixed": root / "mixed.db", **{n: root / f"{n}.db" for n in PROTOCOLS}}
    for key, path in paths.items():
        with api.open_store(path) as store:
            _fill(store, PROTOCOLS if key == "mixed" else [key])
    return paths


def ids() -> dict[str, str]:
    return {name: Protocol.of(_config(name, *SETUPS[0])).id for name in PROTOCOLS}


def pairs(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def pairs_error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code != 0
    return str(result.exception)


def sections(text: str, marker: str) -> list[str]:
    """``text`` cut at each line starting with ``marker`` (the protocol headings)."""
    parts = re.split(rf"(?m)^(?={re.escape(marker)})", text)
    return [p.strip() for p in parts if p.startswith(marker)]


# -- the protocol itself -------------------------------------------------------------------------


def test_protocol_labels_ids_and_the_papers():
    paper = Protocol.of(RunConfig())
    assert paper.is_paper and paper.label == "paper"
    assert paper.description == "30ep sgd b4 lr .01/15x.1"
    two = Protocol.of(RunConfig(epochs=2, arch="A1"))
    assert two.label == "2ep sgd b4 lr .01/15x.1" and not two.is_paper
    beyond = Protocol.of(
        RunConfig(
            optimizer="adam",
            lr=0.001,
            batch_size=32,
            aux_weight=0.5,
            data="mnist",
            train_pairs=500,
            val_pairs=50,
            seed=3,
            precision="bf16",
            batch_norm=True,
            dropout=0.3,
        )
    )
    assert beyond.label == ("30ep adam b32 lr .001/15x.1 aux .5 mnist pairs 500/50/1000 seed 3 bf16 bn drop 0.3")
    # the setup is not part of the protocol; every other field is
    assert Protocol.of(RunConfig(structure="independent", arch="A1", kernel=3)).id == paper.id
    assert (
        len(
            {
                Protocol.of(RunConfig(**{k: v})).id
                for k, v in [
                    ("epochs", 2),
                    ("lr", 0.02),
                    ("seed", 1),
                    ("precision", "bf16"),
                    ("dropout", 0.1),
                    ("rotate", 5.0),
                    ("swap", True),
                ]
            }
            | {paper.id}
        )
        == 8
    )
    # one value, one spelling: -0.0 and 0, 10 and 10.0, a database row and its RunConfig
    assert Protocol.of({"aux_weight": -0.0}).id == Protocol.of({"aux_weight": 0}).id
    assert Protocol.of({"rotate": 10}).id == Protocol.of({"rotate": 10.0}).id
    config = RunConfig(swap=True, rotate=10.0)
    row = {**{k: v for k, v in config.to_dict().items()}, "options": json.dumps({"swap": 1, "rotate": 10})}
    assert Protocol.of(row).id == Protocol.of(config).id
    assert re.fullmatch(r"[0-9a-f]{16}", paper.id)


def test_protocol_choice_by_flags_label_and_id():
    protocols = [Protocol.of(_config(n, *SETUPS[0])) for n in PROTOCOLS]
    by_flag = ProtocolChoice.from_options(None, {"epochs": ["2"]}).select(protocols)
    assert [p.label for p in by_flag] == ["2ep sgd b4 lr .01/15x.1"]
    thirty = ProtocolChoice.from_options(None, {"epochs": "30"}).select(protocols)
    assert [p.label for p in thirty] == ["paper", "30ep adam b4 lr .01/15x.1"]  # paper first
    assert ProtocolChoice.from_options(None, {"epochs": "30", "optimizer": "adam"}).select(protocols) == [protocols[2]]
    assert ProtocolChoice.from_options("paper").select(protocols) == [protocols[0]]
    assert ProtocolChoice.from_options(protocols[2].id[:6]).select(protocols) == [protocols[2]]
    assert ProtocolChoice.from_options("30ep adam b4 lr .01/15x.1").select(protocols) == [protocols[2]]
    assert ProtocolChoice().select(protocols) == protocols
    with pytest.raises(api.ConfigError, match=r"matches --epochs 7: available: paper \(id "):
        ProtocolChoice.from_options(None, {"epochs": "7"}).select(protocols)
    with pytest.raises(api.ConfigError, match="--epochs must be an integer, got 'x'"):
        ProtocolChoice.from_options(None, {"epochs": "x"})


# -- no aggregate ever mixes two protocols -------------------------------------------------------


def test_no_aggregate_row_mixes_two_protocol_ids(dbs):
    with api.open_store(dbs["mixed"], create=False) as store:
        rows = setup_rows(store)
        protocol_of_config = {r["id"]: Protocol.of(r).id for r in store.db.query("SELECT * FROM configs")}
        runs = list(
            store.db.query(  # each run's final epoch, straight from the epochs table
                "SELECT r.config_id, r.status, e.val_acc AS final_val_acc FROM runs r "
                "JOIN configs c ON c.id = r.config_id "
                "JOIN epochs e ON e.run_id = r.id AND e.epoch = c.epochs"
            )
        )
        comparisons = best_per_protocol(store, rows)
        with pytest.raises(ValueError, match="protocols"):
            best_setups(store, rows)
    assert len(rows) == len(SETUPS) * len(PROTOCOLS)
    assert [p.label for p, _ in group_by_protocol(rows)][0] == "paper"
    for row in rows:
        # every run aggregated into a row is of the row's protocol, and only those
        mine = [r for r in runs if r["config_id"] == row.config_id and r["status"] == "done"]
        assert {protocol_of_config[r["config_id"]] for r in mine} == {row.protocol.id}
        expected = MeanStd.of([r["final_val_acc"] for r in mine])
        assert row.metrics["val_acc"].mean == pytest.approx(expected.mean)
        assert row.metrics["val_acc"].n == len(mine) == 3
    # bold: the best of each (protocol, structure), exactly one per metric
    for key in {(r.protocol.id, r.structure) for r in rows}:
        group = [r for r in rows if (r.protocol.id, r.structure) == key]
        bold = [r for r in group if "val_acc" in r.bold]
        assert bold == [max(group, key=lambda r: r.metrics["val_acc"].mean)]
    # tables: each holds rows of one protocol (one table per protocol and structure)
    tables = paper_tables(rows)
    assert len(tables) == 3 * 3
    assert len({(t.protocol.id, t.title) for t in tables}) == len(tables)
    # the best setups and their p-values: each comparison within one protocol
    assert [c.protocol.label for c in comparisons][0] == "paper" and len(comparisons) == 3
    for c in comparisons:
        assert {b.row.protocol.id for b in c.best} == {c.protocol.id}
    with pytest.raises(ValueError, match="protocols"):
        summary(rows)


def test_table_every_format_equals_each_protocols_own_database(dbs):
    mixed = dbs["mixed"]
    own = {name: dbs[name] for name in PROTOCOLS}
    # markdown and latex: the mixed output is each protocol's own output, the paper's first
    for fmt, marker in (("markdown", "## Protocol "), ("latex", r"\section*{Protocol ")):
        parts = sections(pairs("table", "-f", fmt, "--db", mixed), marker)
        assert parts == [sections(pairs("table", "-f", fmt, "--db", own[n]), marker)[0] for n in PROTOCOLS], fmt
    # csv and json: protocol columns; each protocol's records equal its own database's
    records = list(csv.DictReader(io.StringIO(pairs("table", "-f", "csv", "--db", mixed))))
    data = json.loads(pairs("table", "-f", "json", "--db", mixed))
    for name, protocol_id in ids().items():
        alone = list(csv.DictReader(io.StringIO(pairs("table", "-f", "csv", "--db", own[name]))))
        assert [r for r in records if r["protocol_id"] == protocol_id] == alone
        assert [r for r in data if r["protocol_id"] == protocol_id] == json.loads(
            pairs("table", "-f", "json", "--db", own[name])
        )
        # choosing the protocol, by id or by the queue's flags, gives the same records
        assert json.loads(pairs("table", "-f", "json", "--protocol", protocol_id[:8], "--db", mixed)) == json.loads(
            pairs("table", "-f", "json", "--db", own[name])
        )
    assert json.loads(pairs("table", "-f", "json", "--epochs", "2", "--db", mixed)) == json.loads(
        pairs("table", "-f", "json", "--db", own["two"])
    )
    assert json.loads(
        pairs("table", "-f", "json", "--epochs", "30", "--optimizer", "adam", "--db", mixed)
    ) == json.loads(pairs("table", "-f", "json", "--db", own["adam"]))
    # rich: a heading per protocol, then the tables of that protocol alone
    rich = pairs("table", "--db", mixed)
    headings = [line for line in rich.splitlines() if line.startswith("Protocol ")]
    assert [h.split(",")[0] for h in headings] == [
        "Protocol paper (30ep sgd b4 lr .01/15x.1",
        "Protocol 2ep sgd b4 lr .01/15x.1",
        "Protocol 30ep adam b4 lr .01/15x.1",
    ]
    for name in PROTOCOLS:
        assert pairs("table", "--protocol", ids()[name], "--db", mixed) == pairs("table", "--db", own[name])


def test_bad_protocol_choice_is_one_line_naming_the_available_ones(dbs):
    message = pairs_error("table", "--protocol", "lbfgs", "--db", dbs["mixed"])
    assert message.startswith("no protocol in this database matches --protocol lbfgs: available: paper (id ")
    assert "2ep sgd b4 lr .01/15x.1 (id " in message and "\n" not in message
    assert "30ep adam" in pairs_error("best", "--epochs", "5", "--db", dbs["mixed"])


def test_best_and_its_p_values_per_protocol(dbs):
    mixed = dbs["mixed"]
    markdown = sections(pairs("best", "-f", "markdown", "--db", mixed), "## Protocol ")
    assert markdown == [sections(pairs("best", "-f", "markdown", "--db", dbs[n]), "## Protocol ")[0] for n in PROTOCOLS]
    data = json.loads(pairs("best", "-f", "json", "--db", mixed))
    assert [d["protocol_id"] for d in data] == list(ids().values())
    for name, entry in zip(PROTOCOLS, data):
        (alone,) = json.loads(pairs("best", "-f", "json", "--db", dbs[name]))
        assert entry == alone
        # the p-values are those of that protocol's runs alone
        with api.open_store(dbs[name], create=False) as store:
            comparison = best_setups(store)
        for (a, b), p in comparison.p_values.items():
            assert entry["welch_p_test_acc"][f"{a} vs {b}"] == pytest.approx(p)
    records = list(csv.DictReader(io.StringIO(pairs("best", "-f", "csv", "--db", mixed))))
    assert len(records) == 9 and {r["protocol"] for r in records} == {
        "paper",
        "2ep sgd b4 lr .01/15x.1",
        "30ep adam b4 lr .01/15x.1",
    }
    rich = pairs("best", "--epochs", "2", "--db", mixed)
    assert rich == pairs("best", "--db", dbs["two"])


def test_compare_paper_uses_the_papers_protocol_unless_asked(dbs):
    mixed = dbs["mixed"]
    for fmt in ("rich", "markdown", "latex", "csv", "json"):
        assert pairs("table", "--compare", "paper", "-f", fmt, "--db", mixed) == pairs(
            "table", "--compare", "paper", "-f", fmt, "--db", dbs["paper"]
        ), fmt
    text = pairs("table", "--compare", "paper", "-f", "markdown", "--db", mixed)
    assert "caveat" not in text.lower() and text.count("## Protocol ") == 1
    # only cells with done runs count; the others are named
    assert "0 of 9 cells with done runs" not in text
    assert re.search(
        r"Overall: \d of 9 cells with done runs within 2σ of the paper on mean "
        r"validation accuracy; 27 of the paper's 36 cells have no done runs here: "
        r"independent A1 k3, A2 k3, A3 k3, A3 k5, ",
        text,
    )
    # another protocol when asked, with a visible caveat
    result = CliRunner().invoke(app, ["table", "--compare", "paper", "--epochs", "2", "--db", str(mixed)])
    assert result.exit_code == 0
    assert "caveat: these runs use protocol 2ep sgd b4 lr .01/15x.1, not the paper's" in result.output.replace(
        "\n", " "
    )
    md = pairs("table", "--compare", "paper", "-f", "markdown", "--epochs", "2", "--db", mixed)
    assert "Caveat: these runs use protocol 2ep" in md
    assert md == pairs("table", "--compare", "paper", "-f", "markdown", "--protocol", ids()["two"], "--db", dbs["two"])
    # JSON: plain --format json's records plus comparison fields
    plain = json.loads(pairs("table", "-f", "json", "--db", dbs["paper"]))
    compared = json.loads(pairs("table", "--compare", "paper", "-f", "json", "--db", mixed))
    assert isinstance(compared, list) and len(compared) == len(plain)
    for ours, record in zip(compared, plain):
        assert {k: ours[k] for k in record} == record and "val_acc_sigma" in ours
    # no paper protocol at all: say so, name the protocols, suggest the choice
    message = pairs_error("table", "--compare", "paper", "--db", dbs["adam"])
    assert "no runs of the paper's protocol" in message and "--protocol" in message
    assert "30ep adam b4 lr .01/15x.1 (id " in message


def test_plot_asks_to_choose_among_protocols(dbs, tmp_path):
    mixed = dbs["mixed"]
    message = pairs_error("plot", "--structure", "shared", "--arch", "A1", "--db", mixed)
    assert message.startswith("shared A1 k5 has runs of 3 protocols: choose one with --protocol")
    assert "paper (id " in message and "2ep sgd b4 lr .01/15x.1 (id " in message
    from core.curves import epoch_curves
    from tui.cli.reports import _one_protocol

    for name in PROTOCOLS:
        config = _config(name, "shared", "A1", 5)
        label = Protocol.of(config).label
        figure = tmp_path / f"{name}.png"
        said = pairs(
            "plot", "--structure", "shared", "--arch", "A1", "--protocol", ids()[name], "-o", figure, "--db", mixed
        )
        assert f"(shared A1 k5, protocol {label}, 3 run(s))" in said
        assert figure.read_bytes().startswith(b"\x89PNG")
        # the curves plotted are that protocol's runs alone
        with api.open_store(mixed, create=False) as store:
            chosen = _one_protocol(store, config.id, ProtocolChoice.from_options(ids()[name]))
            curves = epoch_curves(store, chosen)
        with api.open_store(dbs[name], create=False) as store:
            alone = epoch_curves(store, config.id)
        assert chosen == config.id and curves["metrics"] == alone["metrics"]


def test_report_covers_one_protocol(dbs, tmp_path):
    def body(path) -> str:
        text = path.read_text()
        return text[text.index("## Tables II–IV compared") : text.index("## Figures 4–6")]

    with api.open_store(dbs["mixed"], create=False) as store:
        mixed = write_report(store, tmp_path / "mixed", repo_root=tmp_path).path
        adam = write_report(
            store, tmp_path / "mixed-adam", repo_root=tmp_path, choice=ProtocolChoice.from_options(ids()["adam"])
        ).path
        with pytest.raises(api.ConfigError, match="matches 2 protocols"):
            write_report(store, tmp_path / "x", choice=ProtocolChoice.from_options(None, {"epochs": "30"}))
    with api.open_store(dbs["paper"], create=False) as store:
        paper = write_report(store, tmp_path / "paper", repo_root=tmp_path).path
    with api.open_store(dbs["adam"], create=False) as store:
        adam_alone = write_report(store, tmp_path / "adam", repo_root=tmp_path).path
    assert body(mixed) == body(paper)
    assert body(adam) == body(adam_alone)
    assert "Not in this report (other protocols of this database" in mixed.read_text()
    assert "**Caveat: these runs use protocol 30ep adam" in adam.read_text()
    pairs("report", "--output", tmp_path / "cli", "--protocol", "paper", "--db", dbs["mixed"])
    assert body(tmp_path / "cli" / "report.md") == body(paper)


async def test_console_tables_show_one_protocol_at_a_time(dbs):
    app_ = make_app(dbs["mixed"], workers=1)
    expected = {}
    for name in PROTOCOLS:
        with api.open_store(dbs[name], create=False) as store:
            rows = api.table_rows(store)
            expected[name] = (api.paper_tables(rows), best_setups(store, rows))
    async with app_.run_test(size=(140, 45)) as pilot:
        await pilot.press("4")
        screen = await settle(pilot, TablesScreen)
        await wait_for(pilot, lambda: screen.data is not None)
        for step, name in enumerate(PROTOCOLS):
            indicator = str(screen.query_one("#tables-protocol", Static).render())
            assert f"Protocol {step + 1} of 3: " in indicator
            assert Protocol.of(_config(name, *SETUPS[0])).heading.removeprefix("Protocol ") in indicator
            tables, comparison = expected[name]
            for table in tables:
                structure = {"Table II": "independent", "Table III": "shared", "Table IV": "shared-aux"}[
                    table.title.split(":")[0]
                ]
                widget = screen.query_one(f"#table-{structure}", DataTable)
                shown = [[cell.plain for cell in widget.get_row_at(i)] for i in range(widget.row_count)]
                assert shown == [[c.text for c in row] for row in table.rows]
                bold = [[("bold" in str(cell.style)) for cell in widget.get_row_at(i)] for i in range(widget.row_count)]
                assert bold == [[c.bold for c in row] for row in table.rows]
            notes = str(screen.query_one("#notes-best", Static).render())
            for (a, b), p in comparison.p_values.items():
                assert f"{a} vs {b}: p = " in notes
                assert (f"p = {p:.3f}" in notes) or math.isnan(p) or p < 1e-3
            await pilot.press("p")
            await pilot.pause()
        assert screen.data.index == 0  # round the three protocols and back to the paper's


@pytest.mark.slow
def test_shell_completion_of_option_values(dbs, monkeypatch):
    from tui.cli import complete_arch, complete_format, complete_protocol, complete_structure

    assert complete_structure("sh") == ["shared", "shared-aux"]
    assert complete_structure("independent,sh") == ["independent,shared", "independent,shared-aux"]
    assert complete_arch("a") == ["A1", "A2", "A3", "A4", "A5", "A6"]
    assert complete_format("l") == ["latex"]

    class Ctx:
        params = {"db": dbs["mixed"]}

    assert complete_protocol(Ctx(), "pa") == ["paper"]
    assert ids()["adam"] in complete_protocol(Ctx(), ids()["adam"][:3])
    Ctx.params = {"db": dbs["mixed"].parent / "absent.db"}
    assert complete_protocol(Ctx(), "") == []  # never an error while completing
    # through the shell's own protocol (Click's completion environment variables)
    env = {
        **os.environ,
        "_PAIRS_COMPLETE": "complete_bash",
        "COMP_WORDS": f"pairs table --db {dbs['mixed']} --protocol pa",
        "COMP_CWORD": "5",
    }
    code = "import sys; sys.argv = ['pairs']; from tui.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.stdout.split() == ["paper"], (done.stdout, done.stderr)
    env["COMP_WORDS"], env["COMP_CWORD"] = "pairs table --structure independent,sh", "3"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.stdout.split() == ["independent,shared", "independent,shared-aux"], done.stderr


# -- smaller truths --------------------------------------------------------------------------------


async def test_console_banner_for_a_foreign_sqlite_file_gives_advice_that_works(tmp_path):
    import sqlite3

    db = tmp_path / "photos.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    app_ = make_app(db, workers=1)
    async with app_.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app_.db_error is not None)
        assert "another program" in app_.db_error and "choose another --db" in app_.db_error
        assert "queue runs to start one" not in app_.db_error
    # and the advice it no longer gives would indeed fail
    with pytest.raises(api.StoreError, match="another program"):
        api.open_store(db)


def test_retry_with_nothing_to_retry_says_so(dbs):
    output = pairs("retry", "--db", dbs["paper"])
    assert output.strip() == "nothing to retry: no failed runs in this database"
    assert "pairs work" not in output


def test_run_help_shows_list_defaults_and_three_pair_counts():
    output = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    text = " ".join(output.replace("│", " ").split())
    assert "[default: shared]" in text and "[default: A5]" in text and "[default: 30]" in text
    assert "Training pairs per repetition (the validation pairs are taken out of these)" in text
    assert "Validation pairs per repetition, taken out of the training pairs" in text
    assert "Test pairs per repetition" in text and "Pairs per repetition." not in text


@pytest.mark.slow
def test_piped_lines_never_wrap_mid_number(tmp_path):
    line = "shared-aux A1 k3: 2 run(s) done; validation accuracy 85.00 ± 1.23 %, " * 3
    code = f"from tui.cli import out; out.print({line!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "80"}
    )
    assert done.stdout == line + "\n"
