"""Exact event-time sliding-window analytics per symbol (see `analyzer` for the rules)."""

from stockup_tui.engine.analyzer.analyzer import Analyzer

__all__ = ["Analyzer"]
