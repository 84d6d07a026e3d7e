"""Startup time: load sqlite-utils without pandas in the console's process.

sqlite-utils imports pandas when it is installed, only to map ``pandas.Timestamp`` columns to
TEXT; pandas is a third of the console's import time and nothing here stores pandas values.
Importing this module first makes that one import of pandas fail, then lets pandas be imported
normally again by anyone who needs it. No effect when sqlite-utils or pandas is already loaded.
"""

from __future__ import annotations

import importlib
import sys


def import_sqlite_utils_without_pandas() -> None:
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` raises ImportError
    try:
        importlib.import_module("sqlite_utils")
    finally:
        del sys.modules["pandas"]


import_sqlite_utils_without_pandas()
