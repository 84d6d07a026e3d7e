"""The README's table of hyperparameter flags, generated from ``RunConfig``'s fields.

``python -m tui.flags`` prints it; ``python -m tui.flags --write`` puts it into README.md between
its markers (``tests/test_hyperparameters.py`` checks that the README's table is this one).
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.config import Hyperparameter, RunConfig, params

BEGIN = "<!-- flag table: python -m tui.flags -->\n"
END = "<!-- end of flag table -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def _allowed(hp: Hyperparameter) -> str:
    if hp.type is bool:
        return "on, off"
    if hp.param.choices is not None:
        return ", ".join(str(c) for c in hp.param.choices)
    if hp.param.bounds is not None:
        return hp.param.bounds.what
    return hp.kind


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def flag_table(config: type[RunConfig] = RunConfig) -> str:
    """A Markdown table: every hyperparameter flag of ``pairs run`` / ``pairs queue``, its
    default (the paper's value; beyond the paper: off), what it takes and what it is."""
    lines = ["| flag | default (the paper's) | values | several values | what |", "|---|---|---|---|---|"]
    for hp in params(config):
        several = "yes" if hp.param.grid else "no (one value)"
        if hp.param.preset:
            several += ", also in `pairs grid`"
        what = hp.help + (" *Beyond the paper.*" if hp.param.extension else "")
        lines.append(f"| `{hp.flag}` | `{hp.shown_default}` | {_cell(_allowed(hp))} | {several} | {_cell(what)} |")
    return "\n".join(lines) + "\n"


def write_readme(path: Path = README) -> bool:
    """Put the table into ``path`` between its markers; whether it changed."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + flag_table() + END + tail
    path.write_text(new)
    return new != text


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print("README.md " + ("updated" if write_readme() else "unchanged"))
    else:
        sys.stdout.write(flag_table())
