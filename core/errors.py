"""Errors the interfaces show as one line (kept import-light: no numpy, no torch)."""


class DataError(RuntimeError):
    """The digits cannot be loaded; the message says where to put them or what to use instead."""
