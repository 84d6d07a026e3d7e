"""Screens of the pairs console: experiments, queue form, plots, tables, help and dialogs."""
