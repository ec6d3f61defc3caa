"""Tests of `stockup_tui/widgets/` and of the app on screen (Pilot and SVG snapshots)."""
