"""The detail pane: price chart, every window's metrics and a title line for one symbol.

The app calls `update_detail` on every refresh (~10x/s). Each part keeps the inputs it last drew
and redraws only when they changed; the metrics grid repaints only its changed lines. The chart,
by far the dearest part (~5-10 ms per plotext build), is limited to a few redraws a second, the
latest data winning; a new window or symbol (a key press) is drawn at once, but in the frame
after the one that shows the rest, so the key's effect is not held back by the plot.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color, ColorParseError
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static
from textual_plotext import PlotextPlot

from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics, window_label
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
)

#: Price points per window the screen asks the engine for (`live_points`): the chart's buckets.
CHART_POINTS = 60


class ChartSeries(NamedTuple):
    """What the chart shows; compared as a whole to decide whether to redraw."""

    label: str
    closes: tuple[float, ...]
    vwap: float | None
    low: float | None
    high: float | None
    # The closes are the last ones of `buckets` equal buckets over `span_ms` (the window):
    # with both, the x axis is time, labelled back from "now" (0: just "now" at the end).
    buckets: int = 0
    span_ms: int = 0


def ago(ms: float) -> str:
    """`-1m`, `-45s`, `-2.5s`: a time axis label, back from now."""
    if ms >= 60_000 and ms % 60_000 == 0:
        return f"-{ms / 60_000:g}m"
    return f"-{ms / 1000:g}s"


def _rgb(value: str | None, fallback: str) -> tuple[int, int, int]:
    """A theme colour as an RGB triple, the form plotext takes for full colour."""
    try:
        return Color.parse(value or fallback).rgb
    except ColorParseError:
        return Color.parse(fallback).rgb


class PriceChart(Widget):
    """A window's closes with VWAP/min/max lines (plotext)."""

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
        self._after_frame = False  # a draw is queued after the next frame
        self._ready = False  # the plot child exists (is_mounted is still False in on_mount)

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="chart-plot", classes="chart-body")
        yield Static("no trades in this window", id="chart-empty")

    def on_mount(self) -> None:
        self._ready = True
        self.set_class(not (self._wanted and self._wanted.closes), "-empty")
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())
        if self._wanted is not None:
            self._draw()

    def set_series(self, series: ChartSeries | None, *, urgent: bool = False) -> None:
        """Draws `series` after the frame being prepared; new data for the same chart waits
        for the next free slot if a plot was built very recently. `urgent` (another window
        or symbol: a key press) skips that wait."""
        if series == self._wanted:
            return
        self._wanted = series
        if series is None or not series.closes:  # clearing costs nothing
            self._draw()
            return
        if urgent:
            self._draw_after_frame()
            return
        wait = self._last_draw + self.min_interval - time.monotonic()
        if wait <= 0:
            self._draw()
        elif self._timer is None:
            self._timer = self.set_timer(wait, self._flush)

    def _draw_after_frame(self) -> None:
        # The plotext build (about 10 ms) happens when the plot is rendered. Deferred past the
        # frame being prepared, it does not hold back the cheap parts of the screen (rows,
        # title, metrics: what a key press changes first); the chart follows one frame later.
        if not self._after_frame:
            self._after_frame = True
            self.call_after_refresh(self._flush_after_frame)

    def _flush_after_frame(self) -> None:
        self._after_frame = False
        if self._wanted != self.series:
            self._draw()

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
        self._plot(self.query_one("#chart-plot", PlotextPlot), series)

    def _plot(self, widget: PlotextPlot, s: ChartSeries) -> None:
        theme = self.app.current_theme
        plt = widget.plt
        plt.clear_data()
        n = len(s.closes)
        values = [v for v in (s.vwap, s.low, s.high, *s.closes) if v is not None]
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.05 or max(abs(hi) * 0.001, 1e-9)
        plt.ylim(lo - pad, hi + pad)
        if s.buckets >= n and s.span_ms > 0:  # a time axis over the whole window
            b = s.buckets
            xs = list(range(b - n, b))
            plt.xlim(0, max(b - 1, 1))
            ticks: list[float] = [round((b - 1) * k / 4) for k in range(5)]
            labels = [ago(s.span_ms * (1 - k / 4)) for k in range(4)] + ["now"]
            plt.xticks(ticks, labels)
        else:
            xs = list(range(n))
            plt.xlim(0, max(n - 1, 1))
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


Cell = tuple[str, str]  # (text, style): cheap to compare


class MetricsGrid(Widget):
    """Every metric of every window: a label column, then one right-aligned column per window.

    A line-API widget: each grid row is kept as a ready `Strip` and rebuilt (and repainted)
    only when one of its cells changed, where a Rich `Table` was measured and rendered whole
    on every refresh. Its height (the header and one line per metric) only changes with the
    number of rows, so an update needs no layout pass. Columns grow to fit their widest text
    and do not shrink while the same symbol is shown, so figures do not jitter sideways.
    """

    DEFAULT_CSS = """
    MetricsGrid {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._rows: list[tuple[Cell, ...]] = []
        self._strips: list[Strip] = []
        self._widths: list[int] = []
        self._owner: object = None  # what the widths were grown for (the symbol)
        self._pad_styles: tuple[str, ...] = ()
        self._base: Style | None = None
        self._styles: dict[str, Style] = {}

    @property
    def rows(self) -> list[tuple[Cell, ...]]:
        """The grid as (text, style) cells, the header first (tests and scripts)."""
        return list(self._rows)

    @property
    def lines(self) -> list[str]:
        """The grid's lines as plain text, as painted."""
        return ["".join(seg.text for seg in strip).rstrip() for strip in self._strips]

    def set_rows(
        self, rows: list[tuple[Cell, ...]], pad_styles: tuple[str, ...], owner: object
    ) -> None:
        """Shows `rows` (the header first); repaints only the lines that changed.

        `pad_styles`: each column's style, which also covers its padding in the body rows
        (the header's cell styles cover their padding). `owner` (the symbol): columns only
        grow while it stays the same.
        """
        if owner != self._owner or not rows or len(rows[0]) != len(self._widths):
            self._owner = owner
            self._widths = [0] * (len(rows[0]) if rows else 0)
            self._rows = []
        self._pad_styles = pad_styles
        widths = self._widths
        grew = False
        for row in rows:
            for i, (text, _) in enumerate(row):
                if len(text) > widths[i]:
                    widths[i] = len(text)
                    grew = True
        relayout = len(rows) != len(self._strips)
        if grew or relayout:
            self._strips = [self._build(row, y == 0) for y, row in enumerate(rows)]
            self._rows = list(rows)
            self.refresh(layout=relayout)
            return
        width = self.size.width
        for y, row in enumerate(rows):
            if row != self._rows[y]:
                self._rows[y] = row
                self._strips[y] = self._build(row, y == 0)
                self.refresh(Region(0, y, width, 1))

    def clear_styles(self) -> None:
        """The theme changed: parsed styles are stale (the caller sends new rows)."""
        self._styles.clear()
        self._base = None
        self._owner = None

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = Style.parse(spec) if spec else Style()
            self._styles[spec] = style
        return style

    def _build(self, row: tuple[Cell, ...], header: bool) -> Strip:
        # The very cells a Rich Table (box None, padding (0, 1), no edge padding) drew: the
        # label left-aligned, values right-aligned, two spaces between columns.
        last = len(row) - 1
        style = self._style
        segments = []
        for i, (text, spec) in enumerate(row):
            pad = spec if header else self._pad_styles[i]
            gap = self._widths[i] - len(text)
            # Justification spaces take the cell's style, the one-cell padding the column's.
            if i == 0:
                segments.append(Segment(text + " " * gap, style(spec)))
                if last:
                    segments.append(Segment(" ", style(pad)))
            else:
                segments.append(Segment(" ", style(pad)))
                segments.append(Segment(" " * gap + text, style(spec)))
                if i < last:
                    segments.append(Segment(" ", style(pad)))
        return Strip([seg for seg in segments if seg.text])

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._strips)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self._base
        if base is None:  # the widget's colours, under the cells' own (resolved once)
            base = self._base = self.rich_style
        if 0 <= y < len(self._strips):
            return self._strips[y].apply_style(base).crop(0, width).extend_cell_length(width, base)
        return Strip.blank(width, base)


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
        ("change", "chg"),
        ("change_pct", "chg%"),
        ("vwap", "vwap"),
        ("rate", "tr/s"),
        ("count", "count"),
        ("volume", "volume"),
        ("min", "min"),
        ("max", "max"),
        ("mean", "mean"),
        ("first", "first"),
        ("last", "last"),
    )
    """(WindowMetrics field, row label), in display order: what a short pane keeps first (the
    last price is in the title)."""

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._title_key: object = None
        self._previous_close: float | None = None
        self._metrics_key: object = None
        self._placeholder_key: object = None
        self._chart_key: object = None  # (symbol, window) the chart shows: a change is urgent
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
        yield MetricsGrid(id="detail-metrics")
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
        previous_close: float | None = None,
    ) -> None:
        """Shows `snapshot` with `window_index` selected; None shows a placeholder.

        `symbol` names the selection when it has no snapshot yet ("waiting for trades…");
        `now_ms` (default: the wall clock) dates the last trade in the title; with
        `previous_close` the title also gives the day's change.
        """
        self._last_args = (snapshot, window_index, symbol, now_ms)
        self._previous_close = previous_close
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
        self._update_metrics(snapshot.symbol, windows, index)
        if window is None:
            self.chart.set_series(None)
        else:
            shown = (snapshot.symbol, window.window_ms)
            urgent, self._chart_key = shown != self._chart_key, shown
            self.chart.set_series(
                ChartSeries(
                    window_label(window.window_ms),
                    window.closes,
                    window.vwap,
                    window.min,
                    window.max,
                    CHART_POINTS,
                    window.window_ms,
                ),
                urgent=urgent,
            )

    def _redraw_all(self) -> None:
        """Theme switch: colours are baked into the renderables, so draw them again."""
        self._title_key = self._metrics_key = None
        self.query_one(MetricsGrid).clear_styles()
        snapshot, window_index, symbol, now_ms = self._last_args
        self.update_detail(
            snapshot,
            window_index,
            symbol=symbol,
            now_ms=now_ms,
            previous_close=self._previous_close,
        )

    def _update_title(self, snap: SymbolSnapshot, window: WindowMetrics | None, now: int) -> None:
        age = None if snap.last_trade_ms is None else fmt_age(now - snap.last_trade_ms)
        legend = (
            None
            if window is None
            else (window.window_ms, window.vwap, window.min, window.max, window.change_pct)
        )
        close = self._previous_close
        key = (snap.symbol, snap.last_price, age, legend, close)
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
        if close is not None and snap.last_price is not None:
            day = (snap.last_price - close) / close * 100
            style = up if day > 0 else down if day < 0 else ""
            title.append("  · day ", style="dim")
            title.append(fmt_pct(day), style=style)
        title.append(f"  · {age} ago" if age else "  · no trade yet", style="dim")
        if close is not None:  # the least needed: what a narrow pane cuts off
            title.append(f"  · prev close {fmt_price(close)}", style="dim")
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

    def _update_metrics(
        self, symbol: str, windows: tuple[WindowMetrics, ...], selected: int
    ) -> None:
        # Only what the grid shows: closes change more often and are not part of it.
        key = (
            symbol,
            tuple((w.window_ms, *(getattr(w, f) for f, _ in self.METRICS)) for w in windows),
            selected,
        )
        if key == self._metrics_key:
            return
        self._metrics_key = key
        pads = ("dim", *("bold" if i == selected else "" for i in range(len(windows))))
        self.query_one(MetricsGrid).set_rows(self.metrics_rows(windows, selected), pads, symbol)

    def metrics_rows(
        self, windows: tuple[WindowMetrics, ...], selected: int
    ) -> list[tuple[Cell, ...]]:
        """The metrics grid as (text, style) cells: a header of window labels, then one row
        per metric with one column per window; the `selected` window is highlighted."""
        theme = self.app.current_theme
        accent = rich_colour(theme.accent, "yellow")
        up = rich_colour(theme.success, "green")
        down = rich_colour(theme.error, "red")
        chosen = [i == selected for i in range(len(windows))]
        header: list[Cell] = [("", "bold")]
        for w, on in zip(windows, chosen, strict=True):
            header.append((window_label(w.window_ms), f"bold reverse {accent}" if on else "bold"))
        rows: list[tuple[Cell, ...]] = [tuple(header)]
        for field, label in self.METRICS:
            cells: list[Cell] = [(label, "dim")]
            for w, on in zip(windows, chosen, strict=True):
                text, style = _metric_cell(w, field, up, down)
                cells.append((text, f"bold {style}".strip() if on else style))
            rows.append(tuple(cells))
        return rows


def _metric_cell(w: WindowMetrics, field: str, up: str, down: str) -> Cell:
    """One grid cell, formatted for its metric; changes coloured by sign."""
    value = getattr(w, field)
    if field == "count":
        return fmt_count(value), ""
    if field == "volume":
        return fmt_volume(value), ""
    if field == "rate":
        return fmt_rate(value), ""
    if field in ("change", "change_pct"):
        text = fmt_change(value, w.last) if field == "change" else fmt_pct(value)
        if value is None or value == 0:
            return text, ""
        return text, up if value > 0 else down
    return (fmt_price(value) if value is not None else DASH), ""
