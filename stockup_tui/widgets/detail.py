"""The detail pane: price chart, every window's metrics and a title line for one symbol.

The app calls `update_detail` on every refresh (~10x/s). Each part keeps the inputs it last drew
and redraws only when they changed; the chart, by far the dearest part (~10 ms per plotext
build), is also limited to a few redraws a second, the latest data winning.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color, ColorParseError
from textual.events import Resize
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static

from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics
from stockup_tui.widgets.format import (
    DASH,
    fmt_age,
    fmt_change,
    fmt_count,
    fmt_pct,
    fmt_price,
    fmt_rate,
    fmt_volume,
    rich_colour,
    sparkline,
    window_label,
)

try:
    from textual_plotext import PlotextPlot
except ImportError:  # pragma: no cover - exercised only where textual-plotext is missing
    PlotextPlot = None  # type: ignore[assignment,misc]

HAS_PLOTEXT = PlotextPlot is not None


class ChartSeries(NamedTuple):
    """What the chart shows; compared as a whole to decide whether to redraw."""

    label: str
    closes: tuple[float, ...]
    vwap: float | None
    low: float | None
    high: float | None


def _rgb(value: str | None, fallback: str) -> tuple[int, int, int]:
    """A theme colour as an RGB triple, the form plotext takes for full colour."""
    try:
        return Color.parse(value or fallback).rgb
    except ColorParseError:
        return Color.parse(fallback).rgb


class PriceChart(Widget):
    """A window's closes with VWAP/min/max lines: plotext when installed, a sparkline otherwise."""

    DEFAULT_CSS = """
    PriceChart {
        height: 1fr;
        min-height: 5;
    }
    PriceChart > .chart-body {
        height: 1fr;
    }
    PriceChart > #chart-empty {
        display: none;
        height: 1fr;
        content-align: center middle;
        color: $text-muted;
    }
    PriceChart.-empty > .chart-body {
        display: none;
    }
    PriceChart.-empty > #chart-empty {
        display: block;
    }
    """

    min_interval = 0.25
    """Seconds between two redraws; later data waits for the next slot (one timer, not many)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.series: ChartSeries | None = None  # what is drawn now
        self.draws = 0
        self._wanted: ChartSeries | None = None
        self._last_draw = -math.inf
        self._timer: Timer | None = None
        self._ready = False  # the plot child exists (is_mounted is still False in on_mount)

    def compose(self) -> ComposeResult:
        if PlotextPlot is not None:
            yield PlotextPlot(id="chart-plot", classes="chart-body")
        else:  # pragma: no cover
            yield Static(id="chart-plot", classes="chart-body")
        yield Static("no trades in this window", id="chart-empty")

    def on_mount(self) -> None:
        self._ready = True
        self.set_class(not (self._wanted and self._wanted.closes), "-empty")
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())
        if self._wanted is not None:
            self._draw()

    def on_resize(self, _: Resize) -> None:
        if PlotextPlot is None:  # pragma: no cover - plotext sizes itself on render
            self._draw()

    def set_series(self, series: ChartSeries | None) -> None:
        """Draws `series` now, or at the next free slot if a plot was built very recently."""
        if series == self._wanted:
            return
        self._wanted = series
        wait = self._last_draw + self.min_interval - time.monotonic()
        if wait <= 0 or series is None or not series.closes:  # clearing costs nothing
            self._draw()
        elif self._timer is None:
            self._timer = self.set_timer(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._wanted != self.series:
            self._draw()

    def _draw(self) -> None:
        if not self._ready:
            return
        series = self._wanted
        self.series = series
        self.draws += 1
        self.set_class(series is None or not series.closes, "-empty")
        if series is None or not series.closes:
            return
        self._last_draw = time.monotonic()
        body = self.query_one("#chart-plot")
        if PlotextPlot is not None and isinstance(body, PlotextPlot):
            self._plot(body, series)
        else:  # pragma: no cover
            self._spark(body, series)  # type: ignore[arg-type]

    def _plot(self, widget: Any, s: ChartSeries) -> None:
        theme = self.app.current_theme
        plt = widget.plt
        plt.clear_data()
        xs = list(range(len(s.closes)))
        values = [v for v in (s.vwap, s.low, s.high, *s.closes) if v is not None]
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.05 or max(abs(hi) * 0.001, 1e-9)
        plt.ylim(lo - pad, hi + pad)
        plt.xlim(0, max(len(xs) - 1, 1))
        plt.xticks([xs[-1]], ["now"])
        for value, colour, fallback in (
            (s.low, theme.error, "red"),
            (s.high, theme.success, "green"),
            (s.vwap, theme.warning, "yellow"),
        ):
            if value is not None:
                plt.hline(value, _rgb(colour, fallback))
        plt.plot(xs, list(s.closes), marker="braille", color=_rgb(theme.primary, "blue"))
        widget.refresh()

    def _spark(self, widget: Static, s: ChartSeries) -> None:  # pragma: no cover
        width = max(self.size.width, 10)
        colour = rich_colour(self.app.current_theme.primary, "blue")
        widget.update(Text(sparkline(s.closes, width), style=colour))


class SymbolDetail(Widget):
    """Everything about the selected symbol: title, chart of the selected window, metrics grid."""

    DEFAULT_CSS = """
    SymbolDetail {
        height: 1fr;
        layout: vertical;
    }
    SymbolDetail > #detail-title {
        height: 1;
        text-style: bold;
    }
    SymbolDetail > #detail-legend {
        height: 1;
    }
    SymbolDetail > #detail-metrics {
        height: auto;
    }
    SymbolDetail > #detail-placeholder {
        display: none;
        height: 1fr;
        content-align: center middle;
        color: $text-muted;
    }
    SymbolDetail.-empty > #detail-placeholder {
        display: block;
    }
    SymbolDetail.-empty > #detail-title,
    SymbolDetail.-empty > #detail-legend,
    SymbolDetail.-empty > PriceChart,
    SymbolDetail.-empty > #detail-metrics {
        display: none;
    }
    """

    METRICS: tuple[tuple[str, str], ...] = (
        ("count", "count"),
        ("volume", "volume"),
        ("first", "first"),
        ("last", "last"),
        ("min", "min"),
        ("max", "max"),
        ("mean", "mean"),
        ("vwap", "vwap"),
        ("change", "chg"),
        ("change_pct", "chg%"),
        ("rate", "tr/s"),
    )
    """(WindowMetrics field, row label), in display order."""

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._title_key: object = None
        self._metrics_key: object = None
        self._placeholder_key: object = None
        self._last_args: tuple[SymbolSnapshot | None, int, str | None, int | None] = (
            None,
            0,
            None,
            None,
        )
        self.placeholder_text = "no symbol selected"
        self._ready = False  # children exist (is_mounted is still False inside on_mount)
        self.title_text = ""

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        yield Static(id="detail-legend")
        yield PriceChart(id="detail-chart")
        yield Static(id="detail-metrics")
        yield Static(self.placeholder_text, id="detail-placeholder")

    def on_mount(self) -> None:
        self._ready = True
        self.add_class("-empty")
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw_all())
        self._redraw_all()

    @property
    def chart(self) -> PriceChart:
        """The chart widget (its `series` is what it currently shows)."""
        return self.query_one(PriceChart)

    def update_detail(
        self,
        snapshot: SymbolSnapshot | None,
        window_index: int,
        *,
        symbol: str | None = None,
        now_ms: int | None = None,
    ) -> None:
        """Shows `snapshot` with `window_index` selected; None shows a placeholder.

        `symbol` names the selection when it has no snapshot yet ("waiting for trades…");
        `now_ms` (default: the wall clock) dates the last trade in the title.
        """
        self._last_args = (snapshot, window_index, symbol, now_ms)
        if not self._ready:  # on_mount draws the latest arguments
            return
        if snapshot is None:
            text = f"{symbol}: waiting for trades…" if symbol else "no symbol selected"
            if self._placeholder_key != text:
                self._placeholder_key = text
                self.placeholder_text = text
                self.query_one("#detail-placeholder", Static).update(text)
            self.add_class("-empty")
            self.chart.set_series(None)
            return
        self.remove_class("-empty")
        windows = snapshot.windows
        index = min(max(window_index, 0), len(windows) - 1) if windows else -1
        window = windows[index] if index >= 0 else None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self._update_title(snapshot, window, now)
        self._update_metrics(windows, index)
        if window is None:
            self.chart.set_series(None)
        else:
            self.chart.set_series(
                ChartSeries(
                    window_label(window.window_ms),
                    window.closes,
                    window.vwap,
                    window.min,
                    window.max,
                )
            )

    def _redraw_all(self) -> None:
        """Theme switch: colours are baked into the renderables, so draw them again."""
        self._title_key = self._metrics_key = None
        snapshot, window_index, symbol, now_ms = self._last_args
        self.update_detail(snapshot, window_index, symbol=symbol, now_ms=now_ms)

    def _update_title(self, snap: SymbolSnapshot, window: WindowMetrics | None, now: int) -> None:
        age = None if snap.last_trade_ms is None else fmt_age(now - snap.last_trade_ms)
        legend = (
            None
            if window is None
            else (window.window_ms, window.vwap, window.min, window.max, window.change_pct)
        )
        key = (snap.symbol, snap.last_price, age, legend)
        if key == self._title_key:
            return
        self._title_key = key
        theme = self.app.current_theme
        up = rich_colour(theme.success, "green")
        down = rich_colour(theme.error, "red")
        title = Text.assemble((snap.symbol, "bold"), "  ", (fmt_price(snap.last_price), "bold"))
        if window is not None and window.change_pct is not None:
            style = up if window.change_pct > 0 else down if window.change_pct < 0 else ""
            title.append(f"  {fmt_pct(window.change_pct)}", style=style)
        title.append(f"  · last trade {age} ago" if age else "  · no trade yet", style="dim")
        self.title_text = title.plain
        # Title and legend are one line each (fixed height): no layout pass needed.
        self.query_one("#detail-title", Static).update(title, layout=False)

        legend_text = Text()
        if window is not None:
            legend_text.append(f"{window_label(window.window_ms)} price", style="dim")
            for name, value, colour, fallback in (
                ("vwap", window.vwap, theme.warning, "yellow"),
                ("min", window.min, theme.error, "red"),
                ("max", window.max, theme.success, "green"),
            ):
                legend_text.append("  ── ", style=rich_colour(colour, fallback))
                legend_text.append(f"{name} {fmt_price(value)}")
        self.query_one("#detail-legend", Static).update(legend_text, layout=False)

    def _update_metrics(self, windows: tuple[WindowMetrics, ...], selected: int) -> None:
        # Only what the grid shows: closes change more often and are not part of it.
        key = (
            tuple((w.window_ms, *(getattr(w, f) for f, _ in self.METRICS)) for w in windows),
            selected,
        )
        if key == self._metrics_key:
            return
        # The grid's height only changes with the number of windows: relayout only then.
        relayout = self._metrics_key is None or len(self._metrics_key[0]) != len(windows)
        self._metrics_key = key
        self.query_one("#detail-metrics", Static).update(
            self.metrics_table(windows, selected), layout=relayout
        )

    def metrics_table(self, windows: tuple[WindowMetrics, ...], selected: int) -> Table:
        """The metrics grid: one row per metric, one column per window, `selected` highlighted."""
        theme = self.app.current_theme
        accent = rich_colour(theme.accent, "yellow")
        up = rich_colour(theme.success, "green")
        down = rich_colour(theme.error, "red")
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
        table.add_column("", style="dim")
        for i, w in enumerate(windows):
            chosen = i == selected
            table.add_column(
                window_label(w.window_ms),
                justify="right",
                header_style=f"bold reverse {accent}" if chosen else "bold",
                style="bold" if chosen else "",
            )
        for field, label in self.METRICS:
            cells: list[Text | str] = [label]
            for w in windows:
                cells.append(_metric_cell(w, field, up, down))
            table.add_row(*cells)
        return table


def _metric_cell(w: WindowMetrics, field: str, up: str, down: str) -> Text | str:
    """One grid cell, formatted for its metric; changes coloured by sign."""
    value = getattr(w, field)
    if field == "count":
        return fmt_count(value)
    if field == "volume":
        return fmt_volume(value)
    if field == "rate":
        return fmt_rate(value)
    if field in ("change", "change_pct"):
        text = fmt_change(value, w.last) if field == "change" else fmt_pct(value)
        if value is None or value == 0:
            return text
        return Text(text, style=up if value > 0 else down)
    return fmt_price(value) if value is not None else DASH
