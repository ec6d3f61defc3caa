"""QuotesTable inside a tiny app fed with synthetic snapshots, plus the pure format helpers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from textual.app import App, ComposeResult
from textual.color import Color

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
    sparkline,
)
from stockup_tui.widgets.quotes import (
    COLUMN_KEYS,
    COLUMNS,
    SORT_CYCLE,
    SPARK_MAX,
    SPARK_WIDTH,
    QuotesTable,
)
from tests.helpers import wait_until

WATCHLIST = ["AAPL", "MSFT", "TSLA", "NVDA", "NEW"]  # NEW never gets a snapshot
PRICES = {"AAPL": 187.43, "MSFT": 410.2, "TSLA": 170.5, "NVDA": 905.1}


def snap(
    symbol: str,
    last: float,
    *,
    change: float = 1.0,
    closes: Sequence[float] = (1.0, 2.0, 3.0),
    last_trade_ms: int = 1_000,
) -> SymbolSnapshot:
    """A one-window (1m) snapshot; only the fields a test varies are parameters."""
    window = WindowMetrics(
        window_ms=60_000,
        count=10,
        volume=1234.0,
        first=last - change,
        last=last,
        min=last - 2,
        max=last + 2,
        mean=last,
        vwap=last - 0.5,
        change=change,
        change_pct=change / (last - change) * 100,
        rate=0.17,
        closes=tuple(closes),
    )
    return SymbolSnapshot(symbol, last_trade_ms, last, last_trade_ms, (window,))


def snaps(**overrides: float) -> dict[str, SymbolSnapshot]:
    prices = PRICES | overrides
    return {s: snap(s, p) for s, p in prices.items()}


class QuotesApp(App[None]):
    """Just the table, recording every SymbolHighlighted it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.highlights: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield QuotesTable()

    def on_quotes_table_symbol_highlighted(self, message: QuotesTable.SymbolHighlighted) -> None:
        self.highlights.append(message.symbol)


def table_order(table: QuotesTable) -> list[str]:
    return table.shown_symbols


def column_order(table: QuotesTable) -> list[str]:
    return list(table.visible_columns)


def spy_rows(table: QuotesTable, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the symbol of every row the table renders again."""
    calls: list[str] = []
    original = table._build_row

    def spy(cells: dict[str, tuple[str, str]]) -> object:
        calls.append(cells["symbol"][0])
        return original(cells)

    monkeypatch.setattr(table, "_build_row", spy)
    return calls


async def test_rows_follow_watchlist_with_dashes_for_missing_symbols() -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_400)
        await pilot.pause()
        assert table_order(table) == WATCHLIST
        assert column_order(table) == list(COLUMN_KEYS)
        assert table.get_cell("AAPL", "last").plain == "187.43"
        assert table.get_cell("AAPL", "age").plain == "0.4s"
        assert table.get_cell("AAPL", "spark").plain == "▁▅█"
        assert table.get_cell("NEW", "symbol").plain == "NEW"
        assert table.get_cell("NEW", "last").plain == DASH
        assert table.get_cell("NEW", "vwap").plain == DASH
        up = rich_colour(app.current_theme.success, "green")
        assert table.get_cell("AAPL", "chg").style == up
        assert table.get_cell("AAPL", "chg_pct").style == up

        # A symbol leaves the watchlist, another joins: rows follow, none is rendered again.
        updates = table.row_updates
        table.update_quotes(snaps(), ["MSFT", "AAPL", "NVDA"], 0, 1_400)
        assert table_order(table) == ["MSFT", "AAPL", "NVDA"]
        assert table.row_updates == updates


async def test_price_change_rerenders_only_that_row_and_flashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        await pilot.pause()
        calls = spy_rows(table, monkeypatch)
        success = Color.parse(app.current_theme.success or "").hex.lower()
        error = Color.parse(app.current_theme.error or "").hex.lower()

        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        assert calls == [], "an identical refresh must not render any row"

        # Only the last price moves (the window is rebuilt around it, so pin the window fields).
        moved = snaps()
        base = moved["AAPL"]
        moved["AAPL"] = SymbolSnapshot("AAPL", 1_000, 188.0, 1_000, base.windows)
        table.update_quotes(moved, WATCHLIST, 0, 1_000)
        assert calls == ["AAPL"]
        cell = table.get_cell("AAPL", "last")
        assert cell.plain == "188.00"
        assert success in str(cell.style).lower()

        # The flash ends on a later refresh past its deadline, with no timer involved.
        calls.clear()
        table.update_quotes(moved, WATCHLIST, 0, 1_300)  # ages move, the flash stays
        assert "AAPL" in calls  # its age moved; the flash stays
        assert success in str(table.get_cell("AAPL", "last").style).lower()
        table.update_quotes(moved, WATCHLIST, 0, 1_700)
        assert success not in str(table.get_cell("AAPL", "last").style).lower()

        # Downtick: the error colour.
        moved["AAPL"] = SymbolSnapshot("AAPL", 1_000, 187.0, 1_000, base.windows)
        table.update_quotes(moved, WATCHLIST, 0, 1_800)
        assert error in str(table.get_cell("AAPL", "last").style).lower()
        assert table.rendered_cell("AAPL", "last") == ("187.00", f"bold {error}")


async def test_sorting_keeps_cursor_on_symbol() -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        table.select_symbol("MSFT")
        await pilot.pause()
        assert table.selected_symbol == "MSFT"

        table.sort_by("last")
        by_price = ["TSLA", "AAPL", "MSFT", "NVDA", "NEW"]  # no price: last either way
        assert table_order(table) == by_price
        assert table.selected_symbol == "MSFT"
        assert table.cursor_row == by_price.index("MSFT")
        assert "last ▲" in table.header_text

        updates = table.row_updates
        table.reverse_sort()
        assert table.row_updates == updates  # a new order repaints cached rows, renders none
        assert table_order(table) == ["NVDA", "MSFT", "AAPL", "TSLA", "NEW"]
        assert table.selected_symbol == "MSFT"
        assert table.cursor_row == 1

        # The sort column moves: rows are reordered, the cursor stays on its symbol.
        table.update_quotes(snaps(TSLA=2000.0), WATCHLIST, 0, 1_000)
        assert table_order(table) == ["TSLA", "NVDA", "MSFT", "AAPL", "NEW"]
        assert table.selected_symbol == "MSFT"

        table.sort_by(None)
        assert table_order(table) == WATCHLIST
        assert table.selected_symbol == "MSFT"
        await pilot.pause()
        assert app.highlights[-1] == "MSFT"


async def test_cycle_sort_walks_columns_then_returns_to_watchlist_order() -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)):
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        seen = []
        for _ in range(len(SORT_CYCLE) + 1):
            table.cycle_sort()
            seen.append(table.sort_key)
        assert seen == [*SORT_CYCLE, None]
        assert list(SORT_CYCLE) == [k for k in table.visible_columns if k != "spark"]
        with pytest.raises(ValueError):
            table.sort_by("spark")


async def test_every_sort_arrow_fits_its_column() -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)):
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        for key in SORT_CYCLE:
            for reverse in (False, True):
                table.sort_by(key, reverse)
                arrow = "▼" if reverse else "▲"
                label = next(lab for k, lab, *_ in COLUMNS if k == key)
                assert f"{label} {arrow}" in table.header_text, (key, table.header_text)


async def test_cycle_sort_walks_only_the_columns_shown() -> None:
    app = QuotesApp()
    async with app.run_test(size=(50, 20)):
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        shown = [k for k in table.visible_columns if k in SORT_CYCLE]
        assert len(shown) < len(SORT_CYCLE)  # narrow: some are hidden
        seen = []
        for _ in range(len(shown) + 1):
            table.cycle_sort()
            seen.append(table.sort_key)
        assert seen == [*shown, None]


async def test_filter_hides_rows() -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        table.set_filter("ms")
        assert table_order(table) == ["MSFT"]
        assert table.selected_symbol == "MSFT"
        table.set_filter("zzz")
        assert table.row_count == 0
        assert table.selected_symbol is None
        table.set_filter("")
        assert table_order(table) == WATCHLIST
        await pilot.pause()
        assert None in app.highlights


async def test_narrow_width_drops_spark_first_then_more() -> None:
    app = QuotesApp()
    async with app.run_test(size=(200, 20)) as pilot:
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        await pilot.pause()
        assert table.visible_columns == COLUMN_KEYS
        # Room to spare goes to the sparkline: the table uses the width it has.
        assert table.column_width("spark") > SPARK_WIDTH + 2
        used = sum(table.column_width(k) for k in COLUMN_KEYS)
        assert used == table.size.width or table.column_width("spark") == SPARK_MAX + 2
        assert len(table.get_cell("AAPL", "spark").plain) <= table.column_width("spark") - 2
        # The narrowest the whole set can be: the sparkline at its least.
        full = sum(table.column_width(k) for k in COLUMN_KEYS if k != "spark") + SPARK_WIDTH + 2

        table.styles.width = full - 1
        await wait_until(lambda: "spark" not in table.visible_columns, 5, "spark to go")
        assert table.visible_columns == tuple(k for k in COLUMN_KEYS if k != "spark")
        assert "spark" not in column_order(table)
        assert table.get_cell("AAPL", "last").plain == "187.43"

        table.styles.width = 24
        await wait_until(lambda: len(table.visible_columns) == 3, 5, "minimal columns")
        assert table.visible_columns == ("symbol", "last", "chg_pct")

        table.styles.width = full + 10
        await wait_until(lambda: table.visible_columns == COLUMN_KEYS, 5, "all columns back")


async def test_symbol_highlighted_on_cursor_move() -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(QuotesTable)
        table.select_symbol("TSLA")  # before any row: applied when the row appears
        table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
        await pilot.pause()
        assert app.highlights == ["TSLA"]
        table.focus()
        await pilot.press("down")
        await wait_until(lambda: app.highlights[-1] == "NVDA", 5, "NVDA highlighted")
        await pilot.press("up", "up")
        await wait_until(lambda: app.highlights[-1] == "MSFT", 5, "MSFT highlighted")
        assert app.highlights == ["TSLA", "NVDA", "TSLA", "MSFT"]


async def test_fifty_symbols_refresh_renders_only_changed_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = QuotesApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(QuotesTable)
        watchlist = [f"S{i:02d}" for i in range(50)]
        data = {s: snap(s, 100.0 + i) for i, s in enumerate(watchlist)}
        table.update_quotes(data, watchlist, 0, 1_000)
        await pilot.pause()
        # The rows brought a scrollbar: the sparkline gave it its column once. Settled now.
        table.update_quotes(data, watchlist, 0, 1_000)
        calls = spy_rows(table, monkeypatch)
        for _ in range(10):
            table.update_quotes(data, watchlist, 0, 1_000)
        assert calls == []
        data["S07"] = snap("S07", 50.0, last_trade_ms=1_000)
        table.update_quotes(data, watchlist, 0, 1_000)
        assert calls == ["S07"]


# -- format.py ---------------------------------------------------------------------------------


def test_sparkline_shapes() -> None:
    assert sparkline([]) == ""
    assert sparkline([5.0, 5.0, 5.0]) == "▄▄▄"
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    rising = sparkline([float(i) for i in range(60)], width=12)
    assert len(rising) == 12
    assert rising[0] == "▁" and rising[-1] == "█"
    assert list(rising) == sorted(rising)
    assert sparkline([3.0, 1.0, 2.0], width=12) == "█▁▅"


def test_prices_and_changes() -> None:
    assert fmt_price(187.43) == "187.43"
    assert fmt_price(0.00012345) == "0.00012345"
    assert fmt_price(68123.5) == "68,123.5"
    assert fmt_price(1234.5) == "1,234.50"
    assert fmt_price(None) == DASH
    assert fmt_price(float("nan")) == DASH
    assert fmt_change(1.5) == "+1.50"
    assert fmt_change(-0.74, ref=186.66) == "-0.74"
    assert fmt_change(0.0) == "0.00"
    assert fmt_pct(0.664) == "+0.66%"
    assert fmt_pct(-1.5) == "-1.50%"
    assert fmt_pct(None) == DASH


def test_volumes_rates_counts() -> None:
    assert fmt_volume(950) == "950"
    assert fmt_volume(0.0123) == "0.0123"
    assert fmt_volume(1234) == "1.2K"
    assert fmt_volume(3_400_000) == "3.4M"
    assert fmt_volume(999_950) == "1.0M"
    assert fmt_volume(5.6e9) == "5.6B"
    assert fmt_rate(0.1666) == "0.17"
    assert fmt_rate(42.25) == "42.2"
    assert fmt_count(12345) == "12,345"


def test_ages_and_window_labels() -> None:
    assert fmt_age(400) == "0.4s"
    assert fmt_age(12_300) == "12s"
    assert fmt_age(180_000) == "3m"
    assert fmt_age(2 * 3_600_000) == "2h"
    assert fmt_age(-50) == "0.0s"
    assert fmt_age(None) == DASH
    assert window_label(60_000) == "1m"
    assert window_label(300_000) == "5m"
    assert window_label(90_000) == "90s"
    assert window_label(3_600_000) == "1h"


def test_rich_colour_accepts_theme_values() -> None:
    assert rich_colour("#4EBF71", "green") == "#4ebf71"
    assert rich_colour("ansi_green", "red") == "color(2)"
    assert rich_colour(None, "red") == "#ff0000"


async def test_quotes_given_before_mount_show_on_mount() -> None:
    class EarlyApp(App[None]):
        def compose(self) -> ComposeResult:
            table = QuotesTable()
            table.update_quotes(snaps(), WATCHLIST, 0, 1_000)
            yield table

    app = EarlyApp()
    async with app.run_test(size=(160, 20)) as pilot:
        await pilot.pause()
        table = app.query_one(QuotesTable)
        assert table_order(table) == WATCHLIST


def screen_lines(app: App[None]) -> list[str]:
    """The terminal's text as drawn (the compositor's output, not the widget's state)."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


async def test_a_changed_row_is_repainted_when_the_table_is_scrolled() -> None:
    symbols = [f"S{i:02d}" for i in range(20)]
    prices = {s: 100.0 + i for i, s in enumerate(symbols)}
    app = QuotesApp()
    async with app.run_test(size=(100, 8)) as pilot:  # a header and seven rows
        table = app.query_one(QuotesTable)
        table.update_quotes({s: snap(s, p) for s, p in prices.items()}, symbols, 0, 1_000)
        await pilot.pause()
        table.move_cursor(15)
        await pilot.pause()
        assert table.scroll_offset.y == 9  # rows 9-15 are shown
        assert any(line.startswith(" S12 ") for line in screen_lines(app))

        prices["S12"] = 555.0
        table.update_quotes({s: snap(s, p) for s, p in prices.items()}, symbols, 0, 1_000)
        await pilot.pause()
        row = next(line for line in screen_lines(app) if line.startswith(" S12 "))
        assert "555.00" in row


async def test_row_strips_carry_their_true_length() -> None:
    """Rows are built with their length given (not measured): it must be what is drawn."""
    from rich.cells import cell_len

    app = QuotesApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(QuotesTable)
        table.update_quotes(snaps(), WATCHLIST, 0, 1_400)  # sparklines, and dashes for NEW
        await pilot.pause()
        for symbol in WATCHLIST:
            strip = table._strips[symbol]
            assert strip.cell_length == sum(cell_len(seg.text) for seg in strip)
            assert strip.cell_length == sum(table.column_width(k) for k in table.visible_columns)
