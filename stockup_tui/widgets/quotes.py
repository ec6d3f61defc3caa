"""The main pane: one row per watchlist symbol with the selected window's metrics.

The app calls `update_quotes` about ten times a second with the latest snapshots. Each call renders
every visible row to plain (text, style) pairs, compares them with what the table already shows
and touches only the cells that differ, so an idle symbol costs a few string formats and no
repaint. Rows are reordered with `DataTable.sort` only when the wanted order actually changed, and
the table is rebuilt from scratch only when its columns change (resize, new sort arrow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from rich.console import JustifyMethod
from rich.text import Text
from textual.events import Resize
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics
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
DROP_ORDER: tuple[str, ...] = ("spark", "min", "max", "vwap", "age", "volume", "rate", "chg")
# `cycle_sort` walks these, then returns to watchlist order.
SORT_CYCLE: tuple[str, ...] = (
    "symbol",
    "last",
    "chg_pct",
    "rate",
    "volume",
    "chg",
    "vwap",
    "min",
    "max",
    "age",
)
SPARK_WIDTH = 12
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


class QuotesTable(DataTable):
    """Live quotes for the watchlist with tick flashes, sorting, filtering and narrow layouts."""

    DEFAULT_CSS = """
    QuotesTable {
        height: 1fr;
    }
    """

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
        zebra_stripes: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(
            cursor_type="row",
            zebra_stripes=zebra_stripes,
            name=name,
            id=id,
            classes=classes,
            disabled=disabled,
        )
        self._snapshots: Mapping[str, SymbolSnapshot] = {}
        self._watchlist: tuple[str, ...] = ()
        self._window_index = 0
        self._now_ms = 0
        self._sort_key: str | None = None
        self._reverse = False
        self._filter = ""
        self._order: list[str] = []  # symbols in the table, in display order
        self._cells: dict[str, dict[str, Cell]] = {}  # what each shown row's cells render as
        self._visible: tuple[str, ...] = ()  # column keys in the table
        self._known_widths: dict[str, int] = {}  # widest render width seen per column
        self._last: dict[str, float] = {}  # last price per symbol, to detect ticks
        self._flash: dict[str, tuple[int, int, bool]] = {}  # symbol -> (start, end, uptick)
        self._posted: str | None = None
        self._pending_select: str | None = None
        self._ready = False  # set in on_mount (is_mounted is still False inside it)
        self.cell_updates = 0  # update_cell calls so far (tests and profiling)
        self.rebuilds = 0  # full rebuilds so far

    # -- public API --------------------------------------------------------------------------

    def update_quotes(
        self,
        snapshots: Mapping[str, SymbolSnapshot],
        watchlist: Sequence[str],
        window_index: int,
        now_ms: int,
    ) -> None:
        """Shows the latest snapshots; only cells whose text or style changed are touched."""
        self._snapshots = snapshots
        self._watchlist = tuple(dict.fromkeys(watchlist))
        self._window_index = window_index
        self._now_ms = now_ms
        self._refresh_rows()

    def sort_by(self, column_key: str | None, reverse: bool = False) -> None:
        """Sorts by a column (None: watchlist order); rows without a value go last."""
        if column_key is not None and column_key not in SORT_CYCLE:
            raise ValueError(f"cannot sort by {column_key!r}")
        self._sort_key = column_key
        self._reverse = reverse if column_key is not None else False
        self._refresh_rows(rebuild=True)  # the header arrow moves

    def cycle_sort(self) -> None:
        """Moves the sort to the next column of `SORT_CYCLE`, then back to watchlist order."""
        if self._sort_key is None:
            nxt: str | None = SORT_CYCLE[0]
        else:
            i = SORT_CYCLE.index(self._sort_key) + 1
            nxt = SORT_CYCLE[i] if i < len(SORT_CYCLE) else None
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
        """The column the rows are sorted by, None for watchlist order."""
        return self._sort_key

    @property
    def sort_reverse(self) -> bool:
        """Whether the sort is descending."""
        return self._reverse

    @property
    def filter_text(self) -> str:
        """The current (lower-cased) filter."""
        return self._filter

    @property
    def shown_symbols(self) -> list[str]:
        """The symbols in the table, top to bottom."""
        return list(self._order)

    @property
    def visible_columns(self) -> tuple[str, ...]:
        """Keys of the columns that fit the current width."""
        return self._visible

    @property
    def selected_symbol(self) -> str | None:
        """The symbol under the cursor, None when the table is empty."""
        row = self.cursor_row
        return self._order[row] if 0 <= row < len(self._order) else None

    def select_symbol(self, symbol: str) -> None:
        """Moves the cursor to `symbol`; remembered until its row appears if it is not shown yet."""
        if symbol in self._order:
            self._pending_select = None
            self.move_cursor(row=self._order.index(symbol))
            self._post_highlight()
        else:
            self._pending_select = symbol

    def rendered_cell(self, symbol: str, column_key: str) -> Cell | None:
        """The (text, style) a shown cell renders as, None if not shown (for tests and the app)."""
        return self._cells.get(symbol, {}).get(column_key)

    # -- events ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._ready = True
        self._refresh_rows(rebuild=True)

    def on_resize(self, _: Resize) -> None:
        if self._fit_columns() != self._visible:
            self._refresh_rows()

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._post_highlight()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a header sorts by it; clicking the sorted one again flips the direction."""
        key = event.column_key.value
        if key == self._sort_key:
            self.reverse_sort()
        elif key in SORT_CYCLE:
            self.sort_by(key)

    # -- internals ---------------------------------------------------------------------------

    def _refresh_rows(self, rebuild: bool = False) -> None:
        """Brings the table in line with the stored inputs, touching as little as possible."""
        if not self._ready:  # on_mount shows whatever arrived before it
            return
        symbols = [s for s in self._watchlist if self._filter in s.lower()]
        styles = self._styles()
        self._track_ticks(set(symbols))
        rendered = {s: self._render_row(s, styles) for s in symbols}
        order = self._sorted(symbols)
        previous = self.selected_symbol
        visible = self._fit_columns()
        with self.app.batch_update():
            if rebuild or visible != self._visible:
                self._rebuild(visible, order, rendered)
            else:
                self._apply(order, rendered)
            keep = previous
            if self._pending_select in self._order:
                keep, self._pending_select = self._pending_select, None
            if keep in self._order:
                index = self._order.index(keep)
                if index != self.cursor_row:
                    self.move_cursor(row=index)
        self._post_highlight()

    def _apply(self, order: list[str], rendered: dict[str, dict[str, Cell]]) -> None:
        """Removes, updates and adds rows; re-sorts only when the order differs."""
        wanted = set(order)
        for symbol in [s for s in self._order if s not in wanted]:
            self.remove_row(symbol)
            del self._cells[symbol]
        current = [s for s in self._order if s in wanted]
        for symbol in current:
            old = self._cells[symbol]
            new = rendered[symbol]
            for key in self._visible:
                if new[key] != old[key]:
                    grow = len(new[key][0]) > len(old[key][0])
                    self.update_cell(symbol, key, self._cell(key, new[key]), update_width=grow)
                    self.cell_updates += 1
            self._cells[symbol] = new
        for symbol in order:
            if symbol not in self._cells:
                cells = rendered[symbol]
                self.add_row(*(self._cell(k, cells[k]) for k in self._visible), key=symbol)
                self._cells[symbol] = rendered[symbol]
                current.append(symbol)
        if current != order:
            rank = {s: i for i, s in enumerate(order)}
            self.sort("symbol", key=lambda cell: rank[cell.plain])
        self._order = order

    def _rebuild(
        self, visible: tuple[str, ...], order: list[str], rendered: dict[str, dict[str, Cell]]
    ) -> None:
        """Recreates columns and rows: DataTable cannot insert a column in the middle."""
        self._remember_widths()
        self.clear(columns=True)
        for key in visible:
            label = _LABELS[key]
            if key == self._sort_key:
                label += " ▼" if self._reverse else " ▲"
            self.add_column(
                Text(label, justify=_JUSTIFY[key]),
                key=key,
                width=SPARK_WIDTH if key == "spark" else None,
            )
        for symbol in order:
            self.add_row(*(self._cell(k, rendered[symbol][k]) for k in visible), key=symbol)
        self._visible = visible
        self._order = order
        self._cells = rendered
        self.rebuilds += 1

    @staticmethod
    def _cell(key: str, cell: Cell) -> Text:
        text, style = cell
        return Text(text, style=style, justify=_JUSTIFY[key])

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
        row["spark"] = (sparkline(w.closes, SPARK_WIDTH), sign_style)
        return row

    def _sort_value(self, symbol: str) -> float | str | None:
        key = self._sort_key
        if key == "symbol":
            return symbol
        snap = self._snapshots.get(symbol)
        if snap is None:
            return None
        if key == "last":
            return snap.last_price
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

    def _remember_widths(self) -> None:
        for key in self._visible:
            column = self.columns.get(ColumnKey(key))
            if column is not None:
                width = column.get_render_width(self)
                self._known_widths[key] = max(self._known_widths.get(key, 0), width)

    def column_width(self, key: str) -> int:
        """Cells a column needs: the widest seen so far, or an estimate before it is measured."""
        return max(self._known_widths.get(key, 0), _ESTIMATE[key] + 2 * self.cell_padding)

    def _fit_columns(self) -> tuple[str, ...]:
        """Columns that fit the width, dropping the least important first."""
        width = self.scrollable_content_region.width
        if width <= 0:
            return COLUMN_KEYS
        self._remember_widths()
        visible = list(COLUMN_KEYS)
        need = sum(self.column_width(k) for k in visible)
        for key in DROP_ORDER:
            if need <= width:
                break
            visible.remove(key)
            need -= self.column_width(key)
        return tuple(visible)

    def _post_highlight(self) -> None:
        symbol = self.selected_symbol
        if symbol != self._posted:
            self._posted = symbol
            self.post_message(self.SymbolHighlighted(self, symbol))
