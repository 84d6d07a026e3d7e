from tui._early import defer_signals, is_pairs_command, start_workers_early

if is_pairs_command():
    defer_signals()  # before anything else of pairs is imported (see tui/_early.py)
    start_workers_early()
