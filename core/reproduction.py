"""``pairs report``: one Markdown file reproducing the paper from a database, with its figures.

The report states the protocol (every default, every choice the paper leaves open), Tables
II-IV beside the paper's numbers, the best setups on the test set with Welch p-values, Figs 4-6
(PNG files next to ``report.md``), the evidence for the choices, the data source, the machines,
the wall time, the torch version and the git commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import core
from core import compare, sources
from core.config import DEFAULT_REPS, EXTENSION_FIELDS, ConfigError, RunConfig
from core.curves import epoch_curves, save_figure
from core.protocol import Protocol, ProtocolChoice, available_line, ordered
from core.provenance import code_versions, mixed_line
from core.report import Cell, Table, format_mean_std, to_markdown
from core.stats import MeanStd, best_setups, setup_rows
from core.store import Store

REPORT_NAME = "report.md"
CHOICES_HEADING = "Choices where the paper is silent"
CHOICES_FILE = Path("docs") / "reproduction" / "choices.md"
FIGURE_NUMBERS = {"independent": 4, "shared": 5, "shared-aux": 6}
CITATION = (
    'V. Bordignon, "Image Classification: The Impact of Weight Sharing and Auxiliary '
    'Losses", EE-559 Deep Learning, EPFL.'
)
#: What the paper states for each RunConfig field (None: the paper is silent).
PAPER_SAYS: dict[str, str | None] = {
    "structure": "independent, shared, shared-aux (Figs 1-3)",
    "arch": "A1-A6 (Table I)",
    "kernel": "3 and 5",
    "epochs": "30",
    "lr": "0.01",
    "lr_step": "15 (0.001 after 15 epochs)",
    "lr_gamma": "0.1 (0.01 -> 0.001)",
    "optimizer": None,
    "batch_size": None,
    "aux_weight": "1 (eq. 2: main loss + both auxiliary losses)",
    "data": "MNIST digit pairs, 14x14",
    "train_pairs": "1000",
    "val_pairs": "100 (of the 1000 training pairs)",
    "test_pairs": "1000",
    "seed": None,
    "precision": None,
}
SECTIONS = (
    "Summary",
    "Data source",
    "Protocol",
    "Tables II–IV compared with the paper",
    "Best setups on the test set",
    "Figures 4–6",
    "Evidence for the choices",
    "Machine, software and wall time",
)


@dataclass
class ReportResult:
    path: Path
    figures: list[Path] = field(default_factory=list)


def report_protocol(store: Store, choice: ProtocolChoice | None = None) -> Protocol | None:
    """The one protocol a report covers: the chosen one, else the paper's, else the only one.
    ConfigError naming the available ones when that is not one protocol."""
    available = ordered(Protocol.of(r) for r in store.config_rows())
    if choice is not None and not choice.empty:
        chosen = choice.select(available)
        if len(chosen) > 1:
            raise ConfigError(
                f"{choice.describe()} matches {len(chosen)} protocols and a "
                f"report covers one: choose one of {available_line(chosen)}"
            )
        return chosen[0]
    if not available or available[0].is_paper or len(available) == 1:
        return available[0] if available else None
    raise ConfigError(
        f"{store.path} holds no runs of the paper's protocol and "
        f"{len(available)} others: choose one with --protocol; available: "
        f"{available_line(available)}"
    )


def write_report(
    store: Store,
    output: str | os.PathLike,
    *,
    repo_root: Path | None = None,
    now: dt.datetime | None = None,
    choice: ProtocolChoice | None = None,
) -> ReportResult:
    """Write ``output/report.md`` and its figures; returns their paths.

    The report covers one protocol (:func:`report_protocol`): the paper's by default; another
    one's tables carry a caveat. The other protocols of the database are named, not mixed in.
    """
    protocol = report_protocol(store, choice)
    output = _prepare_dir(Path(output))
    repo_root = Path(repo_root) if repo_root else Path(core.__file__).resolve().parents[1]
    rows = [r for r in setup_rows(store) if protocol is not None and r.protocol.id == protocol.id]
    comparison = best_setups(store, rows)
    figures = _figures(store, comparison, output)
    parts = [
        _header(store, now),
        _summary(rows, comparison, protocol, store),
        _data_source(store),
        _protocol(store, repo_root),
        _tables(rows),
        _best(store, rows, comparison),
        _figures_section(figures),
        _evidence(repo_root),
        _machine(store, repo_root, rows),
    ]
    path = output / REPORT_NAME
    path.write_text("\n\n".join(p.strip("\n") for p in parts) + "\n", encoding="utf-8")
    return ReportResult(path, [f.path for f in figures])


def _prepare_dir(output: Path) -> Path:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file: give a folder for report.md and figures")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {output} ({exc.strerror}): choose another --output") from None
    if not os.access(output, os.W_OK):
        raise ConfigError(f"the folder {output} is not writable: choose another --output")
    return output


# -- sections ---------------------------------------------------------------------------------


def _header(store: Store, now: dt.datetime | None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return (
        "# Reproduction report\n\n"
        f"Reproducing {CITATION}\n\n"
        f"Generated by `pairs report` (pairs {core.__version__}) from `{store.path}` on "
        f"{now.strftime('%Y-%m-%d %H:%M UTC')}. The paper's numbers ship in `core/reference/`."
    )


def _summary(rows, comparison, protocol: Protocol | None, store: Store) -> str:
    lines = ["## Summary", ""]
    if not rows or protocol is None:
        return "\n".join(lines + ["No configurations in this database yet."])
    lines.append(f"- {protocol.heading}: every table, best setup and test below is of this protocol's runs only.")
    others = [p for p in ordered(Protocol.of(r) for r in store.config_rows()) if p.id != protocol.id]
    if others:
        lines.append(
            f"- Not in this report (other protocols of this database; `pairs report "
            f"--protocol ID` reports one): {available_line(others)}."
        )
    line = compare.caveat(protocol)
    if line:
        lines.append(f"- **{line[0].upper() + line[1:]}.**")
    lines.append(f"- Tables II–IV: {compare.summary_line(rows)}.")
    for metric in ("train_loss", "val_loss"):
        s = compare.summary(rows, metric)
        lines.append(f"- {s.within} of {s.cells} cells within 2σ on mean {compare.METRIC_LABELS[metric]}.")
    lines.append(f"- {compare.ordering_line(comparison)}")
    return "\n".join(lines)


def _data_source(store: Store) -> str:
    counts = store.status_counts()
    sources = store.data_sources()
    epochs = store.row_count("epochs")
    n_configs = store.row_count("configs")
    meta = store.meta()
    lines = ["## Data source", "", f"- Database: `{store.path}` ({meta.get('created_by', '?')})."]
    for source in sources:
        lines.append(f"- Digits: `{source}`, {_source_report(source)}.")
    lines.append(
        f"- {n_configs} configuration(s); runs: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + f"; {epochs} epoch rows."
    )
    return "\n".join(lines)


def _protocol(store: Store, repo_root: Path) -> str:
    defaults = RunConfig()
    used = _values_in_db(store)
    table = Table(
        "Every setting: the default, the values in this database and what the paper says",
        ["Setting", "Default", "In this database", "Paper"],
        [
            [
                Cell(f"`{name}`"),
                Cell(str(value)),
                Cell(used.get(name, "-")),
                Cell(PAPER_SAYS.get(name) or ("beyond the paper" if name in EXTENSION_FIELDS else "not stated")),
            ]
            for name, value in dataclasses.asdict(defaults).items()
        ]
        + [[Cell("repetitions"), Cell(str(DEFAULT_REPS)), Cell(_reps_in_db(store)), Cell("10")]],
    )
    text = "## Protocol\n\n" + to_markdown([table])
    return text + "\n### " + CHOICES_HEADING + "\n\n" + _choices(repo_root, defaults)


def _values_in_db(store: Store) -> dict[str, str]:
    used = {}
    defaults = RunConfig()
    for name in dataclasses.asdict(defaults):
        if name in EXTENSION_FIELDS:  # in the options JSON; absent there: the default
            default = getattr(defaults, name)
            kind = type(default)  # JSON true comes back from SQLite as 1
            values = sorted(
                {str(default if value is None else kind(value)) for value in store.distinct_option_values(name)}
            )
            if values:
                used[name] = ", ".join(values[:8]) + (" ..." if len(values) > 8 else "")
            continue
        values = [str(value) for value in store.distinct_config_values(name)]
        if values:
            used[name] = ", ".join(values[:8]) + (" ..." if len(values) > 8 else "")
    return used


def _reps_in_db(store: Store) -> str:
    counts = store.runs_per_config()
    if not counts:
        return "-"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def readme_choices(readme: Path) -> str | None:
    """The body of the README's section whose heading mentions "choices where the paper is
    silent", if any (up to the next heading of the same or a higher level)."""
    if not readme.is_file():
        return None
    lines = readme.read_text(encoding="utf-8").splitlines()
    start: int | None = None
    level = 0
    for i, line in enumerate(lines):
        heading = re.match(r"^(#+)\s+(.*?)\s*#*\s*$", line)
        if start is None:
            if heading and CHOICES_HEADING.lower() in heading.group(2).lower():
                start, level = i + 1, len(heading.group(1))
        elif heading and len(heading.group(1)) <= level:
            return "\n".join(lines[start:i]).strip() or None
    if start is None:
        return None
    return "\n".join(lines[start:]).strip() or None


def nest_headings(text: str, level: int) -> str:
    """Shift the Markdown headings of ``text`` (outside code fences) so that the highest becomes
    ``level``, so an included file nests under the report's own heading; nothing else changes."""
    lines = text.splitlines()
    fence = False
    found = []
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and (m := re.match(r"^(#{1,6})\s", line)):
            found.append(len(m.group(1)))
    shift = max(0, level - min(found)) if found else 0
    if not shift:
        return text
    fence, out = False, []
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and re.match(r"^#{1,6}\s", line):
            line = "#" * shift + line
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _choices(repo_root: Path, defaults: RunConfig) -> str:
    text = readme_choices(repo_root / "README.md")
    if text:
        return f"From the README:\n\n{nest_headings(text, 4)}\n"
    return (
        "\n".join(
            [
                "- Convolutional tower: per Table I layer, conv(k × k, same padding) → ReLU → max-pool 2, "
                "then flatten; the comparison head is one linear layer on the two towers' features.",
                "- `shared-aux` head: a shared linear layer maps each digit's features to 10 digit logits; "
                "the comparison is a linear layer on the 20 digit logits. Its reported losses are the "
                "total of eq. (2) (main + both auxiliary cross-entropies, weight "
                f"{defaults.aux_weight:g}).",
                f"- Optimizer: {defaults.optimizer.upper()} (no momentum, no weight decay); batch size "
                f"{defaults.batch_size}.",
                "- Learning-rate schedule: multiplied by `lr_gamma` every `lr_step` epochs.",
                "- Images: 28×28 MNIST digits averaged 2×2 down to 14×14; normalised by the mean and std "
                "of the training split (without the validation pairs) of each repetition.",
                "- Validation: the last `val_pairs` of the training pairs; each repetition draws new "
                "pairs and new weights.",
                "- Initialisation: PyTorch's default.",
            ]
        )
        + "\n"
    )


def _tables(rows) -> str:
    head = "## Tables II–IV compared with the paper\n\n"
    if not rows:
        return head + "No configurations in this database yet."
    return (
        head + f"{compare.summary_line(rows)}. Δ is (ours − paper mean) / paper std; "
        "bold marks the best mean validation loss and accuracy of each structure.\n\n"
        + nest_headings(compare.render_comparison(rows, "markdown"), 3)
    )


def _best(store: Store, rows, comparison) -> str:
    head = "## Best setups on the test set\n\n"
    if not comparison.best:
        return head + "No done runs yet."
    text = head + nest_headings(to_markdown([compare.compare_best_table(comparison)]), 3)
    return text + "\n" + to_markdown([_paper_best_here(store, rows)])


def _paper_best_here(store: Store, rows) -> Table:
    """Our test numbers of the setups the paper found best (they may differ from ours)."""
    chosen = compare.representatives(rows)
    body = []
    for structure, setup in compare.paper_test().items():
        row = chosen.get(setup.key)
        values = []
        if row is not None:
            values = store.done_tests(row.config_id)
        acc = MeanStd.of([v["test_acc"] for v in values])
        loss = MeanStd.of([v["test_loss"] for v in values])
        reference = setup.metrics["test_acc"]
        body.append(
            [
                Cell(structure),
                Cell(f"{setup.arch} k{setup.kernel}"),
                Cell(format_mean_std(loss)),
                Cell(format_mean_std(acc, percent=True)),
                Cell(format_mean_std(reference.as_mean_std(), percent=True)),
                Cell(compare.format_sigma(reference.z(acc))),
                Cell(str(acc.n)),
            ]
        )
    return Table(
        "The paper's best setups, run here",
        ["Structure", "Setup", "Test Loss", "Test Acc. (%)", "Paper Test Acc. (%)", "Δ", "n"],
        body,
    )


@dataclass
class _Figure:
    structure: str
    number: int
    label: str
    path: Path
    runs: int


def _figures(store: Store, comparison, output: Path) -> list[_Figure]:
    figures = []
    for b in comparison.best:
        number = FIGURE_NUMBERS.get(b.structure)
        if number is None:
            continue
        curves = epoch_curves(store, b.row.config_id, done_only=True)
        if not curves["epochs"]:
            continue
        reference = (
            compare.paper_final(b.structure, b.row.arch, b.row.kernel, curves["config"].epochs)
            if b.row.protocol.is_paper
            else None
        )  # the paper's numbers mark only runs of the paper's protocol
        path = output / f"fig{number}-{b.structure}.png"
        save_figure(
            curves,
            path,
            reference,
            title=(
                f"Fig. {number} (reproduced): best {b.structure} setup, {curves['label']} — "
                f"mean ± std over {len(curves['reps'])} run(s)"
            ),
        )
        figures.append(_Figure(b.structure, number, curves["label"], path, len(curves["reps"])))
    return figures


def _figures_section(figures: list[_Figure]) -> str:
    lines = [
        "## Figures 4–6",
        "",
        "Train loss, validation loss and validation accuracy per epoch of the best setup "
        "of each structure (by final validation accuracy): mean over the done runs with a "
        "±std band, each run as a thin line; in red the paper's final-epoch mean ± std "
        "(Tables II–IV) where the runs are of the paper's protocol.",
    ]
    if not figures:
        lines += ["", "No done runs yet: no figures."]
    for f in figures:
        lines += [
            "",
            f"![Fig. {f.number}: {f.label}]({f.path.name})",
            "",
            f"*Fig. {f.number} (reproduced): {f.label}, {f.runs} runs.*",
        ]
    return "\n".join(lines)


def _evidence(repo_root: Path) -> str:
    path = repo_root / CHOICES_FILE
    head = "## Evidence for the choices\n\n"
    if not path.is_file():
        return head + f"No measurements recorded yet (`{CHOICES_FILE.as_posix()}` is absent)."
    text = nest_headings(path.read_text(encoding="utf-8"), 3)
    return head + f"From `{CHOICES_FILE.as_posix()}` (headings nested under this one):\n\n" + text


def _machine(store: Store, repo_root: Path, rows) -> str:
    seconds, first, last, n = store.done_totals()
    lines = [
        "## Machine, software and wall time",
        "",
        f"- Report generated on: {platform.platform()}, {platform.machine()}, "
        f"{os.cpu_count()} CPU(s), Python {sys.version.split()[0]}.",
        f"- Runs trained on: {_distinct(store, 'host')}; devices: {_distinct(store, 'device')}.",
        f"- torch version: {_distinct(store, 'torch_version')}.",
        f"- Git commit of the code writing this report: {git_commit(repo_root)}.",
    ]
    versions = code_versions(store, [r.config_id for r in rows])
    lines.append(
        "- Code that trained this report's runs (`runs.code_version`): "
        + (", ".join(f"{v} ({n} runs)" for v, n in versions.items()) or "no done runs")
        + "."
    )
    mixed = mixed_line(versions)
    if mixed:
        lines.append(f"- **{mixed[0].upper() + mixed[1:]}.**")
    if n:
        span = (last - first) if first is not None and last is not None else None
        lines.append(
            f"- Wall time: {format_duration(seconds or 0.0)} of training summed over "
            f"{n} done runs; {format_duration(span)} from the first start to the last "
            "finish."
        )
    else:
        lines.append("- Wall time: no done runs yet.")
    return "\n".join(lines)


def _distinct(store: Store, column: str) -> str:
    rows = store.done_value_counts(column)
    if not rows:
        return "unknown"
    return ", ".join(f"{r['value']} ({r['n']} runs)" for r in rows)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, float(seconds))
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s"


def git_commit(repo_root: Path) -> str:
    """``git rev-parse HEAD`` of the code, with a note when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(repo_root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    if dirty.returncode == 0 and dirty.stdout.strip():
        commit += " (with uncommitted changes)"
    return commit


def _source_report(name: str) -> str:
    """The report's description of a data source (its name, for one no longer registered)."""
    entry = next((s for s in sources.entries() if s.name == name), None)
    return entry.report if entry else name
