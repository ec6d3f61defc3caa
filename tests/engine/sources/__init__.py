"""Tests of `stockup_tui/engine/sources/`."""
