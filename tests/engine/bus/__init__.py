"""Tests of `stockup_tui/engine/bus/` without a broker (with one: tests/integration/)."""
