"""``python -m tui.cli``: the ``pairs`` command (the console's workers run ``work`` so)."""

from tui.cli import main

main()
