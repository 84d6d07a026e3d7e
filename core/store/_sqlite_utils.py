"""sqlite-utils, imported without pandas and numpy.

sqlite-utils imports pandas and numpy when they are installed, only to map their scalar types to
column types when it creates a table from values; pandas and numpy are most of the start-up time
of ``pairs`` and ``pairs-tui``, and the store creates its tables from explicit column types and
writes Python numbers. Those two imports inside sqlite-utils are made to fail; pandas and numpy
can still be imported normally afterwards by anyone who needs them (the training processes do).
When either is already imported (a process that trains), sqlite-utils is imported as it is.
"""

from __future__ import annotations

import importlib
import sys

_SKIPPED = ("pandas", "numpy")


def _import_lightly():
    if any(name in sys.modules for name in ("sqlite_utils", *_SKIPPED)):
        return importlib.import_module("sqlite_utils")
    for name in _SKIPPED:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        return importlib.import_module("sqlite_utils")
    finally:
        for name in _SKIPPED:
            del sys.modules[name]


sqlite_utils = _import_lightly()
