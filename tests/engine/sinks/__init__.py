"""Tests of `stockup_tui/engine/sinks/` without a server (with one: tests/integration/)."""
