"""pairs core: data, models, training, the SQLite store, the grid scheduler, statistics, reports.

Headless: nothing here imports textual, typer or rich.
"""

__version__ = "0.1.0"
