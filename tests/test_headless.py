"""The headless front end's status line: one line a person reads at a glance (the process
itself, run as a user runs it, is in tests/integration/test_cli_headless.py)."""

from __future__ import annotations

from dataclasses import replace

from stockup_tui.engine.stats import SinkFigures
from stockup_tui.headless import status_line
from tests.helpers import make_stats


def test_status_line_names_the_influx_sink_state() -> None:
    stats = make_stats(sinks={})
    assert "influx" not in status_line(stats)
    with_sink = replace(stats, sinks={"influx": SinkFigures(state="retrying", pending=12)})
    assert "| influx retrying pending 12" in status_line(with_sink)


def test_status_line_tells_the_backlog_and_the_time_figures() -> None:
    stats = make_stats()
    stats = replace(
        stats,
        bus=replace(stats.bus, backlog=1234),
        analyzer=replace(stats.analyzer, late=5, future_time=2, too_old=3, behind=2.5),
    )
    line = status_line(stats)
    assert "backlog 1,234" in line
    assert "late 5 future 2 too_old 3 behind 2.5s" in line
