"""sqlite-utils, imported without pandas.

sqlite-utils imports pandas when it is installed, only to map ``pandas.Timestamp`` columns to
TEXT; pandas is most of the start-up time of ``pairs`` and ``pairs-tui`` and nothing here stores
pandas values. The one import of pandas inside sqlite-utils is made to fail; pandas can still be
imported normally afterwards by anyone who needs it.
"""

from __future__ import annotations

import importlib
import sys


def _import_without_pandas():
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        return importlib.import_module("sqlite_utils")
    sys.modules["pandas"] = None  # type: ignore[assignment]  # makes `import pandas` raise ImportError
    try:
        return importlib.import_module("sqlite_utils")
    finally:
        del sys.modules["pandas"]


sqlite_utils = _import_without_pandas()
