"""Headless core, torch-free interface: checked in fresh interpreters (as harlequin does)."""

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_core_never_imports_ui_packages():
    loaded = _modules_after(
        "import core.api, core.config, core.data, core.models, core.train, core.store, "
        "core.scheduler, core.execution, core.executors, core.stats, core.report"
    )
    assert not loaded & {"textual", "typer", "rich"}


def test_cli_does_not_import_torch():
    loaded = _modules_after("import tui.cli")
    assert "torch" not in loaded
