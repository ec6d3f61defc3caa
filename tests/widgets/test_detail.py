"""SymbolDetail inside a tiny app: metrics grid per window, placeholder, chart data."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static
from textual_plotext import PlotextPlot

from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics
from stockup_tui.widgets.detail import (
    CHART_POINTS,
    ChartSeries,
    MetricsGrid,
    SymbolDetail,
)
from tests.helpers import wait_until

CLOSES = tuple(100.0 + (i % 7) * 0.25 for i in range(60))


def window(window_ms: int, *, count: int, last: float, closes: tuple[float, ...] = CLOSES):
    return WindowMetrics(
        window_ms=window_ms,
        count=count,
        volume=count * 100.0,
        first=last - 1,
        last=last,
        min=last - 2,
        max=last + 2,
        mean=last - 0.25,
        vwap=last - 0.5,
        change=1.0,
        change_pct=1.0 / (last - 1) * 100,
        rate=count / (window_ms / 1000),
        closes=closes,
    )


def snapshot(closes: tuple[float, ...] = CLOSES) -> SymbolSnapshot:
    return SymbolSnapshot(
        "AAPL",
        10_000,
        101.5,
        9_600,
        (
            window(60_000, count=120, last=101.5, closes=closes),
            window(300_000, count=900, last=99.0, closes=closes),
        ),
    )


class DetailApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SymbolDetail()


def line_of(field: str) -> int:
    """The grid line of a metric (line 0 is the header)."""
    return 1 + [f for f, _ in SymbolDetail.METRICS].index(field)


async def test_metrics_grid_has_every_window_and_highlights_the_selected_one() -> None:
    app = DetailApp()
    async with app.run_test(size=(100, 40)) as pilot:
        detail = app.query_one(SymbolDetail)
        detail.update_detail(snapshot(), 1, now_ms=10_000)
        await pilot.pause()
        grid = detail.query_one("#detail-metrics", MetricsGrid)
        header = grid.rows[0]
        assert [text for text, _ in header] == ["", "1m", "5m"]
        assert "reverse" in header[2][1] and "reverse" not in header[1][1]
        lines = {line.split()[0]: line.split()[1:] for line in grid.lines[1:]}
        assert lines["count"] == ["120", "900"]
        assert lines["volume"] == ["12.0K", "90.0K"]
        assert lines["first"] == ["100.50", "98.00"]
        assert lines["last"] == ["101.50", "99.00"]
        assert lines["min"] == ["99.50", "97.00"]
        assert lines["max"] == ["103.50", "101.00"]
        assert lines["mean"] == ["101.25", "98.75"]
        assert lines["vwap"] == ["101.00", "98.50"]
        assert lines["chg"] == ["+1.00", "+1.00"]
        assert lines["chg%"] == ["+1.00%", "+1.02%"]
        assert lines["tr/s"] == ["2.00", "3.00"]
        # Columns are right-aligned under their header, and what is painted is the grid.
        assert grid.lines[0] == "            1m      5m"
        count = line_of("count")
        assert grid.lines[count] == "count      120     900"
        painted = "".join(seg.text for seg in grid.render_line(count))
        assert painted.rstrip() == grid.lines[count]
        assert grid.size.height == len(SymbolDetail.METRICS) + 1  # header + one line a metric

        title = detail.query_one("#detail-title", Static).content
        assert isinstance(title, Text)
        assert title.plain.startswith("AAPL  101.50  +1.02%")
        assert "0.4s ago" in title.plain

        # Selecting the other window moves the highlight (reversed header, bold column); the
        # text stays as it was.
        before = grid.lines
        detail.update_detail(snapshot(), 0, now_ms=10_000)
        header = grid.rows[0]
        assert "reverse" in header[1][1] and "reverse" not in header[2][1]
        row = grid.rows[line_of("count")]
        assert row[1][1] == "bold" and row[2][1] == ""
        assert grid.lines == before


async def test_metrics_grid_repaints_only_changed_lines_and_keeps_column_widths() -> None:
    app = DetailApp()
    async with app.run_test(size=(100, 40)) as pilot:
        detail = app.query_one(SymbolDetail)
        grid = detail.query_one("#detail-metrics", MetricsGrid)
        detail.update_detail(snapshot(), 0, now_ms=10_000)
        await pilot.pause()
        strips = list(grid._strips)
        wide = snapshot()
        wide = SymbolSnapshot(
            wide.symbol,
            wide.ts_ms,
            wide.last_price,
            wide.last_trade_ms,
            (window(60_000, count=123_456, last=101.5), wide.windows[1]),
        )
        detail.update_detail(wide, 0, now_ms=10_000)
        # The count grew wider: every line is rebuilt to the new column width.
        assert grid.lines[line_of("count")].split() == ["count", "123,456", "900"]
        assert all(a is not b for a, b in zip(strips, grid._strips, strict=True))
        first_width = len(grid.lines[0])
        strips = list(grid._strips)
        detail.update_detail(snapshot(), 0, now_ms=10_000)
        # Narrower again: the column keeps its width (no sideways jitter) and only the
        # lines whose figures changed are rebuilt.
        assert len(grid.lines[0]) == first_width
        pairs = zip(strips, grid._strips, strict=True)
        changed = [i for i, (a, b) in enumerate(pairs) if a is not b]
        assert changed == sorted(line_of(f) for f in ("count", "volume", "rate"))


async def test_placeholder_for_none() -> None:
    app = DetailApp()
    async with app.run_test(size=(100, 40)) as pilot:
        detail = app.query_one(SymbolDetail)
        placeholder = detail.query_one("#detail-placeholder", Static)
        await pilot.pause()
        assert placeholder.display and not detail.chart.display
        assert "no symbol selected" in str(placeholder.content)

        detail.update_detail(None, 0, symbol="MSFT")
        assert str(placeholder.content) == "MSFT: waiting for trades…"

        detail.update_detail(snapshot(), 0, now_ms=10_000)
        await pilot.pause()
        assert not placeholder.display and detail.chart.display

        detail.update_detail(None, 0)
        await pilot.pause()
        assert placeholder.display and not detail.chart.display
        assert detail.chart.series is None


async def test_chart_gets_the_closes_and_redraws_only_on_change() -> None:
    app = DetailApp()
    async with app.run_test(size=(100, 40)) as pilot:
        detail = app.query_one(SymbolDetail)
        chart = detail.chart
        detail.update_detail(snapshot(), 0, now_ms=10_000)
        expected = ChartSeries("1m", CLOSES, 101.0, 99.5, 103.5, CHART_POINTS, 60_000)
        await wait_until(lambda: chart.series == expected, 5, "the first chart")
        draws = chart.draws

        detail.update_detail(snapshot(), 0, now_ms=10_500)  # same data, later clock
        await pilot.pause()
        assert chart.draws == draws

        moved = (*CLOSES[1:], 104.0)
        detail.update_detail(snapshot(moved), 0, now_ms=10_600)
        await wait_until(lambda: chart.series is not None and chart.series.closes == moved, 5)
        assert chart.draws == draws + 1

        plot = chart.query_one(PlotextPlot)
        await pilot.pause()
        rendered = plot.render()
        assert isinstance(rendered, Text)
        assert any(0x2800 <= ord(ch) <= 0x28FF for ch in rendered.plain), "braille line"
        assert "now" in rendered.plain

        # A window without trades shows a note instead of a chart.
        empty = snapshot(())
        detail.update_detail(empty, 0, now_ms=10_600)
        await wait_until(lambda: chart.has_class("-empty"), 5, "empty chart")


async def test_detail_given_before_mount_shows_on_mount() -> None:
    class EarlyApp(App[None]):
        def compose(self) -> ComposeResult:
            detail = SymbolDetail()
            detail.update_detail(snapshot(), 1, now_ms=10_000)
            yield detail

    app = EarlyApp()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        detail = app.query_one(SymbolDetail)
        assert not detail.has_class("-empty")
        assert detail.title_text.startswith("AAPL")
        assert detail.chart.series is not None and detail.chart.series.label == "5m"


async def test_a_new_window_is_charted_right_after_the_frame_that_shows_the_rest() -> None:
    app = DetailApp()
    async with app.run_test(size=(100, 40)) as pilot:
        detail = app.query_one(SymbolDetail)
        chart = detail.chart
        detail.update_detail(snapshot(), 0, now_ms=10_000)
        await wait_until(lambda: chart.series is not None and chart.series.label == "1m", 5)
        chart.min_interval = 600.0  # new data alone would now wait ten minutes for a slot
        grid = detail.query_one("#detail-metrics", MetricsGrid)

        detail.update_detail(snapshot(), 1, now_ms=10_000)  # the window switch of a key press
        # The title, legend and metrics change at once; the plot is built after that frame.
        assert "reverse" in grid.rows[0][2][1]
        assert "5m price" in str(detail.query_one("#detail-legend", Static).content)
        assert chart.series is not None and chart.series.label == "1m"
        await wait_until(lambda: chart.series.label == "5m", 5, "the 5m chart, without a slot")

        # Fresh data for the same window does wait for the rate limit.
        moved = (*CLOSES[1:], 104.0)
        detail.update_detail(snapshot(moved), 1, now_ms=10_100)
        await pilot.pause()
        assert chart.series.closes == CLOSES
