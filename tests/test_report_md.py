"""``pairs report``: one Markdown file with every section, its figures and the run information."""

import datetime as dt

import pytest
from typer.testing import CliRunner

from core.config import ConfigError
from core.reproduction import (
    SECTIONS,
    format_duration,
    nest_headings,
    readme_choices,
    write_report,
)
from tests.conftest import tiny
from tests.report_fixtures import add_known_curves
from tui.cli import app

NOW = dt.datetime(2025, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
README = """# pairs

Intro.

## Choices where the paper is silent

- Optimizer: measured, SGD wins.
- Batch size: 4.

### A sub-heading stays

Details.

## Next section

Not included.
"""


@pytest.fixture
def grid(store):
    for structure, arch, acc in (
        ("independent", "A4", [0.80, 0.81, 0.82]),
        ("shared", "A5", [0.84, 0.85, 0.86]),
        ("shared-aux", "A6", [0.86, 0.87, 0.88]),
    ):
        add_known_curves(store, tiny(structure=structure, arch=arch, kernel=5, epochs=3), test_acc=acc)
    return store


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "docs" / "reproduction").mkdir(parents=True)
    (root / "README.md").write_text(README)
    (root / "docs" / "reproduction" / "choices.md").write_text(
        "# Measured choices\n\n| optimizer | val acc |\n|---|---|\n| sgd | 84.1 |\n"
    )
    return root


def test_report_has_every_section_and_figure(grid, repo, tmp_path):
    result = write_report(grid, tmp_path / "out", repo_root=repo, now=NOW)
    text = result.path.read_text()
    assert result.path == tmp_path / "out" / "report.md"
    positions = [text.index(f"\n## {section}\n") for section in SECTIONS]
    assert positions == sorted(positions)
    assert 'V. Bordignon, "Image Classification: The Impact of Weight Sharing' in text
    assert "on 2025-01-02 03:04 UTC" in text
    # protocol: every default, the values used, what the paper says
    assert "| `batch_size` | 4 | 4 | not stated |" in text
    assert "| `epochs` | 30 | 3 | 30 |" in text
    assert "| repetitions | 10 | 3 | 10 |" in text
    # the README's section, sub-headings included, nothing after it
    assert "- Optimizer: measured, SGD wins.\n- Batch size: 4.\n\n#### A sub-heading stays" in text
    assert "Not included." not in text
    # Tables II-IV with the paper, and the summary line
    for number in ("II", "III", "IV"):
        assert f"### Table {number}: " in text
    assert (
        "0 of 3 cells with done runs within 2σ of the paper on mean validation accuracy; "
        "33 of the paper's 36 cells have no done runs here: independent A1 k3" in text
    )
    # one protocol, named, and the caveat: these 3-epoch runs are not the paper's protocol
    assert "- Protocol 3ep sgd b4 lr .01/15x.1 pairs 100/10/100, id " in text
    assert "**Caveat: these runs use protocol 3ep sgd b4 lr .01/15x.1 pairs 100/10/100" in text
    assert "| 79.70 ± 3.13 |" not in text and "| 82.90 ± 3.28 |" in text
    # the best setups on the test set, Welch p-values and the paper's test numbers
    assert "| shared | A5 k5 | 0.4100 ± 0.0100 | 85.00 ± 1.00 | A5 k5 |" in text
    assert "Welch's t-test on test accuracy, independent vs shared: p = " in text
    assert "(independent < shared < shared-aux) holds here" in text
    # figures next to the report, linked from it
    names = ["fig4-independent.png", "fig5-shared.png", "fig6-shared-aux.png"]
    assert [f.name for f in result.figures] == names
    for name in names:
        figure = tmp_path / "out" / name
        assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 1000
        assert f"]({name})" in text
    # evidence verbatim, data source, machine and wall time
    assert "### Measured choices\n\n| optimizer | val acc |\n|---|---|\n| sgd | 84.1 |" in text
    assert f"`{grid.path}`" in text and "`sample`" in text
    assert "9 done" in text and "CPU(s)" in text
    assert "torch version: 2.9.0+test (9 runs)" in text
    assert "(`runs.code_version`): 0.1.0 (9 runs)." in text and "mixed code" not in text
    assert "report: unknown." in text  # tmp_path is not a git checkout
    assert "9 min 00 s of training summed over 9 done runs; 4 min 20 s from the first start" in text


def test_report_without_readme_section_or_evidence(grid, tmp_path):
    text = write_report(grid, tmp_path / "out", repo_root=tmp_path / "nothing").path.read_text()
    assert "conv(k × k, same padding) → ReLU → max-pool 2" in text
    assert "linear layer on the 20 digit logits" in text
    assert "Optimizer: SGD" in text and "batch size 4" in text
    assert "mean and std of the training split" in text and "PyTorch's default" in text
    assert "No measurements recorded yet" in text


def test_report_of_an_empty_database(store, tmp_path):
    result = write_report(store, tmp_path / "out", repo_root=tmp_path)
    text = result.path.read_text()
    assert all(f"\n## {section}\n" in text for section in SECTIONS)
    assert result.figures == [] and "No done runs yet" in text


def test_report_command(grid, tmp_path):
    out = tmp_path / "deep" / "report"
    result = CliRunner().invoke(app, ["report", "--output", str(out), "--db", str(grid.path)])
    assert result.exit_code == 0, result.output
    assert "report.md and 3 figure(s)" in result.output
    assert (out / "report.md").is_file()
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["report", "--output", str(tmp_path / "file"), "--db", str(grid.path)])
    assert isinstance(result.exception, ConfigError)


def test_readme_choices_and_durations(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# x\n\n## Choices where the paper is silent (measured)\n\nbody\n")
    assert readme_choices(path) == "body"
    assert readme_choices(tmp_path / "absent.md") is None
    assert format_duration(7384) == "2 h 03 min"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(None) == "unknown"


def test_nest_headings_leaves_code_alone():
    text = "## A\n\n```\n# not a heading\n```\n### B\n"
    assert nest_headings(text, 3) == "### A\n\n```\n# not a heading\n```\n#### B\n"
    assert nest_headings("#### deep\n", 3) == "#### deep\n"
