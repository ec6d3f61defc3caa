"""Tests of `stockup_tui/engine/analyzer/`."""
