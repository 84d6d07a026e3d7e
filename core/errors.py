"""Errors the interfaces show as one line (kept import-light: no numpy, no torch)."""


class DataError(RuntimeError):
    """The digits cannot be loaded; the message says where to put them or what to use instead."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the problem and the fix."""
