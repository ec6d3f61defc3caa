"""The main pane: one row per watchlist symbol with the selected window's metrics.

The app calls `update_quotes` about ten times a second with the latest snapshots. Each call renders
every shown row to plain (text, style) pairs and compares them with what is on screen: a row whose
cells are unchanged costs a few string formats and no repaint; a changed row is rebuilt as one
`Strip` and only its line is repainted. A new order (sorting by a moving column) repaints the
table from the cached strips without rendering any cell again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, NamedTuple

from rich.console import JustifyMethod
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import Click, Resize
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics
from stockup_tui.untrusted import printable
from stockup_tui.widgets.format import (
    DASH,
    fmt_age,
    fmt_change,
    fmt_pct,
    fmt_price,
    fmt_rate,
    fmt_volume,
    rich_colour,
    sparkline,
)

# (key, header label, justify, estimated content width). The keys are stable: the app sorts by them.
COLUMNS: tuple[tuple[str, str, JustifyMethod, int], ...] = (
    ("symbol", "symbol", "left", 6),
    ("last", "last", "right", 9),
    ("chg", "chg", "right", 7),
    ("chg_pct", "chg%", "right", 7),
    ("day_pct", "day%", "right", 7),
    ("rate", "tr/s", "right", 5),
    ("volume", "volume", "right", 6),
    ("vwap", "vwap", "right", 9),
    ("min", "min", "right", 9),
    ("max", "max", "right", 9),
    ("spark", "spark", "left", 12),
    ("age", "age", "right", 4),
)
COLUMN_KEYS: tuple[str, ...] = tuple(c[0] for c in COLUMNS)
# Least important first: dropped in this order as the table gets narrower.
DROP_ORDER: tuple[str, ...] = (
    "spark", "min", "max", "vwap", "age", "volume", "rate", "day_pct", "chg",
)  # fmt: skip
# The sortable columns, in display order: `cycle_sort` walks the visible ones left to right,
# then returns to watchlist order.
SORT_CYCLE: tuple[str, ...] = tuple(k for k in COLUMN_KEYS if k != "spark")
SPARK_WIDTH = 12  # the sparkline's width when the table is tight
SPARK_MAX = 60  # ... and at most, when the terminal leaves room
FLASH_MS = 600
STALE_MS = 60_000

_LABELS = {key: label for key, label, _, _ in COLUMNS}
_JUSTIFY = {key: justify for key, _, justify, _ in COLUMNS}
_ESTIMATE = {key: width for key, _, _, width in COLUMNS}
_WINDOW_FIELD = {
    "chg": "change",
    "chg_pct": "change_pct",
    "rate": "rate",
    "volume": "volume",
    "vwap": "vwap",
    "min": "min",
    "max": "max",
}

Cell = tuple[str, str]  # rendered (text, style): cheap to compare, unlike rich Text


class _Styles(NamedTuple):
    """Style strings resolved from the theme once per refresh (a theme switch restyles cells)."""

    up: str
    down: str
    flash_up: str
    flash_down: str


def _initial_widths() -> dict[str, int]:
    """Each column's width before any figure is seen (padding included); a sortable column has
    room for its label's sort arrow."""
    widths = {
        k: max(_ESTIMATE[k], len(_LABELS[k]) + (2 if k in SORT_CYCLE else 0)) + 2 for k in _LABELS
    }
    widths["spark"] = SPARK_WIDTH + 2
    return widths


class QuotesTable(ScrollView, can_focus=True):
    """Live quotes for the watchlist with tick flashes, sorting, filtering and narrow layouts.

    A line-API widget rather than a DataTable: DataTable re-renders every visible cell through
    Rich whenever any cell changes, which at ten refreshes a second over 50 busy symbols cost
    most of a core. Here each row is kept as a ready `Strip`, rebuilt only when one of its
    cells changed, and painting a frame is composing those strips.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "quotes--header",
        "quotes--cursor",
        "quotes--odd",
    }

    DEFAULT_CSS = """
    QuotesTable {
        height: 1fr;
        background: $surface;
    }
    QuotesTable > .quotes--header {
        color: $text-accent;
        background: $panel;
        text-style: bold;
    }
    QuotesTable > .quotes--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
    }
    QuotesTable:focus > .quotes--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    QuotesTable > .quotes--odd {
        background: $surface-lighten-1 30%;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    class SymbolHighlighted(Message):
        """The symbol under the cursor changed (None when the table has no rows)."""

        def __init__(self, table: QuotesTable, symbol: str | None) -> None:
            self.table = table
            self.symbol = symbol
            super().__init__()

        @property
        def control(self) -> QuotesTable:
            """The table, so handlers can use `@on(..., "#id")` selectors."""
            return self.table

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._snapshots: Mapping[str, SymbolSnapshot] = {}
        self._previous: Mapping[str, float] = {}
        self._watchlist: tuple[str, ...] = ()
        self._window_index = 0
        self._now_ms = 0
        self._sort_key: str | None = None
        self._reverse = False
        self._filter = ""
        self._order: list[str] = []  # symbols shown, in display order
        self._cells: dict[str, dict[str, Cell]] = {}  # what each shown row renders as
        self._strips: dict[str, Strip] = {}  # each shown row, ready to paint
        self._visible: tuple[str, ...] = COLUMN_KEYS  # column keys that fit
        # Padding included; a sortable column also has room for its label's sort arrow.
        self._widths: dict[str, int] = _initial_widths()
        self._spark = SPARK_WIDTH  # the sparkline's width now (grows into spare room)
        self._header: Strip | None = None
        self._last: dict[str, float] = {}  # last price per symbol, to detect ticks
        self._flash: dict[str, tuple[int, int, bool]] = {}  # symbol -> (start, end, uptick)
        self._style_cache: dict[str, Style] = {}
        # Background styles of the three kinds of row (plain, odd, cursor), resolved once: the
        # DOM's `rich_style` walks every ancestor's CSS, which per painted line was a large
        # part of a frame. Cleared whenever Textual restyles the widget (theme, focus, CSS).
        self._paint_styles: tuple[Style, Style, Style] | None = None
        # symbol -> (row strip, kind, x, width, painted strip): a row repainted unchanged
        # (scrolling, the cursor moving elsewhere, a new order) costs a lookup.
        self._painted: dict[str, tuple[Strip, int, int, int, Strip]] = {}
        self._cursor = 0
        self._posted: str | None = None
        self._pending_select: str | None = None
        self.row_updates = 0  # rows re-rendered so far (tests and profiling)
        self._ready = False  # set in on_mount (is_mounted is still False inside it)

    # -- public API --------------------------------------------------------------------------

    def update_quotes(
        self,
        snapshots: Mapping[str, SymbolSnapshot],
        watchlist: Sequence[str],
        window_index: int,
        now_ms: int,
        previous_close: Mapping[str, float] | None = None,
    ) -> None:
        """Shows the latest snapshots; only rows whose text or style changed are re-rendered.
        `previous_close`: per symbol, what the day's change (`day%`) is measured from."""
        self._snapshots = snapshots
        self._previous = previous_close or {}
        watchlist = tuple(dict.fromkeys(watchlist))
        if window_index != self._window_index:
            self.reset_widths()
        self._watchlist = watchlist
        self._window_index = window_index
        self._now_ms = now_ms
        self._refresh_rows()

    def reset_widths(self) -> None:
        """Other figures are coming (another window, another list): the columns may narrow
        again. Between such changes they only widen, so they never jitter tick by tick."""
        self._widths = _initial_widths()
        self._cells.clear()
        self._header = None

    def sort_by(self, column_key: str | None, reverse: bool = False) -> None:
        """Sorts by a column (None: watchlist order); rows without a value go last."""
        if column_key is not None and column_key not in SORT_CYCLE:
            raise ValueError(f"cannot sort by {column_key!r}")
        self._sort_key = column_key
        self._reverse = reverse if column_key is not None else False
        self._header = None  # the arrow moves
        self._refresh_rows()

    def cycle_sort(self) -> None:
        """Moves the sort to the next visible column to the right, then back to watchlist
        order (a sort by a column the width has hidden goes on from the first one shown)."""
        shown = [k for k in self._visible if k in SORT_CYCLE]
        key = self._sort_key
        if key is None or key not in shown:
            nxt: str | None = shown[0]  # the symbol column is never hidden
        else:
            i = shown.index(key) + 1
            nxt = shown[i] if i < len(shown) else None
        self.sort_by(nxt, self._reverse)

    def reverse_sort(self) -> None:
        """Flips the sort direction (watchlist order cannot be reversed)."""
        if self._sort_key is not None:
            self.sort_by(self._sort_key, not self._reverse)

    def set_filter(self, text: str) -> None:
        """Shows only symbols containing `text`, case-insensitively ("" shows all)."""
        self._filter = text.strip().lower()
        self._refresh_rows()

    @property
    def sort_key(self) -> str | None:
        return self._sort_key

    @property
    def sort_reverse(self) -> bool:
        return self._reverse

    @property
    def shown_symbols(self) -> list[str]:
        """The symbols in the table, top to bottom."""
        return list(self._order)

    @property
    def visible_columns(self) -> tuple[str, ...]:
        """Keys of the columns that fit the current width."""
        return self._visible

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def selected_symbol(self) -> str | None:
        """The symbol under the cursor, None when the table is empty."""
        row = self._cursor
        return self._order[row] if 0 <= row < len(self._order) else None

    def select_symbol(self, symbol: str) -> None:
        """Moves the cursor to `symbol`; remembered until its row appears if it is not shown yet."""
        if symbol in self._order:
            self._pending_select = None
            self.move_cursor(self._order.index(symbol))
        else:
            self._pending_select = symbol

    def move_cursor(self, row: int) -> None:
        if not self._order:
            self._cursor = 0
            self._post_highlight()
            return
        row = max(0, min(row, len(self._order) - 1))
        if row != self._cursor:
            old, self._cursor = self._cursor, row
            self._refresh_row_line(old)
            self._refresh_row_line(row)
        self._scroll_to_cursor()
        self._post_highlight()

    def rendered_cell(self, symbol: str, column_key: str) -> Cell | None:
        """The (text, style) a shown cell renders as, None if not shown."""
        return self._cells.get(symbol, {}).get(column_key)

    def get_cell(self, symbol: str, column_key: str) -> Text:
        """A shown cell as styled text (raises KeyError if the row is not shown)."""
        text, style = self._cells[symbol][column_key]
        return Text(text, style=style)

    @property
    def header_text(self) -> str:
        """The header line as shown (with the sort arrow)."""
        if self._header is None:
            self._header = self._build_header()
        return "".join(seg.text for seg in self._header)

    def get_row_at(self, row: int) -> list[str]:
        """The texts of a shown row's visible cells (tests and scripts)."""
        cells = self._cells[self._order[row]]
        return [cells[k][0] for k in self._visible]

    def column_width(self, key: str) -> int:
        """Cells a column takes, padding included (grows with the widest text seen)."""
        return self._widths[key]

    # -- keys and mouse ----------------------------------------------------------------------

    def action_cursor_up(self) -> None:
        self.move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self._cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self._cursor - max(1, self.size.height - 2))

    def action_page_down(self) -> None:
        self.move_cursor(self._cursor + max(1, self.size.height - 2))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._order) - 1)

    def on_click(self, event: Click) -> None:
        """A click on a row selects it; on the header sorts by that column (again: reverse)."""
        if event.y == 0:
            key = self._column_at(event.x + int(self.scroll_offset.x))
            if key is None or key not in SORT_CYCLE:
                return
            if key == self._sort_key:
                self.reverse_sort()
            else:
                self.sort_by(key)
        else:
            self.move_cursor(event.y - 1 + int(self.scroll_offset.y))

    def on_resize(self, _: Resize) -> None:
        self._refresh_rows()

    def on_mount(self) -> None:
        self._ready = True
        self.watch(self.app, "theme", lambda _: self._restyle(), init=False)
        self._refresh_rows()

    def _restyle(self) -> None:
        self._style_cache.clear()
        self._cells.clear()  # colours are baked into the rows: render them again
        self._header = None
        self._paint_styles = None
        self._painted.clear()
        self._refresh_rows()

    # -- painting ----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._paint_styles = None
        self._painted.clear()

    def _row_styles(self) -> tuple[Style, Style, Style]:
        styles = self._paint_styles
        if styles is None:
            base = self.rich_style
            styles = (
                base,
                base + self.get_component_rich_style("quotes--odd"),
                self.get_component_rich_style("quotes--cursor"),
            )
            self._paint_styles = styles
        return styles

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        x = int(self.scroll_offset.x)
        plain, odd, cursor = self._row_styles()
        if y == 0:
            if self._header is None:
                self._header = self._build_header()
            return self._header.crop(x, x + width).extend_cell_length(width, self._header_style())
        row = y - 1 + int(self.scroll_offset.y)
        if not 0 <= row < len(self._order):
            if row == 0 and self._filter and self._watchlist:  # say why the table is empty
                note = printable(f" no symbol matches '{self._filter}' (Escape clears)", width)
                return Strip([Segment(note, self._style("italic"))]).extend_cell_length(
                    width, plain
                )
            return Strip.blank(width, plain)
        symbol = self._order[row]
        strip = self._strips[symbol]
        kind = 2 if row == self._cursor else row % 2
        cached = self._painted.get(symbol)
        if (
            cached is not None
            and cached[0] is strip
            and cached[1] == kind
            and cached[2] == x
            and cached[3] == width
        ):
            return cached[4]
        if kind == 2:  # the cursor's colours win over the cells' own
            painted = Strip(Segment.apply_style(strip, post_style=cursor), strip.cell_length)
        else:
            painted = strip.apply_style(odd if kind else plain)
        painted = painted.crop(x, x + width).extend_cell_length(width, plain)
        self._painted[symbol] = (strip, kind, x, width, painted)
        return painted

    def _header_style(self) -> Style:
        return self.get_component_rich_style("quotes--header")

    def _build_header(self) -> Strip:
        segments = []
        style = self._header_style()
        for key in self._visible:
            label = _LABELS[key]
            if key == self._sort_key:
                label += " ▼" if self._reverse else " ▲"
            segments.append(Segment(self._pad(key, label), style))
        return Strip(segments)

    def _pad(self, key: str, text: str) -> str:
        inner = self._widths[key] - 2
        if len(text) > inner:
            text = text[:inner]
        body = text.rjust(inner) if _JUSTIFY[key] == "right" else text.ljust(inner)
        return f" {body} "

    def _style(self, spec: str) -> Style:
        style = self._style_cache.get(spec)
        if style is None:
            style = Style.parse(spec) if spec else Style()
            self._style_cache[spec] = style
        return style

    def _build_row(self, cells: dict[str, Cell]) -> Strip:
        # Cell styles only: the row's background (plain, odd or cursor) is added when painted.
        # Every cell is padded to its column's width (one cell a character: symbols, figures,
        # block sparklines), so the row's length is known and need not be measured per paint.
        visible = self._visible
        return Strip(
            [Segment(self._pad(k, cells[k][0]), self._style(cells[k][1])) for k in visible],
            sum(self._widths[k] for k in visible),
        )

    def _refresh_row_line(self, row: int) -> None:
        # `refresh_line` takes a line of the virtual content (the header is line 0) and
        # subtracts the scroll offset itself.
        self.refresh_line(row + 1)

    def _scroll_to_cursor(self) -> None:
        top = int(self.scroll_offset.y)
        rows_visible = max(1, self.size.height - 1)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False)
        elif self._cursor >= top + rows_visible:
            self.scroll_to(y=self._cursor - rows_visible + 1, animate=False)

    # -- internals ---------------------------------------------------------------------------

    def _refresh_rows(self) -> None:
        """Brings the rows in line with the stored inputs, re-rendering only what changed."""
        if not self._ready:  # on_mount shows whatever arrived before it
            return
        symbols = [s for s in self._watchlist if self._filter in s.lower()]
        styles = self._styles()
        self._track_ticks(set(symbols))
        previous = self.selected_symbol
        order = self._sorted(symbols)
        rendered = {s: self._render_row(s, styles) for s in symbols}
        spark = self._spark
        fitted = self._grow_widths(rendered) | self._fit_columns()
        if self._spark != spark:  # the sparkline's room changed: draw them at the new width
            rendered = {s: self._render_row(s, styles) for s in symbols}
        if fitted:
            self._cells.clear()  # widths or columns changed: every row is rendered again
            self._header = None
        repaint_all = order != self._order
        changed_rows: list[int] = []
        for i, symbol in enumerate(order):
            cells = rendered[symbol]
            if self._cells.get(symbol) != cells:
                self._cells[symbol] = cells
                self._strips[symbol] = self._build_row(cells)
                self.row_updates += 1
                changed_rows.append(i)
        for symbol in [s for s in self._cells if s not in rendered]:
            del self._cells[symbol]
            self._strips.pop(symbol, None)
            self._painted.pop(symbol, None)
        self._order = order
        self.virtual_size = Size(sum(self._widths[k] for k in self._visible), len(order) + 1)
        keep = previous
        if self._pending_select in order:
            keep, self._pending_select = self._pending_select, None
        cursor = order.index(keep) if keep in order else min(self._cursor, max(len(order) - 1, 0))
        if cursor != self._cursor:
            self._cursor = cursor
            repaint_all = True
            self._scroll_to_cursor()
        if repaint_all or self._header is None:
            self.refresh()
        else:
            for row in changed_rows:
                self._refresh_row_line(row)
        self._post_highlight()

    def _grow_widths(self, rendered: dict[str, dict[str, Cell]]) -> bool:
        """Widens columns to fit new texts (never narrows: columns must not jitter)."""
        grew = False
        widths = self._widths
        for cells in rendered.values():
            for key, (text, _) in cells.items():
                if len(text) + 2 > widths[key]:
                    widths[key] = len(text) + 2
                    grew = True
        return grew

    def _fit_columns(self) -> bool:
        """Drops the least important columns until the rest fit (the sparkline counted at its
        narrowest), then gives the room left to the sparkline; True if the set or a width
        changed."""
        width = self.scrollable_content_region.width
        widths = self._widths
        widths["spark"] = SPARK_WIDTH + 2
        visible = list(COLUMN_KEYS)
        spark = SPARK_WIDTH
        if width > 0:
            need = sum(widths[k] for k in visible)
            for key in DROP_ORDER:
                if need <= width:
                    break
                visible.remove(key)
                need -= widths[key]
            if "spark" in visible and need < width:
                spark = min(SPARK_MAX, SPARK_WIDTH + width - need)
        widths["spark"] = spark + 2
        changed = tuple(visible) != self._visible or spark != self._spark
        self._visible = tuple(visible)
        self._spark = spark
        return changed

    def _column_at(self, x: int) -> str | None:
        edge = 0
        for key in self._visible:
            edge += self._widths[key]
            if x < edge:
                return key
        return None

    def _post_highlight(self) -> None:
        symbol = self.selected_symbol
        if symbol != self._posted:
            self._posted = symbol
            self.post_message(self.SymbolHighlighted(self, symbol))

    def _styles(self) -> _Styles:
        theme = self.app.current_theme
        up = rich_colour(theme.success, "green")
        down = rich_colour(theme.error, "red")
        return _Styles(up, down, f"bold {up}", f"bold {down}")

    def _window(self, snap: SymbolSnapshot) -> WindowMetrics | None:
        i = self._window_index
        return snap.windows[i] if 0 <= i < len(snap.windows) else None

    def _track_ticks(self, shown: set[str]) -> None:
        """Starts a flash on each price tick and ends flashes past their deadline (no timers)."""
        now = self._now_ms
        for symbol in shown:
            snap = self._snapshots.get(symbol)
            price = snap.last_price if snap is not None else None
            if price is None:
                continue
            prev = self._last.get(symbol)
            if prev is not None and price != prev:
                self._flash[symbol] = (now, now + FLASH_MS, price > prev)
            self._last[symbol] = price
        for symbol, (start, end, _) in list(self._flash.items()):
            if symbol not in shown or not start <= now < end:
                del self._flash[symbol]

    def _render_row(self, symbol: str, styles: _Styles) -> dict[str, Cell]:
        """Every column of one row as (text, style), hidden columns included for rebuilds."""
        snap = self._snapshots.get(symbol)
        w = self._window(snap) if snap is not None else None
        row = dict.fromkeys(COLUMN_KEYS, (DASH, "dim"))
        row["symbol"] = (symbol, "bold")
        row["spark"] = ("", "")
        if snap is None:
            return row
        flash = self._flash.get(symbol)
        last_style = "" if flash is None else (styles.flash_up if flash[2] else styles.flash_down)
        row["last"] = (fmt_price(snap.last_price), last_style)
        day = self._day_pct(symbol, snap)
        if day is not None:
            row["day_pct"] = (
                fmt_pct(day),
                styles.up if day > 0 else styles.down if day < 0 else "",
            )
        if snap.last_trade_ms is not None:
            age = self._now_ms - snap.last_trade_ms
            row["age"] = (fmt_age(age), "dim" if age >= STALE_MS else "")
        if w is None:
            return row
        change = w.change or 0.0
        sign_style = styles.up if change > 0 else styles.down if change < 0 else ""
        row["chg"] = (fmt_change(w.change, snap.last_price), sign_style)
        row["chg_pct"] = (fmt_pct(w.change_pct), sign_style)
        row["rate"] = (fmt_rate(w.rate), "")
        row["volume"] = (fmt_volume(w.volume), "")
        row["vwap"] = (fmt_price(w.vwap), "")
        row["min"] = (fmt_price(w.min), "")
        row["max"] = (fmt_price(w.max), "")
        row["spark"] = (sparkline(w.closes, self._spark), sign_style)
        return row

    def export_rows(self) -> list[dict[str, object]]:
        """The rows shown (filter and order as on screen) as plain values for a CSV file: the
        window's full-precision numbers, not the cells' rounded text."""
        rows: list[dict[str, object]] = []
        for symbol in self._order:
            snap = self._snapshots.get(symbol)
            w = self._window(snap) if snap is not None else None
            row: dict[str, object] = {"symbol": symbol}
            row["last"] = snap.last_price if snap is not None else None
            row["last_trade_ms"] = snap.last_trade_ms if snap is not None else None
            row["previous_close"] = self._previous.get(symbol)
            row["day_pct"] = self._day_pct(symbol, snap) if snap is not None else None
            for key in ("count", "volume", "first", "min", "max", "mean", "vwap", "change"):
                row[key] = getattr(w, key) if w is not None else None
            row["change_pct"] = w.change_pct if w is not None else None
            row["rate"] = w.rate if w is not None else None
            row["window_ms"] = w.window_ms if w is not None else None
            rows.append(row)
        return rows

    def _day_pct(self, symbol: str, snap: SymbolSnapshot) -> float | None:
        """The change since the previous close, in percent (None without one)."""
        close = self._previous.get(symbol)
        if close is None or snap.last_price is None:
            return None
        return (snap.last_price - close) / close * 100

    def _sort_value(self, symbol: str) -> float | str | None:
        key = self._sort_key
        if key == "symbol":
            return symbol
        snap = self._snapshots.get(symbol)
        if snap is None:
            return None
        if key == "last":
            return snap.last_price
        if key == "day_pct":
            return self._day_pct(symbol, snap)
        if key == "age":
            return None if snap.last_trade_ms is None else self._now_ms - snap.last_trade_ms
        w = self._window(snap)
        return None if w is None or key is None else getattr(w, _WINDOW_FIELD[key])

    def _sorted(self, symbols: list[str]) -> list[str]:
        """Stable sort on the chosen column; ties keep watchlist order, missing values go last."""
        if self._sort_key is None:
            return symbols
        valued: list[tuple[float | str, str]] = []
        missing: list[str] = []
        for symbol in symbols:
            value = self._sort_value(symbol)
            if value is None:
                missing.append(symbol)
            else:
                valued.append((value, symbol))
        valued.sort(key=lambda vs: vs[0], reverse=self._reverse)
        return [s for _, s in valued] + missing
