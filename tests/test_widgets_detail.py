"""SymbolDetail inside a tiny app: metrics grid per window, placeholder, chart data."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static

from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics
from stockup_tui.widgets.detail import HAS_PLOTEXT, ChartSeries, SymbolDetail
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


def plain(renderable: RenderableType, width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


class DetailApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SymbolDetail()


async def test_metrics_grid_has_every_window_and_highlights_the_selected_one() -> None:
    app = DetailApp()
    async with app.run_test(size=(100, 40)) as pilot:
        detail = app.query_one(SymbolDetail)
        detail.update_detail(snapshot(), 1, now_ms=10_000)
        await pilot.pause()
        grid = detail.query_one("#detail-metrics", Static).content
        assert isinstance(grid, Table)
        assert [str(c.header) for c in grid.columns] == ["", "1m", "5m"]
        assert "reverse" in str(grid.columns[2].header_style)
        assert "reverse" not in str(grid.columns[1].header_style)
        lines = {line.split()[0]: line.split()[1:] for line in plain(grid).splitlines() if line}
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

        title = detail.query_one("#detail-title", Static).content
        assert isinstance(title, Text)
        assert title.plain.startswith("AAPL  101.50  +1.02%")
        assert "0.4s ago" in title.plain

        # Selecting the other window moves the highlight.
        detail.update_detail(snapshot(), 0, now_ms=10_000)
        grid = detail.query_one("#detail-metrics", Static).content
        assert isinstance(grid, Table)
        assert "reverse" in str(grid.columns[1].header_style)


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
        await pilot.pause()
        assert chart.series == ChartSeries("1m", CLOSES, 101.0, 99.5, 103.5)
        draws = chart.draws

        detail.update_detail(snapshot(), 0, now_ms=10_500)  # same data, later clock
        await pilot.pause()
        assert chart.draws == draws

        moved = (*CLOSES[1:], 104.0)
        detail.update_detail(snapshot(moved), 0, now_ms=10_600)
        await wait_until(lambda: chart.series is not None and chart.series.closes == moved, 5)
        assert chart.draws == draws + 1

        if HAS_PLOTEXT:
            from textual_plotext import PlotextPlot

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
