"""Tests of `stockup_tui/engine/`, laid out like it (no server needed)."""
