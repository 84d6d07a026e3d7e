"""Widgets of the pairs console."""
