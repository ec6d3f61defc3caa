"""stockup-tui: a terminal dashboard and streaming pipeline for live stock trades."""

__version__ = "0.1.0"
