"""Which code trained a run: ``runs.code_version``.

``git:<12 hex>`` (plus ``+dirty`` with uncommitted changes to tracked files) when the package
runs from a git checkout; else ``<package version>+src:<12 hex>``, a hash of the sources of
``core/*.py``. Computed once per process (``code_version``), fail-safe: git missing, slow (a
timeout of a few seconds) or not a checkout of this package falls back to the source hash.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path

import core

GIT_TIMEOUT_S = 3.0
#: What a run without a recorded code version shows.
UNKNOWN = "unknown"


def package_root() -> Path:
    """The folder holding the ``core`` package (a repository root in a checkout)."""
    return Path(core.__file__).resolve().parents[1]


@functools.cache
def code_version() -> str:
    """This process's code version (see the module docstring); computed once."""
    return _git_version(package_root()) or source_version()


def source_version() -> str:
    """``<version>+src:<12 hex>``: sha256 over the names and bytes of ``core/*.py``."""
    digest = hashlib.sha256()
    for path in sorted(Path(core.__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"?")
        digest.update(b"\0")
    return f"{core.__version__}+src:{digest.hexdigest()[:12]}"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _git_version(root: Path) -> str | None:
    """``git:<12 hex>[+dirty]`` when ``root`` is the top of a git checkout, else None."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return None
    try:
        if Path(top.stdout.strip()).resolve() != root:
            return None  # an installed copy inside someone else's repository
    except OSError:
        return None
    head = _git(root, "rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return None
    version = f"git:{head.stdout.strip()[:12]}"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    if dirty is None or dirty.returncode != 0:
        return version + "+dirty?"  # could not tell: never claim clean
    return version + ("+dirty" if dirty.stdout.strip() else "")


def code_versions(store, config_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Done runs per code version (NULL: ``unknown``), of some configurations or all."""
    ids = list(dict.fromkeys(config_ids)) if config_ids is not None else None
    if ids is not None and not ids:
        return {}
    counts = store.code_version_counts(ids, UNKNOWN)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def mixed_line(counts: dict[str, int]) -> str | None:
    """``mixed code versions: git:… (8 runs), unknown (2 runs) ...`` when the runs a report
    covers were trained by more than one code version; None otherwise."""
    if len(counts) < 2:
        return None
    listed = ", ".join(f"{version} ({n} run{'s' if n != 1 else ''})" for version, n in counts.items())
    return f"mixed code versions: {listed}: these runs were trained by different code (see runs.code_version)"
